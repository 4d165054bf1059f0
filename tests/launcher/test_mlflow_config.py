"""The MLflow keys on the login node: a tracking URI with credentials is refused before anything is queued, a
file store is made absolute, created and mounted, and no MLflow secret reaches a rendered file."""

from __future__ import annotations

import pytest
import yaml

from hpcft.launcher.config import load_job

from .conftest import BASE_CONFIG


def _config(workspace, text: str):
    path = workspace / "cfg.yaml"
    path.write_text(BASE_CONFIG.replace("launch:\n", text + "launch:\n"))
    return path


@pytest.mark.parametrize(
    ("uri", "secret"),
    [
        ("https://alice:s3cret-pass@mlflow.example.org", "s3cret-pass"),
        ("https://alice@mlflow.example.org/", "alice"),
        ("https://mlflow.example.org/?token=abc123", "abc123"),
    ],
)
def test_a_tracking_uri_with_credentials_is_refused_in_one_line(run_cli, workspace, uri, secret):
    config = _config(workspace, f"mlflow_tracking_uri: {uri}\n")
    result = run_cli("validate", "--profile", "local", config, cwd=workspace)
    assert result.code == 2
    assert "mlflow_tracking_uri" in result.err
    assert "export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in result.err
    assert "mlflow_tracking_uri: https://mlflow.example.org" in result.err  # the URI to write instead
    assert secret not in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_relative_file_store_is_taken_from_the_config_folder_and_created(run_cli, workspace):
    config = _config(workspace, "mlflow_tracking_uri: file:./mlruns\nmlflow_experiment_name: exp\n")
    job = load_job(config, "local")
    assert job.cfg.mlflow_tracking_uri == f"file://{workspace / 'mlruns'}"
    result = run_cli("render", "--profile", "local", config, "-o", workspace / "run", cwd=workspace)
    assert result.code == 0, result.err
    trained = yaml.safe_load((workspace / "run" / "train.yaml").read_text())
    assert trained["mlflow_tracking_uri"] == f"file://{workspace / 'mlruns'}"
    assert (workspace / "mlruns").is_dir()  # created at render: a container runtime cannot mount a missing folder


def test_a_file_store_is_mounted_into_the_container(workspace, tmp_path):
    from hpcft.launcher.jobplan import job_paths

    config = _config(workspace, f"mlflow_tracking_uri: {tmp_path / 'store'}\n")
    job = load_job(config, "local")
    assert str(tmp_path / "store") in job_paths(job)


def test_mlflow_credentials_reach_the_job_only_through_the_environment(run_cli, workspace, monkeypatch):
    password = "mlflow-pass-0123456789"
    token = "mlflow-token-abcdefghij"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    config = _config(workspace, "mlflow_tracking_uri: https://mlflow.example.org\nmlflow_experiment_name: e\n")
    job = load_job(config, "local")
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"} <= set(
        job.profile.secret_env
    )
    result = run_cli("render", "--profile", "local", config, "-o", workspace / "run", cwd=workspace)
    assert result.code == 0, result.err
    files = [p for p in (workspace / "run").rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_text(errors="ignore")
        assert password not in text and token not in text, path


def test_a_config_that_interpolates_the_password_is_refused(run_cli, workspace, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlflow-pass-0123456789")
    config = _config(workspace, "mlflow_run_name: ${oc.env:MLFLOW_TRACKING_PASSWORD}\n")
    result = run_cli("validate", "--profile", "local", config, cwd=workspace)
    assert result.code == 2 and "MLFLOW_TRACKING_PASSWORD" in result.err
    assert "mlflow-pass-0123456789" not in result.err
