"""Fixtures for the container tests: the repository root, a config with real tiny inputs, image files, and the
`hpcft image` and `hpcft render` commands run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The first bytes of the two image formats the runtimes run (squashfs superblock, SIF global header).
SQUASHFS_HEAD = b"hsqs" + bytes(92)
SIF_HEAD = b"#!/usr/bin/env run-singularity\n\x00SIF_MAGIC\x00" + bytes(64)


@pytest.fixture
def run_image(run_cli):
    """Run `hpcft image ARGS` in-process from the current folder."""

    def run(*args: str | Path):
        return run_cli("image", *args, cwd=Path.cwd())

    return run


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A model folder, a chat dataset and a config that uses them (output under tmp_path/out)."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "data").mkdir()
    chat = {
        "messages": [{"role": "user", "content": "Capital of Switzerland?"}, {"role": "assistant", "content": "Bern."}]
    }
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
    files = {
        "sqsh": folder / "hpcft.sqsh",
        "sif": folder / "hpcft.sif",
        "empty": folder / "empty.sqsh",
        "tarball": folder / "hpcft.tar.sqsh",
        "sandbox": folder / "sandbox",
    }
    files["sqsh"].write_bytes(SQUASHFS_HEAD)
    files["sif"].write_bytes(SIF_HEAD)
    files["empty"].write_bytes(b"")
    files["tarball"].write_bytes(b"hpcft/\x00" + bytes(500))  # a tar archive renamed .sqsh
    files["sandbox"].mkdir()
    return files


@pytest.fixture(autouse=True)
def _cluster_like_test_folders(cscs_sees_tmp_path, tmp_path, monkeypatch):
    """Test workspaces live under /tmp, which the shipped cscs profile's compute nodes do not see; and a home of
    their own, where the pyxis profile's cache folder is created."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
