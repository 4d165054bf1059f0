"""scripts/local-slurm.sh: lint-clean, and `up` on a running cluster changes nothing (it is idempotent)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "local-slurm.sh"
DAEMONS = ["munged", "mariadb", "slurmdbd", "slurmctld", "slurmd-node1", "slurmd-node2"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck (apt-get install shellcheck)")
def test_script_passes_shellcheck():
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_unknown_verb_prints_usage():
    result = subprocess.run(["bash", str(SCRIPT), "sideways"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage:" in result.stderr


def _pids() -> dict[str, str]:
    result = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    pids = {}
    for line in result.stdout.splitlines():
        words = line.split()
        if words and words[0] in DAEMONS and words[1] == "running":
            pids[words[0]] = words[-1].rstrip(")")
    return pids


@pytest.mark.slurm
@pytest.mark.skipif(os.geteuid() != 0, reason="the local cluster is managed as root")
def test_up_on_a_running_cluster_keeps_every_daemon():
    before = _pids()
    assert sorted(before) == sorted(DAEMONS)
    result = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("already running") == len(DAEMONS)
    assert _pids() == before
