"""`hpcft doctor --profile local --nodes 2` on the real local cluster: the probe runs under torchrun in the
training job's environment on both nodes, with gloo on CPU, and the per-node table comes back."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.slurm


def test_doctor_on_two_local_nodes(run_cli, tmp_path, monkeypatch):
    pytest.importorskip("torch")  # the probe runs the real torch.distributed on the nodes
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    result = run_cli(
        "doctor",
        "--profile",
        "local",
        "--nodes",
        "2",
        "--max-mib",
        "16",
        "--write-mib",
        "16",
        "--iters",
        "3",
        "-o",
        tmp_path / "doctor-run",
        cwd=tmp_path,
    )
    assert result.code == 0, result.out + result.err
    out = result.out
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\d+\s+(node\d)\s.*$", out, re.M)}
    assert sorted(rows) == ["node1", "node2"], out
    for row in rows.values():
        assert "gloo (CPU, no NCCL)" in row and row.rstrip().endswith("ok")
    # The all-reduce sweep over both nodes was measured: 1, 4 and 16 MiB, each with a bandwidth above zero.
    sweep = re.findall(r"^\s+(\d+) MiB\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert [s[0] for s in sweep] == ["1", "4", "16"] and all(float(s[2]) > 0 for s in sweep)
    assert "all 2 node(s) healthy" in out
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / "doctor-run" / "doctor").glob("rank-*.json"))]
    assert {r["host"] for r in reports} == {"node1", "node2"}
    assert all(r["stage"] == "done" and r["pair_busbw_gbs"] for r in reports)
    # The job ran the doctor.sbatch written next to the training job's files, from the same plan.
    assert (tmp_path / "doctor-run" / "doctor.sbatch").is_file()
