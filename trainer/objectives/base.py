"""What every training objective provides (the Objective protocol)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments

    from hpcft.core.schema import DatasetConfig, TrainConfig
    from hpcft.trainer.data.prepare import PreparedData


class Objective(Protocol):
    name: str
    # Evaluation rows are deduplicated against the training rows too (axolotl does so for rl).
    eval_dedup_against_train: bool

    def applies(self, cfg: TrainConfig) -> bool:
        """Whether the config asks for this objective."""

    def tokenize(
        self,
        raw: datasets.Dataset,
        ds: DatasetConfig,
        cfg: TrainConfig,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        processes: int | None,
    ) -> tuple[datasets.Dataset, Counter]:
        """One dataset entry's rows, tokenized into the columns its trainer reads, and what happened to them."""

    def arguments(self, cfg: TrainConfig, values: dict[str, Any]) -> TrainingArguments:
        """The trainer's arguments from hpcft's training argument values (built before the model: ZeRO-3)."""

    def before_model(self, cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        """Work on the tokenizer before the model loads; returns the trainer's extra keyword arguments."""

    def wraps_adapter(self, cfg: TrainConfig) -> bool:
        """Whether load_model adds the LoRA adapter (False: the trainer adds it itself, e.g. TRL's reference)."""

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
        """The trainer of this objective, ready to train."""
