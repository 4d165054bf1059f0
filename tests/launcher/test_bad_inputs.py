"""The bad-input corpus: every file in tests/data/bad_inputs is one mistake a user makes.

Each must give one clear line on stderr (naming the key or file), exit code 2, and leave no run directory.
A file's header says what to expect (`# expect: ...`) and which extra arguments to pass (`# args: ...`).
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"

CASES = sorted((DATA / "bad_inputs").glob("*.yaml"))


def _header(path: Path, field: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(f"# {field}: "):
            return line.split(": ", 1)[1]
    return ""


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
@pytest.mark.parametrize("verb", ["render", "validate"])
def test_bad_input_is_one_clear_line_and_nothing_written(case, verb, workspace, run_cli, monkeypatch):
    monkeypatch.setenv("HPCFT_PROFILE_PATH", f"{DATA / 'bad_profiles'}{os.pathsep}{os.environ['HPCFT_PROFILE_PATH']}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(workspace / "xdg"))
    (workspace / "data" / "empty.jsonl").write_text("")
    cfg = workspace / "bad.yaml"
    shutil.copy(case, cfg)
    args = shlex.split(_header(case, "args"))
    if "--profile" not in args:
        args = ["--profile", "local", *args]
    extra = ["-o", str(workspace / "run")] if verb == "render" else []
    if verb == "validate" and any("=" in a and not a.startswith("-") for a in args):
        args = [f"--set={a}" if "=" in a and not a.startswith("-") else a for a in args]
    result = run_cli(verb, cfg, *args, *extra, cwd=workspace)
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    errors = [line for line in lines if not line.startswith("hpcft: warning:")]
    assert len(errors) == 1, result.err
    assert errors[0].startswith("hpcft: error: ")
    assert _header(case, "expect") in errors[0]
    assert "Traceback" not in result.err
    assert not (workspace / "run").exists()
    assert not (workspace / "runs").exists()
    assert not list(workspace.glob(".run.tmp-*"))
