"""scripts/local-container-runtime.sh: lint-clean, and `up` once Enroot and Pyxis are built is a no-op of
seconds that keeps both slurmd running (their plugstack.conf already has the Pyxis line)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "local-container-runtime.sh"
SLURM_SCRIPT = REPO / "scripts" / "local-slurm.sh"
SLURM_DIR = Path(os.environ.get("HPCFT_SLURM_DIR", "/var/tmp/hpcft-slurm"))


def test_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing (scripts/setup.sh installs it)"
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_unknown_verb_prints_usage():
    result = subprocess.run(["bash", str(SCRIPT), "sideways"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage:" in result.stderr


def _slurmd_pids() -> dict[str, str]:
    return {n: (SLURM_DIR / "run" / f"slurmd-{n}.pid").read_text().strip() for n in ("node1", "node2")}


@pytest.mark.slurm
@pytest.mark.skipif(os.geteuid() != 0, reason="the local cluster is managed as root")
def test_up_when_built_changes_nothing_and_takes_seconds():
    if shutil.which("enroot") is None and os.environ.get("HPCFT_REQUIRE_SLURM") != "1":
        pytest.skip("the runtime is not built here (sudo scripts/local-container-runtime.sh up)")
    before = _slurmd_pids()
    started = time.monotonic()
    result = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30, result.stderr
    assert "already built" in result.stderr and "started slurmd" not in result.stderr
    assert _slurmd_pids() == before
    plugstack = (SLURM_DIR / "etc" / "plugstack.conf").read_text()
    assert "spank_pyxis.so" in plugstack and "use_squashfuse=1" in plugstack
    conf = Path("/usr/local/etc/enroot/enroot.conf").read_text()
    assert "ENROOT_DATA_PATH /var/tmp/enroot/data/${SLURMD_NODENAME" in conf  # the two nodes kept apart
    # `local-slurm.sh up` rebuilds plugstack.conf from plugstack.d/ and keeps the line.
    again = subprocess.run(["bash", str(SLURM_SCRIPT), "up"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert (SLURM_DIR / "etc" / "plugstack.conf").read_text() == plugstack
