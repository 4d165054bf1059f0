"""Fixtures every test folder uses: hpcft's command line run in-process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcft.launcher.cli import main


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys, monkeypatch, tmp_path):
    """Run `hpcft ARGS` in-process from tmp_path (or cwd); return exit code, stdout, stderr."""

    def run(*args: str | Path, cwd: Path | None = None) -> CliResult:
        monkeypatch.chdir(cwd or tmp_path)
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def cscs_sees_tmp_path(tmp_path, monkeypatch) -> Path:
    """A user profile `cscs` that extends the shipped one and counts tmp_path among the file systems the compute
    nodes see (the shipped profile allows only /capstor, /iopsstor and /users). Returns its folder."""
    folder = tmp_path / "hpcft-profiles"
    folder.mkdir(exist_ok=True)
    (folder / "cscs.yaml").write_text(f"extends: cscs\nnode_paths: [/capstor, /iopsstor, /users, {tmp_path}]\n")
    monkeypatch.setenv("HPCFT_PROFILE_PATH", str(folder))
    return folder
