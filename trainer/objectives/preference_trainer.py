"""Preference tuning (`rl: dpo | ipo | orpo | kto | simpo`) through TRL's trainers, in hpcft's one training story.

train.py builds the data, arguments, model and callbacks exactly as for SFT and asks this module for the trainer:
TRL's DPOTrainer (dpo, ipo), KTOTrainer (kto), ORPOTrainer (orpo) or CPOTrainer with the SimPO loss (simpo). The
rows arrive tokenized from the preprocessing step (trainer/objectives/preference_data.py, cached by content), so
each TRL trainer is subclassed only to take them as they are instead of tokenizing again.

The reference model, where the method has one (dpo, ipo, kto), costs no second copy of the weights with an
adapter: a new LoRA adapter is handed to TRL as a peft_config, and TRL computes the reference log-probs with the
adapter disabled. With full fine-tuning TRL loads the reference from base_model; under ZeRO-3 it is partitioned
across ranks like the policy, or with precompute_ref_log_probs: true its log-probs are computed in one pass before
training (cached next to the prepared dataset) and no reference is kept during training.
"""

from __future__ import annotations

import logging
from typing import Any

import datasets
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer
from trl.experimental.cpo import CPOConfig, CPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from hpcft.core.schema import TrainConfig
from hpcft.trainer.data.formats import IGNORE_INDEX
from hpcft.trainer.model.loading import lora_config

log = logging.getLogger("hpcft.trainer")

REFERENCE_METHODS = ("dpo", "ipo", "kto")  # the methods that compare against a frozen reference model


class PretokenizedDPOTrainer(DPOTrainer):
    """DPOTrainer on rows that already hold prompt_ids / chosen_ids / rejected_ids."""

    def _prepare_dataset(
        self, dataset: datasets.Dataset, processing_class: Any, args: Any, dataset_name: str
    ) -> datasets.Dataset:
        return dataset


class PretokenizedKTOTrainer(KTOTrainer):
    """KTOTrainer on rows that already hold prompt_ids / completion_ids / label.

    KTO estimates its KL term from mismatched pairs: within each batch, completion i is paired with prompt i+1
    (TRL's construction, which the sequential sampler KTO requires keeps in place)."""

    def _prepare_dataset(
        self, dataset: datasets.Dataset, processing_class: Any, args: Any, dataset_name: str
    ) -> datasets.Dataset:
        if not self.calculate_KL:
            return dataset

        def rotate(batch: dict[str, list]) -> dict[str, list]:
            return {"KL_completion_ids": batch["completion_ids"][-1:] + batch["completion_ids"][:-1]}

        return dataset.map(
            rotate, batched=True, batch_size=args.per_device_train_batch_size, desc=f"KL pairs of {dataset_name}"
        )


def _paired_row(feature: dict[str, Any]) -> dict[str, list[int]]:
    """prompt_ids/chosen_ids/rejected_ids as the columns ORPO's and CPO's collator reads (labels mask the prompt)."""
    prompt = list(feature["prompt_ids"])
    row: dict[str, list[int]] = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for key in ("chosen", "rejected"):
        answer = list(feature[f"{key}_ids"])
        row[f"{key}_input_ids"] = prompt + answer
        row[f"{key}_attention_mask"] = [1] * (len(prompt) + len(answer))
        row[f"{key}_labels"] = [IGNORE_INDEX] * len(prompt) + answer
    return row


class PretokenizedORPOTrainer(ORPOTrainer):
    """ORPOTrainer on rows that already hold prompt_ids / chosen_ids / rejected_ids."""

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, list[int]]:
        return _paired_row(feature)


class PretokenizedCPOTrainer(CPOTrainer):
    """CPOTrainer (SimPO loss) on rows that already hold prompt_ids / chosen_ids / rejected_ids."""

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, list[int]]:
        return _paired_row(feature)


def _beta(cfg: TrainConfig) -> float | None:
    """trl.beta wins over rl_beta (as in axolotl); orpo_alpha is ORPO's beta."""
    if cfg.trl and cfg.trl.beta is not None:
        return cfg.trl.beta
    if cfg.rl_beta is not None:
        return cfg.rl_beta
    return cfg.orpo_alpha if cfg.rl == "orpo" else None


def method_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """The TRL config fields of the method, from the axolotl keys (unset keys keep TRL's defaults)."""
    values: dict[str, Any] = {"beta": _beta(cfg), "max_length": cfg.sequence_len}
    if cfg.rl in ("dpo", "ipo"):
        values.update(
            loss_type=["ipo"] if cfg.rl == "ipo" else (cfg.dpo_loss_type or ["sigmoid"]),
            loss_weights=cfg.dpo_loss_weights,
            label_smoothing=cfg.dpo_label_smoothing,
            use_weighting=cfg.dpo_use_weighting,
            precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        )
        if cfg.trl:
            values.update(
                sync_ref_model=cfg.trl.sync_ref_model,
                ref_model_mixup_alpha=cfg.trl.ref_model_mixup_alpha,
                ref_model_sync_steps=cfg.trl.ref_model_sync_steps,
            )
    elif cfg.rl == "kto":
        values.update(
            desirable_weight=cfg.kto_desirable_weight,
            undesirable_weight=cfg.kto_undesirable_weight,
            precompute_ref_log_probs=cfg.precompute_ref_log_probs,
            # KTO's KL pairs are built within fixed batches: they must be read in order (data is shuffled
            # once in the preprocessing step).
            train_sampling_strategy="sequential",
        )
    elif cfg.rl == "simpo":
        values.update(loss_type="simpo", simpo_gamma=cfg.simpo_gamma, cpo_alpha=cfg.cpo_alpha)
    if cfg.rl in ("orpo", "simpo"):
        # Their batches have no input_ids for the Trainer to count tokens in (chosen/rejected are separate).
        values["include_num_input_tokens_seen"] = "no"
    return {key: value for key, value in values.items() if value is not None}


_METHODS: dict[str, tuple[type[Trainer], type]] = {
    "dpo": (PretokenizedDPOTrainer, DPOConfig),
    "ipo": (PretokenizedDPOTrainer, DPOConfig),
    "kto": (PretokenizedKTOTrainer, KTOConfig),
    "orpo": (PretokenizedORPOTrainer, ORPOConfig),
    "simpo": (PretokenizedCPOTrainer, CPOConfig),
}


def adapter_for_trl(cfg: TrainConfig) -> bool:
    """Whether TRL should add the (new) LoRA adapter itself, so that disabling it gives the reference model."""
    return bool(cfg.adapter) and cfg.rl in REFERENCE_METHODS and not cfg.lora_model_dir


def preference_arguments(cfg: TrainConfig, argument_values: dict[str, Any]) -> TrainingArguments:
    """The method's TRL config (a TrainingArguments) from hpcft's training arguments and the method's keys.
    Build it before loading the model, as TrainingArguments: with ZeRO-3 it makes loading partitioned."""
    assert cfg.rl is not None
    # hpcft's rows carry exactly the columns the trainer reads. TRL's configs default gradient checkpointing and
    # bf16 on; the explicit values from training_argument_values override both.
    return _METHODS[cfg.rl][1](**{**argument_values, "remove_unused_columns": False, **method_arguments(cfg)})


def build_preference_trainer(
    cfg: TrainConfig,
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    train: datasets.Dataset,
    eval_data: datasets.Dataset | None,
    args: TrainingArguments,
    callbacks: list[TrainerCallback],
) -> Trainer:
    """The TRL trainer of cfg.rl, with hpcft's training arguments and callbacks."""
    assert cfg.rl is not None
    trainer_cls = _METHODS[cfg.rl][0]
    kwargs: dict[str, Any] = {}
    if adapter_for_trl(cfg):
        kwargs["peft_config"] = lora_config(cfg, model)
    if cfg.adapter and cfg.lora_model_dir and cfg.rl in REFERENCE_METHODS:
        log.info(
            "continuing the adapter in %s: the reference is that adapter, frozen (TRL's 'ref' copy)", cfg.lora_model_dir
        )
    return trainer_cls(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=eval_data,
        processing_class=tokenizer,
        callbacks=callbacks,
        **kwargs,
    )
