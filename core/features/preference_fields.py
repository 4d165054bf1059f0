"""Which columns each preference dataset type reads, and the login-node check that every row has them.

One table serves both sides: `hpcft validate`/`submit` read local JSON/JSONL files row by row before anything is
queued, and the trainer's preprocessing names the same fields when a row cannot be formatted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig, TrainConfig, UserDefinedPreferenceType, preference_type_name

# Each entry is one required field, given as its accepted spellings (the first one found is used).
_PROMPT_ANY = ("prompt", "input", "question", "instruction")
_FAMILY_PAIRED: dict[str, list[tuple[str, ...]]] = {
    "default": [_PROMPT_ANY, ("chosen", "chosen_response"), ("rejected", "rejected_response")],
    "argilla": [_PROMPT_ANY, ("chosen", "chosen_response"), ("rejected", "rejected_response")],
    "argilla_chat": [("chosen",), ("rejected",)],
    "icr": [("input",), ("chosen",), ("rejected",)],
    "intel": [("question",), ("chosen",), ("rejected",)],
    "prompt_pairs": [("prompt",), ("chosen",), ("rejected",)],
    "ultra": [("prompt",), ("chosen",), ("rejected",)],
}
_FAMILY_KTO: dict[str, list[tuple[str, ...]]] = {
    "argilla": [("instruction",), ("completion",), ("label",)],
    "argilla_chat": [("completion",), ("label",)],
    "intel": [("question",), ("completion",), ("label",)],
    "prompt_pairs": [("prompt",), ("completion",), ("label",)],
    "ultra": [("prompt",), ("completion",), ("label",)],
}


# Reward-model data (reward_model / process_reward_model; trainer/objectives/reward_data.py).
REWARD_FIELDS: dict[str, list[tuple[str, ...]]] = {
    "bradley_terry.chat_template": [("input",), ("chosen",), ("rejected",)],
    "stepwise_supervised": [("prompt",), ("completions",), ("labels",)],
}


def stepwise_row_problem(row: dict[str, Any], num_labels: int) -> str | None:
    """What is wrong with a stepwise_supervised row's steps and labels (None when nothing is)."""
    steps, labels = row.get("completions"), row.get("labels")
    if not isinstance(steps, list) or not isinstance(labels, list) or len(steps) != len(labels):
        return "'completions' and 'labels' must be lists of the same length (one label per step)"
    if not all(isinstance(label, (bool, int)) and 0 <= int(label) < num_labels for label in labels):
        return f"each of 'labels' must be true/false or an integer below num_labels ({num_labels})"
    return None


def required_fields(rl: str, ds: DatasetConfig) -> list[tuple[str, ...]]:
    """The fields a row of this dataset entry must have (each as its accepted spellings)."""
    name = preference_type_name(ds.type)
    if isinstance(ds.type, UserDefinedPreferenceType):
        t = ds.type
        if rl == "kto":
            return [(t.field_prompt,), (t.field_completion,), (t.field_label,)]
        return [(t.field_prompt,), (t.field_chosen,), (t.field_rejected,)]
    family, _, kind = (name or "").partition(".")
    if family in ("chatml", "llama3"):
        return (_FAMILY_KTO if rl == "kto" else _FAMILY_PAIRED)[kind]
    if name == "zephyr.nectar":
        return [("prompt",), ("answers",)]
    if name == "chat_template.default":
        return [(ds.field_messages,), (ds.field_chosen or "chosen",), (ds.field_rejected or "rejected",)]
    if name == "chat_template.argilla_chat":
        return [(ds.field_chosen or "chosen",), (ds.field_rejected or "rejected",)]
    if name == "chat_template.argilla":
        return [("chosen",), ("rejected",)]
    raise ValueError(f"no field table for preference type {name!r}")  # the schema admits no other type


def first_missing(row: dict[str, Any], required: list[tuple[str, ...]]) -> str | None:
    """The first required field that the row lacks (None or absent), as it should be named to the user."""
    for spellings in required:
        if all(row.get(field) is None for field in spellings):
            return " or ".join(f"'{s}'" for s in spellings)
    return None


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number, row) of a JSON-lines file, or of a JSON file holding a list of rows."""
    with path.open() as handle:
        first = handle.read(1)
        while first and first.isspace():
            first = handle.read(1)
        handle.seek(0)
        if first == "[":
            yield from enumerate(json.load(handle), start=1)
            return
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, json.loads(line)


def _local_json_files(ds: DatasetConfig) -> list[Path]:
    listed = [ds.data_files] if isinstance(ds.data_files, str) else list(ds.data_files or [])
    candidates = [Path(f) for f in listed] if listed else [Path(ds.path)]
    json_type = ds.ds_type in ("json", "jsonl")
    return [p for p in candidates if p.is_file() and (p.suffix in (".json", ".jsonl") or json_type)]


def check_preference_rows(cfg: TrainConfig, where: str) -> None:
    """Raise ConfigError naming the file, row and field of the first local preference row missing a field.

    Only local JSON/JSONL files are read here (other formats need pyarrow, which the launcher does not import);
    the trainer's preprocessing checks every row of every source with the same table."""
    reward = cfg.reward_model or cfg.process_reward_model
    if cfg.rl is None and not reward:
        return
    for group_name, group in (("datasets", cfg.datasets), ("test_datasets", cfg.test_datasets or [])):
        for index, ds in enumerate(group):
            if reward:
                required, type_name = REWARD_FIELDS[str(ds.type)], ds.type
            else:
                required, type_name = required_fields(cfg.rl, ds), preference_type_name(ds.type)
            for path in _local_json_files(ds):
                try:
                    for number, row in _json_rows(path):
                        missing = first_missing(row, required) if isinstance(row, dict) else "a JSON object"
                        if not missing and ds.type == "stepwise_supervised":
                            problem = stepwise_row_problem(row, cfg.num_labels or 2)
                            if problem:
                                raise ConfigError(f"{where}: {group_name}[{index}] {path}: row {number}: {problem}")
                        if missing:
                            raise ConfigError(
                                f"{where}: {group_name}[{index}] {path}: row {number}: missing field {missing} "
                                f"(type {type_name}{'' if reward else f' with rl: {cfg.rl}'} reads "
                                f"{', '.join('/'.join(s) for s in required)})"
                            )
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"{where}: {group_name}[{index}] {path}: not valid JSON ({exc})") from None
