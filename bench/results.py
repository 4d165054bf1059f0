"""Shared by the bench scripts: print a small table and append it to bench/RESULTS.md with date, machine, versions."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _versions(packages: list[str]) -> str:
    found = []
    for name in packages:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def record(
    name: str,
    headers: list[str],
    rows: list[list[object]],
    notes: str = "",
    packages: list[str] | None = None,
    device: str | None = None,
) -> None:
    """Print the table and append it, with its context, to RESULTS.md."""
    text = table(headers, rows)
    print(text)
    if notes:
        print(notes)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    context = f"machine: {device or machine()}; versions: {_versions(['hpcft', *(packages or [])])}"
    block = f"\n## {name} ({stamp})\n\n{context}\n\n{text}\n" + (f"\n{notes}\n" if notes else "")
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in bench/ (newest last).\n")
    with RESULTS.open("a") as f:
        f.write(block)
