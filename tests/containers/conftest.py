"""Fixtures for the container tests: the repository root, a config with real tiny inputs, image files, and the
`hpcft image` and `hpcft render` commands run in-process."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcft.launcher.cli import build_parser, main
from hpcft.launcher.errors import ConfigError
from hpcft.launcher.image import add_image_commands

REPO = Path(__file__).resolve().parents[2]
# The first bytes of the two image formats the runtimes run (squashfs superblock, SIF global header).
SQUASHFS_HEAD = b"hsqs" + bytes(92)
SIF_HEAD = b"#!/usr/bin/env run-singularity\n\x00SIF_MAGIC\x00" + bytes(64)


@dataclass
class Result:
    code: int
    out: str
    err: str


def _cli_has_image_command() -> bool:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return "image" in sub.choices


@pytest.fixture
def run_image(capsys):
    """Run `hpcft image ARGS`: through hpcft's own command line once it has the `image` command, else through
    a parser holding only add_image_commands (handled like cli.main: ConfigError -> one line, exit 2)."""

    def run(*args: str | Path) -> Result:
        argv = ["image", *map(str, args)]
        if _cli_has_image_command():
            code = main(argv)
        else:
            parser = argparse.ArgumentParser(prog="hpcft")
            add_image_commands(parser.add_subparsers(dest="command"))
            parsed = parser.parse_args(argv)
            try:
                code = parsed.func(parsed)
            except ConfigError as exc:
                print(f"hpcft: error: {exc}", file=sys.stderr)
                code = 2
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def run_cli(capsys, monkeypatch, tmp_path):
    def run(*args: str | Path, cwd: Path | None = None) -> Result:
        monkeypatch.chdir(cwd or tmp_path)
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A model folder, a chat dataset and a config that uses them (output under tmp_path/out)."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "data").mkdir()
    chat = {"messages": [{"role": "user", "content": "Capital of Switzerland?"},
                         {"role": "assistant", "content": "Bern."}]}
    (tmp_path / "data" / "chat.jsonl").write_text(json.dumps(chat) + "\n")
    (tmp_path / "cfg.yaml").write_text(
        "base_model: ./model\n"
        "datasets:\n  - path: ./data/chat.jsonl\n    type: chat_template\n"
        "output_dir: ./out\n"
        "launch:\n  job_name: image-test\n"
    )
    return tmp_path


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    """Image files and folders of each kind, by name."""
    folder = tmp_path / "images"
    folder.mkdir()
    files = {"sqsh": folder / "hpcft.sqsh", "sif": folder / "hpcft.sif", "empty": folder / "empty.sqsh",
             "tarball": folder / "hpcft.tar.sqsh", "sandbox": folder / "sandbox"}
    files["sqsh"].write_bytes(SQUASHFS_HEAD)
    files["sif"].write_bytes(SIF_HEAD)
    files["empty"].write_bytes(b"")
    files["tarball"].write_bytes(b"hpcft/\x00" + bytes(500))  # a tar archive renamed .sqsh
    files["sandbox"].mkdir()
    return files
