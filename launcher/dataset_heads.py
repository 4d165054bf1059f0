"""The login-node check of every local dataset file: what it is, its format, and whether its first MiB parses.

A FIFO, a device, an empty folder, a name without a format or a JSONL whose first line is broken would otherwise
fail in the preprocessing job or on the training nodes, after the queue wait. Only the head of each file is read
(never blocking: anything but a regular file is refused before it is opened); the trainer names the exact file
and line of a bad row further in with `file_problem(..., head_bytes=None)`, the same parser over the whole file.
Standard library only (no pyarrow or datasets on the login node).
"""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

from hpcft.launcher.dataset_cache import BUILDER_BY_DS_TYPE, BUILDER_BY_SUFFIX, is_saved_dataset, local_files
from hpcft.launcher.errors import ConfigError
from hpcft.launcher.schema import DatasetConfig, TrainConfig

HEAD_BYTES = 1 << 20  # what each file's check reads, at most
ALL_HEADS_BYTES = 64 << 20  # past this much in all, a folder of thousands of shards gets only SMALL_HEAD_BYTES each
SMALL_HEAD_BYTES = 64 << 10
_PARQUET_MAGIC = b"PAR1"
_BOM = b"\xef\xbb\xbf"  # datasets strips a leading UTF-8 byte-order mark


def not_a_regular_file(path: Path) -> str | None:
    """What `path` is when it is not a regular file (opening a FIFO would block; a device never ends)."""
    mode = path.stat().st_mode
    for test, what in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def file_builder_name(path: Path, ds: DatasetConfig) -> str | None:
    """The datasets builder that reads this file: ds_type, else its suffix (None: cannot be told)."""
    return BUILDER_BY_DS_TYPE.get(ds.ds_type or "") or BUILDER_BY_SUFFIX.get(path.suffix)


def file_problem(path: Path, builder: str, head_bytes: int | None = HEAD_BYTES) -> str | None:
    """What is wrong with the first `head_bytes` of a regular data file read as `builder` (None: whole file)."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with open(path, "rb") as handle:
        data = handle.read(head_bytes) if head_bytes is not None else handle.read()
        if builder == "parquet":
            handle.seek(max(size - len(_PARQUET_MAGIC), 0))
            tail = handle.read()
            if not (data.startswith(_PARQUET_MAGIC) and tail == _PARQUET_MAGIC):
                return "not a Parquet file (no PAR1 marker at its start and end); check the file or set ds_type:"
            return None
    if builder == "arrow":
        return None  # Arrow IPC streams are checked by datasets itself; their bytes need pyarrow to read
    truncated = len(data) < size
    text, problem = _utf8_text(data.removeprefix(_BOM), truncated)
    if problem:
        return problem
    if truncated:  # only whole lines: the last one was cut by the head's end
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        return "it holds only blank lines" if not truncated else f"its first {len(data) >> 10} KiB are blank lines"
    if builder == "json":
        return _json_problem(text, truncated)
    if builder == "csv":
        return _csv_problem(text)
    return None


def _utf8_text(data: bytes, truncated: bool) -> tuple[str, str | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(data) - 3:  # a character cut by the head's end
            return data[: exc.start].decode("utf-8"), None
        line = data[: exc.start].count(b"\n") + 1
        return "", f"line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 text; save the file as UTF-8"


def _json_problem(text: str, truncated: bool) -> str | None:
    """datasets reads a JSON list (of rows or strings), or JSON objects separated by whitespace (JSON lines, also
    pretty-printed ones). The head ends at a line break, which never falls inside a JSON string, so a value that
    is only cut off fails exactly at the end of the text: that is not an error."""
    decoder = json.JSONDecoder()
    position = len(text) - len(text.lstrip())
    is_list = text.startswith("[", position)
    while position < len(text):
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            if not text[exc.pos :].strip():
                if truncated:
                    return None
                line = text.count("\n", 0, position) + 1
                return f"line {line}: the JSON value that starts here is not closed when the file ends; fix it"
            return f"line {exc.lineno} is not valid JSON ({exc.msg} at column {exc.colno}); fix or remove it"
        if is_list:
            if not isinstance(value, list):
                return "a JSON file must hold a list of rows or one row (a JSON object) per line"
            rest = text[end:].strip()
            if rest:
                line = text.count("\n", 0, end) + 1
                return f"line {line}: more text after the JSON list; a file holds one list, or one object per line"
            return None
        if not isinstance(value, dict):
            line = text.count("\n", 0, position) + 1
            return (
                f"line {line} is not a JSON object (got {type(value).__name__}); each row must be an object like "
                '{"text": ...}'
            )
        position = end + len(text[end:]) - len(text[end:].lstrip())
    return None


def _csv_problem(text: str) -> str | None:
    """As pandas (datasets' CSV reader) sees it: blank lines skipped, a row with fewer fields padded, one with more
    than the header (or than a first row that pandas took as the index) an error."""
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next((row for row in reader if row), [])
        expected = None
        for row in reader:
            if not row:
                continue
            if expected is None:
                expected = max(len(row), len(header))
            elif len(row) > expected:
                return f"line {reader.line_num} has {len(row)} fields, the header {expected}; fix or remove that line"
    except csv.Error as exc:
        return f"line {reader.line_num} is not valid CSV ({exc}); fix or remove that line"
    return None


def check_dataset_heads(cfg: TrainConfig, where: str) -> None:
    """Raise ConfigError naming the entry and file of the first local dataset file the job could not read."""
    pretraining = cfg.pretraining_dataset if isinstance(cfg.pretraining_dataset, list) else []
    budget = ALL_HEADS_BYTES
    groups = (
        ("datasets", cfg.datasets),
        ("test_datasets", cfg.test_datasets or []),
        ("pretraining_dataset", pretraining),
    )
    for group, entries in groups:
        for index, ds in enumerate(entries):
            for path, builder in _entry_files(ds, group, index, where):
                head = HEAD_BYTES if budget > 0 else SMALL_HEAD_BYTES
                budget -= min(head, path.stat().st_size)
                try:
                    problem = file_problem(path, builder, head)
                except OSError as exc:
                    problem = f"cannot read it ({exc.strerror}); check its permissions"
                if problem:
                    raise ConfigError(f"{where}: key '{group}[{index}].path': {path}: {problem}")


def _entry_files(ds: DatasetConfig, group: str, index: int, where: str) -> list[tuple[Path, str]]:
    """(file, builder) for each local file of an entry; [] for a Hub dataset or a save_to_disk folder."""
    key = f"{where}: key '{group}[{index}].path'"
    path = Path(ds.path).expanduser()
    if path.exists() and not path.is_dir():
        what = not_a_regular_file(path)
        if what:
            raise ConfigError(f"{key}: {path} is {what}, not a data file; point it at a file or a folder of files")
    if path.is_dir() and is_saved_dataset(path):
        return []
    try:
        files = local_files(ds, group, index)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    found = []
    for file in files:
        what = not_a_regular_file(file)
        if what:
            raise ConfigError(f"{key}: {file} is {what}, not a data file; remove it or point data_files elsewhere")
        builder = file_builder_name(file, ds)
        if builder is None:
            raise ConfigError(
                f"{key}: cannot tell the format of {file.name} from its name; set ds_type: to one of "
                f"{', '.join(BUILDER_BY_DS_TYPE)}"
            )
        found.append((file, builder))
    return found
