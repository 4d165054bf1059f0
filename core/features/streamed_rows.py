"""The login-node check of a streamed dataset's rows: a stream is only read on the nodes, after the queue wait, and
no preprocessing job reads it first, so the first row of every local JSON/JSONL file is checked here for the
columns its dataset type reads (other formats need pyarrow, which the launcher does not import)."""

from __future__ import annotations

import itertools
import json

from hpcft.core.dataset_cache import local_files
from hpcft.core.errors import ConfigError
from hpcft.core.features.preference_fields import _json_rows, first_missing
from hpcft.core.features.prompt_strategies import STRATEGY_COLUMNS, UserDefinedPromptType, strategy_name
from hpcft.core.schema import DatasetConfig, TrainConfig

# The key that names the column a type reads, for the error's hint.
COLUMN_KEYS = {"pretrain": "text_column", "completion": "field", "chat_template": "field_messages"}


def required_columns(ds: DatasetConfig) -> list[tuple[str, ...]]:
    """The columns a row of this (non-preference) dataset entry must have, each as its accepted spellings."""
    if isinstance(ds.type, UserDefinedPromptType):
        return [(ds.type.field_instruction,)]
    base = ds.type.partition(":")[0] if isinstance(ds.type, str) else ds.type
    strategy = strategy_name(ds.type) if isinstance(ds.type, str) else None
    if strategy == "messages":
        return [(ds.field_messages,)]
    if strategy:  # a system column may be empty in a row (no system text), so it is not required of the first
        return [c for c in STRATEGY_COLUMNS[strategy] if c not in (("system",), ("system_prompt",))]
    if base in ("pretrain", "completion"):
        column = (ds.text_column or ds.field) if base == "pretrain" else (ds.field or ds.text_column)
        return [(column or "text",)]
    if base == "alpaca":
        return [("instruction",), ("output",)]
    if base == "jeopardy":
        return [("question",), ("category",), ("answer",)]
    if base == "chat_template":
        return [(ds.field_messages,)]
    return [("input_ids",)]


def check_streamed_rows(cfg: TrainConfig, where: str) -> None:
    """Raise ConfigError naming the file and the column when the first row of a streamed local file lacks one."""
    if not cfg.streaming:
        return
    for index, ds in enumerate(cfg.datasets):
        required = required_columns(ds)
        json_type = ds.ds_type in ("json", "jsonl")
        for path in local_files(ds, "datasets", index):
            if not (path.suffix in (".json", ".jsonl") or json_type):
                continue
            try:
                first = next(itertools.islice(_json_rows(path), 1), None)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{where}: datasets[{index}] {path}: not valid JSON ({exc})") from None
            if first is None:
                continue
            number, row = first
            missing = first_missing(row, required) if isinstance(row, dict) else "a JSON object"
            if missing:
                key = COLUMN_KEYS.get(str(ds.type).partition(":")[0])
                hint = f"; set {key}: to the column your rows use" if key else ""
                raise ConfigError(
                    f"{where}: datasets[{index}] {path}: row {number}: missing field {missing} (type "
                    f"{ds.type or 'pretokenized'} reads {', '.join('/'.join(s) for s in required)}{hint})"
                )
