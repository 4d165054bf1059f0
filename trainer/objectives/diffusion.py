"""Diffusion language models (diffusion:): SFT's rows, a masked-denoising loss over bidirectional attention
(trainer/objectives/diffusion_trainer.py's DiffusionTrainer)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from hpcft.trainer.data.formats import tokenize_dataset
from hpcft.trainer.objectives.sft import causal_lm_trainer

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments

    from hpcft.core.schema import DatasetConfig, TrainConfig
    from hpcft.trainer.data.prepare import PreparedData


class Diffusion:
    name = "diffusion"
    eval_dedup_against_train = False

    def applies(self, cfg: TrainConfig) -> bool:
        return cfg.diffusion is not None

    def tokenize(
        self,
        raw: datasets.Dataset,
        ds: DatasetConfig,
        cfg: TrainConfig,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        processes: int | None,
    ) -> tuple[datasets.Dataset, Counter]:
        return tokenize_dataset(raw, ds, cfg, tokenizer, name, processes)

    def arguments(self, cfg: TrainConfig, values: dict[str, Any]) -> TrainingArguments:
        from transformers import TrainingArguments

        return TrainingArguments(**values)

    def before_model(self, cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        from hpcft.trainer.objectives.diffusion_trainer import diffusion_trainer_arguments

        # Its own loss, and the mask token, added to the tokenizer before the model is loaded.
        return diffusion_trainer_arguments(cfg, tokenizer)

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
        from hpcft.trainer.objectives.diffusion_trainer import DiffusionTrainer

        return causal_lm_trainer(DiffusionTrainer, cfg, model, tokenizer, data, args, callbacks, extra)


DIFFUSION = Diffusion()
