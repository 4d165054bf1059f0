"""Supervised fine-tuning (the default): chat / instruction / completion rows, the causal LM loss (or EAFT's
entropy-weighted one), transformers' Trainer."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from hpcft.trainer.data.formats import tokenize_dataset

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments

    from hpcft.core.schema import DatasetConfig, TrainConfig
    from hpcft.trainer.data.prepare import PreparedData


class Sft:
    name = "sft"
    eval_dedup_against_train = False

    def applies(self, cfg: TrainConfig) -> bool:
        return True

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
        from hpcft.trainer.objectives.eaft import eaft_loss_function

        return {"compute_loss_func": eaft_loss_function(cfg)}  # None unless use_eaft

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
        from transformers import Trainer

        return causal_lm_trainer(Trainer, cfg, model, tokenizer, data, args, callbacks, extra)


def causal_lm_trainer(
    trainer_cls: type[Trainer],
    cfg: TrainConfig,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    data: PreparedData,
    args: TrainingArguments,
    callbacks: list[TrainerCallback],
    extra: dict[str, Any],
    collator: Any = None,
) -> Trainer:
    """A transformers Trainer (or subclass) over packed or padded causal-LM rows (or `collator`'s batches), with
    the optimizer hpcft picks."""
    from hpcft.trainer.data.packing import make_collator
    from hpcft.trainer.loop.loraplus import loraplus_optimizer
    from hpcft.trainer.loop.muon import muon_optimizer

    return trainer_cls(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        data_collator=collator or make_collator(cfg, tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
        **extra,
        optimizer_cls_and_kwargs=loraplus_optimizer(cfg, args, model) or muon_optimizer(cfg, args),
    )


SFT = Sft()
