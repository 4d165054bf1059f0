"""Reward models in hpcft's one training story (train.py builds data, arguments, model and callbacks as for SFT):

- `reward_model: true`: a sequence classifier (one score) trained with TRL's RewardTrainer on chosen/rejected
  pairs (Bradley-Terry loss, plus center_rewards_coefficient's penalty on the mean reward). The rows arrive
  tokenized (chosen_ids / rejected_ids, trainer/objectives/reward_data.py), which RewardTrainer takes as they are.
- `process_reward_model: true`: a token classifier labelling the last token of every reasoning step. TRL 1.16 no
  longer ships its PRM trainer, whose training is transformers' token-classification loss on those labels: the
  plain Trainer with the model's own cross-entropy over the labelled tokens does the same.
"""

from __future__ import annotations

import logging
from typing import Any

import datasets
import torch
from peft import LoraConfig, PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments
from trl import RewardConfig, RewardTrainer

from hpcft.core.schema import TrainConfig
from hpcft.trainer.data.packing import make_collator

log = logging.getLogger("hpcft.trainer")

# The model's classification head, new on a base LM: trained in full next to a LoRA adapter.
HEAD_MODULES = ("score", "classifier")


def reward_arguments(cfg: TrainConfig, argument_values: dict[str, Any]) -> TrainingArguments:
    """RewardConfig for reward_model, TrainingArguments for process_reward_model. Built before the model."""
    if not cfg.reward_model:
        return TrainingArguments(**argument_values)
    return RewardConfig(
        **{
            **argument_values,
            # The rows are cut to sequence_len already (axolotl cuts them); none is dropped by TRL's filter.
            "max_length": cfg.sequence_len,
            "center_rewards_coefficient": cfg.center_rewards_coefficient,
            # pad_to_sequence_len (axolotl's advice for reward models): every batch padded to sequence_len.
            "pad_to_multiple_of": cfg.sequence_len if cfg.pad_to_sequence_len else None,
            "remove_unused_columns": False,
        }
    )


def head_modules(model: torch.nn.Module) -> list[str]:
    """The classification head's module names (score for sequence, classifier or score for token classifiers)."""
    return [name for name in HEAD_MODULES if isinstance(getattr(model, name, None), torch.nn.Module)]


def task_type(cfg: TrainConfig) -> str:
    """peft's task type: the head is saved with the adapter and the adapter loads onto the right model class."""
    return "SEQ_CLS" if cfg.reward_model else "TOKEN_CLS"


def adapter_config(cfg: TrainConfig, config: LoraConfig, model: torch.nn.Module) -> LoraConfig:
    """A reward model's LoRA config: its task type, and the new head trained in full (modules_to_save)."""
    config.task_type = task_type(cfg)
    config.modules_to_save = sorted({*(config.modules_to_save or []), *head_modules(model)})
    return config


def init_score_head(model: PreTrainedModel) -> None:
    """Give a head that a base-LM checkpoint lacks finite, small weights: transformers may leave a bf16 head
    uninitialised (axolotl guards against the same). A head loaded from a reward checkpoint is kept."""
    for name in head_modules(model):
        head = getattr(model, name)
        weight = getattr(head, "weight", None)
        if weight is None or weight.device.type == "meta" or weight.numel() == 0:
            continue  # ZeRO-3 partitions: initialised by transformers on every rank
        if not torch.isfinite(weight).all() or weight.abs().max() > 100 or bool((weight == 0).all()):
            log.info("initialising the new %s head of %s", name, type(model).__name__)
            with torch.no_grad():
                std = getattr(model.config, "initializer_range", 0.02)
                head.weight.normal_(0.0, std)
                if getattr(head, "bias", None) is not None:
                    head.bias.zero_()


def build_reward_trainer(
    cfg: TrainConfig,
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    train: datasets.Dataset,
    eval_data: datasets.Dataset | None,
    args: TrainingArguments,
    callbacks: list[TrainerCallback],
) -> Trainer:
    """RewardTrainer (reward_model) or the token-classification Trainer (process_reward_model)."""
    # The score of a sequence is read at its last non-pad token: the model must know the pad id.
    model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.reward_model:
        return RewardTrainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=eval_data,
            processing_class=tokenizer,
            callbacks=callbacks,
        )
    return Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=eval_data,
        data_collator=make_collator(cfg, tokenizer),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
