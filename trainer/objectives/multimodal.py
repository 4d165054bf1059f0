"""Vision-language fine-tuning (`processor_type`): rows with images tokenized by the model's processor, labels
masked as for text (image tokens never trained), the image tensors kept through to a collator that batches them."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from hpcft.trainer.objectives.sft import Sft, causal_lm_trainer

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments

    from hpcft.core.schema import DatasetConfig, TrainConfig
    from hpcft.trainer.data.prepare import PreparedData


class Multimodal(Sft):
    name = "multimodal"

    def applies(self, cfg: TrainConfig) -> bool:
        return bool(cfg.processor_type)

    def tokenize(
        self,
        raw: datasets.Dataset,
        ds: DatasetConfig,
        cfg: TrainConfig,
        tokenizer: PreTrainedTokenizerBase,
        name: str,
        processes: int | None,
    ) -> tuple[datasets.Dataset, Counter]:
        from hpcft.trainer.data.multimodal_data import tokenize_multimodal_dataset

        return tokenize_multimodal_dataset(raw, ds, cfg, tokenizer, name, processes)  # tokenizer: the processor

    def arguments(self, cfg: TrainConfig, values: dict[str, Any]) -> TrainingArguments:
        from transformers import TrainingArguments

        # The samples' image tensors travel in a column the model's signature does not name.
        return TrainingArguments(**{**values, "remove_unused_columns": False})

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
        from transformers import Trainer

        from hpcft.trainer.data.multimodal_data import multimodal_collator

        collator = multimodal_collator(tokenizer)  # `tokenizer` is the processor
        return causal_lm_trainer(Trainer, cfg, model, tokenizer, data, args, callbacks, extra, collator)


MULTIMODAL = Multimodal()
