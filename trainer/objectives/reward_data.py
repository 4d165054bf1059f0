"""Reward-model data, tokenized in the preprocessing step (cached like SFT data), with axolotl's meaning:

- `bradley_terry.chat_template` (reward_model): each row (`system` optional, `input`, `chosen`, `rejected`) becomes
  two conversations, system / user / assistant, rendered whole by the chat template: chosen_ids and rejected_ids,
  each cut to sequence_len as axolotl cuts them (a sequence classifier scores the last token it sees).
- `stepwise_supervised` (process_reward_model): `prompt`, `completions` (the reasoning steps) and `labels` (one per
  step) become input_ids with a label on the last token of each step (the step separator's last token) and -100
  elsewhere, as TRL's PRM trainer and axolotl build them: BOS (when the tokenizer has one) + prompt + steps.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import datasets

from hpcft.core.errors import ConfigError
from hpcft.core.features.preference_fields import REWARD_FIELDS, first_missing, stepwise_row_problem
from hpcft.core.schema import DatasetConfig, TrainConfig
from hpcft.trainer.data.formats import (
    IGNORE_INDEX,
    KEPT,
    NO_TRAINABLE,
    TOO_SHORT,
    map_keeping_kept,
    resolve_chat_template,
)

STEP_LABELS = "hpcft_step_labels"


def bradley_terry_conversations(row: dict[str, Any], drop_system: bool) -> dict[str, list[dict[str, str]]]:
    """The chosen and rejected conversations of one row. A row with a `system` field gets a system turn even when
    it is empty (axolotl's chat_template strategy adds one whenever the field is there; with the row's empty text,
    which keeps a template's default system prompt out)."""
    system = row.get("system")
    head = [] if system is None or drop_system else [{"role": "system", "content": system}]
    head.append({"role": "user", "content": row["input"]})
    return {key: [*head, {"role": "assistant", "content": row[key]}] for key in ("chosen", "rejected")}


def tokenize_bradley_terry(row: dict[str, Any], template: str, tokenizer: Any, ds: DatasetConfig, cfg: TrainConfig):
    """chosen_ids / rejected_ids of one row: the whole conversation through the chat template, cut to sequence_len."""
    out = {}
    for key, messages in bradley_terry_conversations(row, bool(ds.drop_system_message)).items():
        ids = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=True, return_dict=False)
        out[f"{key}_ids"] = list(ids)[: cfg.sequence_len]
    return out


def tokenize_stepwise(row: dict[str, Any], tokenizer: Any, ds: DatasetConfig, cfg: TrainConfig, where: str):
    """input_ids and per-step labels of one stepwise_supervised row."""
    problem = stepwise_row_problem(row, cfg.num_labels or 2)  # the login node checked local files the same way
    if problem:
        raise ConfigError(f"{where}: {problem}")
    steps, step_labels = row["completions"], row["labels"]
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    separator = encode("\n" if ds.step_separator is None else ds.step_separator)
    if ds.train_on_last_step_only:
        step_labels = [IGNORE_INDEX] * (len(step_labels) - 1) + [int(step_labels[-1])]
    ids: list[int] = []
    labels: list[int] = []
    for step, label in zip(steps, step_labels, strict=True):
        step_ids = encode(step) + separator
        ids += step_ids
        labels += [IGNORE_INDEX] * (len(step_ids) - 1) + [int(label)]
    if ds.max_completion_length:
        ids, labels = ids[: ds.max_completion_length], labels[: ds.max_completion_length]
    prompt = encode(row["prompt"])
    if tokenizer.bos_token_id is not None:
        prompt = [tokenizer.bos_token_id, *prompt]
    return {
        "input_ids": (prompt + ids)[: cfg.sequence_len],
        "labels": ([IGNORE_INDEX] * len(prompt) + labels)[: cfg.sequence_len],
    }


def _stepwise_status(sample: dict[str, list[int]], cfg: TrainConfig) -> str:
    if len(sample["input_ids"]) < cfg.min_sample_len:
        return TOO_SHORT
    # A row whose every labelled step was cut off teaches nothing (and a batch of them has no loss).
    return KEPT if any(label != IGNORE_INDEX for label in sample["labels"]) else NO_TRAINABLE


def tokenize_reward_dataset(
    dataset: datasets.Dataset,
    ds: DatasetConfig,
    cfg: TrainConfig,
    tokenizer: Any,
    name: str,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, Counter]:
    """Tokenize one entry of reward-model data; return the kept rows and the counts per status."""
    stepwise = ds.type == "stepwise_supervised"
    template = None if stepwise else resolve_chat_template(ds, cfg, tokenizer, name)
    columns = ("input_ids", "labels") if stepwise else ("chosen_ids", "rejected_ids")
    required = REWARD_FIELDS[str(ds.type)]
    if stepwise and "labels" in dataset.column_names:
        # The output's labels are token labels: a source column of the same name would impose its type (bool).
        dataset = dataset.rename_column("labels", STEP_LABELS)

    def format_batch(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {column: [] for column in (*columns, "status")}
        for position, index in enumerate(indices):
            row = {("labels" if key == STEP_LABELS else key): values[position] for key, values in batch.items()}
            where = f"{name}: row {index + 1}"
            missing = first_missing(row, required)
            if missing:
                raise ConfigError(f"{where}: missing field {missing} (type {ds.type})")
            if stepwise:
                sample = tokenize_stepwise(row, tokenizer, ds, cfg, where)
                status = _stepwise_status(sample, cfg)
            else:
                sample = tokenize_bradley_terry(row, template, tokenizer, ds, cfg)
                status = KEPT
            for column in columns:
                out[column].append(sample[column])
            out["status"].append(status)
        return out

    return map_keeping_kept(dataset, format_batch, name, num_proc)
