"""Reward models (reward_model: a sequence score from chosen / rejected pairs, TRL's RewardTrainer) and process
reward models (process_reward_model: a label per reasoning step, token classification);
trainer/objectives/reward_trainer.py."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from hpcft.trainer.objectives.reward_data import tokenize_reward_dataset

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments

    from hpcft.core.schema import DatasetConfig, TrainConfig
    from hpcft.trainer.data.prepare import PreparedData


class Reward:
    name = "reward"
    eval_dedup_against_train = False

    def applies(self, cfg: TrainConfig) -> bool:
        return bool(cfg.reward_model or cfg.process_reward_model)

    def tokenize(
        self,
        raw: datasets.Dataset,
        ds: DatasetConfig,
        cfg: TrainConfig,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        processes: int | None,
    ) -> tuple[datasets.Dataset, Counter]:
        return tokenize_reward_dataset(raw, ds, cfg, tokenizer, name, processes)

    def arguments(self, cfg: TrainConfig, values: dict[str, Any]) -> TrainingArguments:
        from hpcft.trainer.objectives.reward_trainer import reward_arguments

        return reward_arguments(cfg, values)

    def before_model(self, cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        return {}

    def wraps_adapter(self, cfg: TrainConfig) -> bool:
        return True

    def trainer(
        self,
        cfg: TrainConfig,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        data: PreparedData,
        args: TrainingArguments,
        callbacks: list[TrainerCallback],
        extra: dict[str, Any],
    ) -> Trainer:
        from hpcft.trainer.objectives.reward_trainer import build_reward_trainer

        return build_reward_trainer(cfg, model, tokenizer, data.train, data.eval, args, callbacks)


REWARD = Reward()
