"""The conftest's rule: without a cluster, `slurm` tests skip, but fail under HPCFT_REQUIRE_SLURM=1 (CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _run_one_slurm_test(tmp_path: Path, require: str) -> subprocess.CompletedProcess[str]:
    # A config naming a controller nobody runs: `scontrol ping` fails fast.
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "ClusterName=none\nSlurmctldHost=localhost\nSlurmctldPort=1\nAuthType=auth/none\n"
        "NodeName=n1\nPartitionName=p Nodes=n1\n"
    )
    env = {**os.environ, "SLURM_CONF": str(conf), "HPCFT_REQUIRE_SLURM": require}
    test = "tests/slurm/test_cluster_lifecycle.py::test_dry_run_renders_and_submits_nothing"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test],
        cwd=HERE.parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(os.environ.get("HPCFT_INNER_RUN") == "1", reason="no recursion")
def test_slurm_tests_skip_without_a_cluster(tmp_path):
    result = _run_one_slurm_test(tmp_path, "0")
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout and "scripts/local-slurm.sh up" in result.stdout


def test_slurm_tests_fail_without_a_cluster_when_required(tmp_path):
    result = _run_one_slurm_test(tmp_path, "1")
    assert result.returncode == 1, result.stdout
    assert "HPCFT_REQUIRE_SLURM=1 but no Slurm controller answers" in result.stdout
