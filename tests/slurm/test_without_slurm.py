"""On a machine without Slurm's commands, the verbs say so in one line and leave nothing half-submitted."""

from __future__ import annotations

import pytest


@pytest.fixture
def no_slurm(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")


def test_submit_without_sbatch_leaves_no_run(workspace, run_cli, no_slurm):
    result = run_cli("submit", "--profile", "localtest", workspace.config)
    assert result.code == 69  # Slurm unavailable: not exit 2, which means bad input
    assert result.err.strip() == (
        "hpcft: error: sbatch not found: is this a login node of a Slurm cluster? "
        "(for a local test cluster run scripts/local-slurm.sh up)"
    )
    assert workspace.run_dirs() == []


def test_dry_run_needs_no_slurm(workspace, run_cli, no_slurm):
    result = run_cli("submit", "--profile", "localtest", workspace.config, "--dry-run")
    assert result.code == 0 and result.out.startswith("sbatch --parsable ")


@pytest.mark.parametrize("verb", [["status", "123"], ["cancel", "123"], ["logs", "123"]])
def test_job_verbs_without_slurm(workspace, run_cli, no_slurm, verb):
    result = run_cli(*verb)
    assert result.code == 69
    assert "not found: is this a login node of a Slurm cluster?" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_logs_latest_with_nothing_submitted(workspace, run_cli):
    result = run_cli("logs")
    assert result.code == 2 and "no hpcft job submitted yet" in result.err


def test_logs_of_a_run_directory_never_submitted(workspace, run_cli):
    run_cli("render", "--profile", "localtest", workspace.config, "-o", workspace.root / "r")
    result = run_cli("logs", workspace.root / "r")
    assert result.code == 2 and "was rendered but never submitted" in result.err


def test_unknown_reference(workspace, run_cli):
    result = run_cli("status", "not-a-job")
    assert result.code == 2 and "neither a job id, a run directory, nor 'latest'" in result.err


def test_sweep_with_the_submitit_backend_is_refused_before_rendering(workspace, run_cli):
    result = run_cli(
        "submit",
        "--profile",
        "localtest",
        workspace.config,
        "--backend",
        "submitit",
        "--sweep",
        "learning_rate=1e-5,2e-5",
    )
    assert result.code == 2 and "use --backend sbatch" in result.err
    assert workspace.run_dirs() == []


def test_a_bad_sweep_point_is_refused_before_rendering(workspace, run_cli):
    result = run_cli("submit", "--profile", "localtest", workspace.config, "--sweep", "learning_rate=1e-5,-1")
    assert result.code == 2 and "learning_rate" in result.err
    assert workspace.run_dirs() == []
