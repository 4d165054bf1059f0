"""Preference tuning (rl: dpo, ipo, kto, orpo, simpo): prompt / chosen / rejected rows, TRL's trainer of the
method (trainer/objectives/preference_trainer.py)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from hpcft.trainer.objectives.preference_data import tokenize_preference_dataset

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments

    from hpcft.core.schema import DatasetConfig, TrainConfig
    from hpcft.trainer.data.prepare import PreparedData


class Preference:
    name = "preference"
    eval_dedup_against_train = True  # axolotl: with rl, evaluation rows are also checked against training rows

    def applies(self, cfg: TrainConfig) -> bool:
        return cfg.rl is not None

    def tokenize(
        self,
        raw: datasets.Dataset,
        ds: DatasetConfig,
        cfg: TrainConfig,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        processes: int | None,
    ) -> tuple[datasets.Dataset, Counter]:
        return tokenize_preference_dataset(raw, ds, cfg, tokenizer, name, processes)

    def arguments(self, cfg: TrainConfig, values: dict[str, Any]) -> TrainingArguments:
        from hpcft.trainer.objectives.preference_trainer import preference_arguments

        return preference_arguments(cfg, values)

    def before_model(self, cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        return {}

    def wraps_adapter(self, cfg: TrainConfig) -> bool:
        from hpcft.trainer.objectives.preference_trainer import adapter_for_trl

        return not adapter_for_trl(cfg)

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
        from hpcft.trainer.objectives.preference_trainer import build_preference_trainer

        return build_preference_trainer(cfg, model, tokenizer, data.train, data.eval, args, callbacks)


PREFERENCE = Preference()
