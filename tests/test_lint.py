"""The code base stays lint-clean and formatted (ruff, configured in pyproject.toml), so style drift fails CI,
not review. ruff comes with the dev extra (pip install -e .[dev]); a missing ruff is a failure, not a skip."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    assert Path(ruff).exists(), "ruff is not installed: pip install -e .[dev] (scripts/setup.sh does)"
    return ruff


def test_ruff_finds_nothing():
    proc = subprocess.run([_ruff(), "check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_changes_nothing():
    proc = subprocess.run([_ruff(), "format", "--check", "--no-cache", str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, "run `ruff format` on:\n" + proc.stdout + proc.stderr
