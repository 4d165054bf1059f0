"""Fixtures for the Slurm tests. Tests marked `slurm` need the local cluster (scripts/local-slurm.sh up):
they are skipped when no controller answers, unless HPCFT_REQUIRE_SLURM=1 (CI), where that is a failure."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

_LOCAL_CONF = Path(os.environ.get("HPCFT_SLURM_DIR", "/var/tmp/hpcft-slurm")) / "etc" / "slurm.conf"
if "SLURM_CONF" not in os.environ and _LOCAL_CONF.is_file():
    # The cluster scripts/local-slurm.sh started, also when /etc/slurm/slurm.conf belongs to another one.
    os.environ["SLURM_CONF"] = str(_LOCAL_CONF)

from hpcft.launcher import slurm  # noqa: E402

FAKE_TORCHRUN = Path(__file__).resolve().parent / "fake_torchrun.py"
TINY_CPU = Path(__file__).resolve().parents[2] / "configs" / "examples" / "tiny-cpu.yaml"
_reachable: bool | None = None


@pytest.fixture(autouse=True)
def _needs_cluster(request):
    if request.node.get_closest_marker("slurm") is None:
        return
    global _reachable
    if _reachable is None:
        _reachable = slurm.controller_reachable()
    if not _reachable:
        reason = "no Slurm controller answers `scontrol ping`; start one with: sudo scripts/local-slurm.sh up"
        if os.environ.get("HPCFT_REQUIRE_SLURM") == "1":
            pytest.fail(f"HPCFT_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)


@dataclass
class SlurmWorkspace:
    root: Path
    config: Path

    def run_dirs(self) -> list[Path]:
        return sorted(p.parent for p in (self.root / "runs").rglob("manifest.json"))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> SlurmWorkspace:
    """A config, a `localtest` profile whose Python is fake_torchrun.py, and a private submissions index."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    wrapper = profiles / "fake-python"
    # Stands in for `python -m torch.distributed.run ...` on the nodes (see fake_torchrun.py).
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_TORCHRUN))} "$@"\n')
    wrapper.chmod(0o755)
    (profiles / "localtest.yaml").write_text(f"extends: local\npython: {wrapper}\n")
    (tmp_path / "data.jsonl").write_text('{"text": "Lorem ipsum."}\n')
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "base_model: none\ndatasets:\n  - path: data.jsonl\n    type: completion\n"
        "output_dir: ./outputs\nlaunch:\n  job_name: fake\n  nodes: 2\n  time: '00:05:00'\n"
    )
    monkeypatch.setenv("HPCFT_PROFILE_PATH", str(profiles))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return SlurmWorkspace(tmp_path, config)


@pytest.fixture(scope="session")
def tiny_cpu() -> Path:
    """configs/examples/tiny-cpu.yaml, with the random tiny model it names created if missing (the real trainer)."""
    pytest.importorskip("torch")
    model = TINY_CPU.parent / "tiny-assets" / "model"
    if not (model / "config.json").is_file():
        made = subprocess.run(
            [sys.executable, "-m", "hpcft.trainer", "make-tiny", str(model)], capture_output=True, text=True
        )
        assert made.returncode == 0, made.stderr
    return TINY_CPU


@pytest.fixture
def real_workspace(tmp_path: Path, monkeypatch) -> Path:
    """A private submissions index and working folder for runs of the real trainer."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path
