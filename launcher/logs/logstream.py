"""Reading a job's log files in bounded memory: a multi-GB, `srun --label`led log of a job of hundreds of nodes is
read in blocks of about a MiB of whole lines, filtered (node rank, pattern) and rewritten ([host/rank] prefixes)
block by block, and printed as it goes. `--tail N` reads from the end of the file; following resumes at an offset.

Work happens on bytes and per block through the `re` module's C loops (split, findall): a Python loop per line
would make a GB of log take minutes. (Just over 300 lines: reading, rendering and printing share one block
format, whole lines behind a leading newline, and are read top down.)
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

BLOCK_BYTES = 1 << 20
# A "line" longer than this without a newline (a binary blob, a progress bar) is passed on in pieces.
MAX_LINE_BYTES = 8 * BLOCK_BYTES

# Every pattern starts with "\n" and is applied to b"\n" + block: a literal first character lets `re` skip
# ahead quickly, where a MULTILINE "^" is tried at every byte (4x slower on a GB).
# srun --label pads the task number with spaces to the width of the largest one: "  7: text".
_LABEL = re.compile(rb"\n *(\d+): ")
# job.sbatch's first line in every allocation; a requeued job appends a new allocation to the same files.
_RESTART = re.compile(rb"\nhpcft: job (\S+) on \d+ node\(s\): \S* \(restart ([1-9]\d*)\)[^\n]*")
_RANK_COLORS = (b"36", b"33", b"35", b"32", b"34", b"91", b"96", b"93")  # ANSI: cyan, yellow, magenta, green, ...


def restart_separator(job_id: str, restart: int) -> bytes:
    return f"---------------- job {job_id}, restart {restart}: a new allocation appends below ----------------".encode()


# ---------------------------------------------------------------- reading


class FileCursor:
    """A position in one append-only log file: yields the whole lines appended since the last read."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""

    def blocks(self, final: bool = False, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
        """Blocks of whole lines (each ends with a newline); with final, an unfinished last line too."""
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        with handle:
            if os.fstat(handle.fileno()).st_size < self.offset:  # truncated or replaced: start again
                self.offset, self._partial = 0, b""
            handle.seek(self.offset)
            while data := handle.read(block_bytes):
                self.offset += len(data)
                data = self._partial + data if self._partial else data
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    if len(data) < MAX_LINE_BYTES:
                        self._partial = data
                        continue
                    cut = len(data)
                self._partial = data[cut:]
                yield data[:cut]
        if final and self._partial:
            rest, self._partial = self._partial, b""
            yield rest + b"\n"


def tail_offset(path: Path, lines: int, block_bytes: int = 1 << 16) -> int:
    """The offset where the last `lines` lines of the file start, found by reading backwards."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return 0
    with handle:
        end = os.fstat(handle.fileno()).st_size
        if lines <= 0:
            return end
        position, seen = end, 0
        handle.seek(max(0, end - 1))
        if end and handle.read(1) == b"\n":
            seen = -1  # the file's final newline ends the last line; it does not start one
        while position > 0:
            start = max(0, position - block_bytes)
            handle.seek(start)
            chunk = handle.read(position - start)
            index = len(chunk)
            while (index := chunk.rfind(b"\n", 0, index)) >= 0:
                seen += 1
                if seen == lines:
                    return start + index + 1
            position = start
        return 0


def reverse_blocks(path: Path, end: int, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Blocks of whole lines from `end` back to the start of the file, last block first."""
    with path.open("rb") as handle:
        position, carry = end, b""
        while position > 0:
            start = max(0, position - block_bytes)
            handle.seek(start)
            data = handle.read(position - start) + carry
            position = start
            if start == 0:
                yield data
                return
            cut = data.find(b"\n") + 1
            if cut == 0 and len(data) < MAX_LINE_BYTES:
                carry = data
                continue
            carry, data = data[:cut], data[cut:]
            if data:
                yield data


# ---------------------------------------------------------------- rendering


@dataclass
class LogView:
    """How the lines of one file are shown: which lines (rank, pattern) and with which prefix.

    hosts[task] names the node of each Slurm task (one task per node: task = node rank); prefix adds
    "[host/task] " to labelled lines (multi-node jobs), else the label is only removed; job_label ("[12_3] ")
    starts every line of an array task's file; a file written by one task (submitit) has fixed_task.
    """

    hosts: list[str] = field(default_factory=list)
    prefix: bool = True
    rank: int | None = None
    grep: re.Pattern[bytes] | None = None
    job_label: str = ""
    fixed_task: int | None = None
    color: bool = False
    labelled: bool = False  # set once a labelled line was seen (to tell a user that --rank cannot work)
    _prefixes: dict[bytes, bytes] = field(default_factory=dict, repr=False)

    def forget_prefixes(self) -> None:
        self._prefixes.clear()

    def task_prefix(self, task: bytes) -> bytes:
        """b"\\n[host/task] " for a task number as it appears in the label (cached: a few thousand tasks)."""
        cached = self._prefixes.get(task)
        if cached is None:
            number = int(task)
            if not self.prefix:
                cached = b"\n"
            else:
                host = self.hosts[number] if number < len(self.hosts) else "?"
                label = f"[{host}/{number}]".encode()
                if self.color:
                    label = b"\033[" + _RANK_COLORS[number % len(_RANK_COLORS)] + b"m" + label + b"\033[0m"
                cached = b"\n" + label + b" "
            self._prefixes[task] = cached
        return cached

    def render(self, block: bytes) -> bytes:
        """The lines of a block of whole lines as shown, each ending with a newline (b"" when none is)."""
        data = b"\n" + (block[:-1] if block.endswith(b"\n") else block)
        if self.fixed_task is not None:
            shown = self._render_fixed(data)
        elif self.grep is not None:
            shown = self._render_grep(data)
        elif self.rank is not None:
            shown = self._render_rank(data)
        else:
            shown = self._render_all(data)
        if not shown:
            return b""
        if self.job_label:
            shown = shown.replace(b"\n", b"\n" + self.job_label.encode() + b" ")
        return shown[1:] + b"\n"

    def _separators(self, data: bytes) -> list[tuple[int, bytes]]:
        if b"(restart " not in data:
            return []
        return [
            (m.start(), b"\n" + restart_separator(m.group(1).decode(), int(m.group(2))) + m.group(0))
            for m in _RESTART.finditer(data)
        ]

    def _render_all(self, data: bytes) -> bytes:
        if b"(restart " in data:
            data = _RESTART.sub(
                lambda m: b"\n" + restart_separator(m.group(1).decode(), int(m.group(2))) + m.group(0), data
            )
        parts = _LABEL.split(data)  # [text, task, text, task, text, ...]
        if len(parts) > 1:
            self.labelled = True
            prefix = self.task_prefix
            parts[1::2] = [prefix(task) for task in parts[1::2]]
        return b"".join(parts)

    def _render_rank(self, data: bytes) -> bytes:
        wanted = _rank_pattern(self.rank)
        head = self.task_prefix(str(self.rank).encode())
        found = [(m.start(), head + m.group(1)) for m in wanted.finditer(data)]
        if found:
            self.labelled = True
        elif not self.labelled and _LABEL.search(data):
            self.labelled = True
        separators = self._separators(data)
        if separators:
            found = sorted(found + separators)
        return b"".join(text for _, text in found)

    def _render_grep(self, data: bytes) -> bytes:
        """Lines whose text (label removed) matches; candidates found by a search over the whole block."""
        assert self.grep is not None
        found: list[tuple[int, bytes]] = []
        anchored = b"^" in self.grep.pattern or b"$" in self.grep.pattern
        position = 0
        while True:
            if anchored:  # the pattern must see each line's own text: test every line
                start = position if position < len(data) else -1
            else:
                match = self.grep.search(data, position)
                start = data.rfind(b"\n", 0, match.start() + 1) if match else -1
            if start < 0:
                break
            end = data.find(b"\n", start + 1)
            end = len(data) if end < 0 else end
            line = data[start:end]
            position = end if end > start else end + 1
            if b"(restart " in line and _RESTART.match(line):
                continue  # a restart's first line comes with its separator (below)
            label = _LABEL.match(line)
            if label:
                self.labelled = True
                if self.rank is not None and int(label.group(1)) != self.rank:
                    continue
                text, head = line[label.end() :], self.task_prefix(label.group(1))
            else:
                if self.rank is not None:
                    continue
                text, head = line[1:], b"\n"
            if self.grep.search(text):
                found.append((start, head + text))
            if position >= len(data):
                break
        separators = self._separators(data)
        if separators:
            found = sorted(found + separators)
        return b"".join(text for _, text in found)

    def _render_fixed(self, data: bytes) -> bytes:
        if self.rank is not None and self.rank != self.fixed_task:
            return b"".join(text for _, text in self._separators(data))
        view = LogView(self.hosts, self.prefix, None, self.grep, "", None, self.color)
        lines = view.render(data[1:] + b"\n")
        if not lines:
            return b""
        head = self.task_prefix(str(self.fixed_task).encode())
        return head + lines.rstrip(b"\n").replace(b"\n", head)


_rank_patterns: dict[int, re.Pattern[bytes]] = {}


def _rank_pattern(rank: int) -> re.Pattern[bytes]:
    if rank not in _rank_patterns:
        _rank_patterns[rank] = re.compile(rb"\n *%d: ([^\n]*)" % rank)
    return _rank_patterns[rank]


# ---------------------------------------------------------------- printing


def byte_writer(out: IO[str]) -> Callable[[bytes], None]:
    """Write bytes to a text stream: straight to its buffer when it has one (stdout), else decoded."""
    buffer = getattr(out, "buffer", None)
    if buffer is not None:

        def write(data: bytes) -> None:
            out.flush()  # what was written as text goes first
            buffer.write(data)
            buffer.flush()

        return write
    return lambda data: out.write(data.decode(errors="replace"))


def print_new(
    cursor: FileCursor,
    view: LogView,
    write: Callable[[bytes], None],
    final: bool = False,
    block_bytes: int = BLOCK_BYTES,
) -> None:
    """Print what was appended to the cursor's file since the last call."""
    for block in cursor.blocks(final=final, block_bytes=block_bytes):
        shown = view.render(block)
        if shown:
            write(shown)


def print_tail(
    cursor: FileCursor, view: LogView, lines: int, write: Callable[[bytes], None], block_bytes: int = BLOCK_BYTES
) -> None:
    """Print the last `lines` lines the view shows and move the cursor to the end of the file.

    Without filters the start is found by counting newlines backwards; with --rank or --grep the file is read
    backwards block by block until enough matching lines were found (at most `lines` are held)."""
    path = cursor.path
    try:
        end = path.stat().st_size
    except FileNotFoundError:
        return
    if view.rank is None and view.grep is None and view.fixed_task is None:
        cursor.offset = tail_offset(path, lines)
        print_new(cursor, view, write, final=True, block_bytes=block_bytes)
        return
    kept: deque[bytes] = deque(maxlen=lines)
    for block in reverse_blocks(path, end, block_bytes):
        shown = view.render(block).splitlines(keepends=True)
        for line in reversed(shown):
            if len(kept) == lines:
                break
            kept.appendleft(line)
        if len(kept) == lines:
            break
    if kept:
        write(b"".join(kept))
    cursor.offset = end
