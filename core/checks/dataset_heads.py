"""The login-node check of every local dataset file: what it is, its format, and whether its first MiB parses.

A FIFO, a device, an empty folder, a name without a format or a JSONL whose first line is broken would otherwise
fail in the preprocessing job or on the training nodes, after the queue wait. Only the head of each file is read
(never blocking: anything but a regular file is refused before it is opened); the trainer names the exact file
and line of a bad row further in with `file_problem(..., head_bytes=None)`, the same parser over the whole file.
Standard library only (no pyarrow or datasets on the login node).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from hpcft.core.dataset_cache import BUILDER_BY_DS_TYPE, BUILDER_BY_SUFFIX, is_saved_dataset, local_files
from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig, TrainConfig

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
    """What is wrong with a regular data file read as `builder`: its first `head_bytes` (the login node), or the
    whole file, line by line in constant memory (None: the trainer, to name the line datasets failed on)."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with open(path, "rb") as handle:
        if builder == "parquet":
            start = handle.read(len(_PARQUET_MAGIC))
            handle.seek(max(size - len(_PARQUET_MAGIC), 0))
            if not (start == _PARQUET_MAGIC and handle.read() == _PARQUET_MAGIC):
                return "not a Parquet file (no PAR1 marker at its start and end); check the file or set ds_type:"
            return None
        if builder == "arrow":
            return None  # Arrow IPC streams need pyarrow to read; datasets names the file itself
        if head_bytes is None:
            return _text_problem(_lines(handle, truncated=False), builder, truncated=False, head=0)
        data = handle.read(head_bytes)
    truncated = len(data) < size
    if truncated:  # whole lines only: the last one was cut by the head's end
        data = data[: data.rfind(b"\n") + 1]
    return _text_problem(_lines(io.BytesIO(data), truncated), builder, truncated, len(data))


def _lines(handle: BinaryIO, truncated: bool) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line; UnicodeDecodeError carries the line number in its `reason`."""
    for number, raw in enumerate(handle, start=1):
        try:
            yield number, raw.removeprefix(_BOM).decode("utf-8") if number == 1 else raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnicodeDecodeError(exc.encoding, exc.object, exc.start, exc.end, str(number)) from None


def _text_problem(lines: Iterator[tuple[int, str]], builder: str, truncated: bool, head: int) -> str | None:
    try:
        if builder == "json":
            problem = _json_problem(lines, truncated)
        elif builder == "csv":
            problem = _csv_problem(text for _, text in lines)
        else:
            problem = None if any(text.strip() for _, text in lines) else ""
    except UnicodeDecodeError as exc:
        return f"line {exc.reason}: byte 0x{exc.object[exc.start]:02x} is not UTF-8 text; save the file as UTF-8"
    if problem == "":
        return f"its first {max(head >> 10, 1)} KiB are blank lines" if truncated else "it holds only blank lines"
    return problem


def _json_problem(lines: Iterator[tuple[int, str]], truncated: bool) -> str | None:
    """As datasets reads JSON: one list (of rows or strings), or JSON objects separated by white space (JSON lines,
    pretty-printed ones too). "" when there is nothing but blank lines. Lines are gathered until they hold whole
    values: a value is still open when decoding fails exactly at the end of the text gathered so far (a line break
    never falls inside a JSON string)."""
    decoder = json.JSONDecoder()
    buffer, first_line, seen = "", 0, False
    for number, text in lines:
        if not buffer and not text.strip():
            continue
        if not buffer:
            first_line = number
            if not seen and text.lstrip().startswith("["):  # one JSON document: datasets reads it whole, so may we
                return _json_list_problem(text + "".join(rest for _, rest in lines), number, truncated)
        buffer += text
        position = 0
        while position < len(buffer):
            try:
                value, end = decoder.raw_decode(buffer, position)
            except json.JSONDecodeError as exc:
                if not buffer[exc.pos :].strip():
                    break  # still open: read on
                line = first_line + buffer.count("\n", 0, exc.pos)
                return f"line {line} is not valid JSON ({exc.msg} at column {exc.colno}); fix or remove it"
            if not isinstance(value, dict):
                line = first_line + buffer.count("\n", 0, position)
                return f"line {line} is not a JSON object (got {type(value).__name__}); each row is one like " + (
                    '{"text": ...}'
                )
            seen = True
            position = end + len(buffer[end:]) - len(buffer[end:].lstrip())
        first_line += buffer.count("\n", 0, position)
        buffer = buffer[position:]
    if buffer.strip() and not truncated:
        return f"line {first_line}: the JSON value that starts here is not closed when the file ends; fix it"
    return None if seen or buffer.strip() else ""


def _json_list_problem(text: str, first_line: int, truncated: bool) -> str | None:
    try:
        rows, end = json.JSONDecoder().raw_decode(text, len(text) - len(text.lstrip()))
    except json.JSONDecodeError as exc:
        if truncated and not text[exc.pos :].strip():
            return None  # the list goes on past the head
        line = first_line + exc.lineno - 1
        return f"line {line} is not valid JSON ({exc.msg} at column {exc.colno}); fix or remove it"
    if text[end:].strip():
        line = first_line + text.count("\n", 0, end)
        return f"line {line}: more text after the JSON list; a file holds one list, or one object per line"
    return None if isinstance(rows, list) else "a JSON file must hold a list of rows or one row per line"


def _csv_problem(lines: Iterable[str]) -> str | None:
    """As pandas (datasets' CSV reader) sees it: blank lines skipped, a row with fewer fields padded, one with more
    than the header (or than a first row that pandas took as the index) an error. "" when all lines are blank."""
    reader = csv.reader(lines, strict=True)
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            return ""
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
                    info = path.stat()
                    problem = _head_problem(str(path), info.st_size, info.st_mtime_ns, builder, head)
                except OSError as exc:
                    problem = f"cannot read it ({exc.strerror}); check its permissions"
                if problem:
                    raise ConfigError(f"{where}: key '{group}[{index}].path': {path}: {problem}")


@functools.lru_cache(maxsize=4096)
def _head_problem(path: str, size: int, mtime_ns: int, builder: str, head: int) -> str | None:
    """file_problem, once per file version: every point of a sweep loads the same config's datasets again."""
    return file_problem(Path(path), builder, head)


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
