"""Preprocessing as its own CPU job on the local cluster, with the real trainer (configs/examples/tiny-cpu.yaml):
on a fresh cache `hpcft submit` queues a preprocessing job and the training job after it (afterok); with the
cache filled there is none; a malformed JSONL line fails the preprocessing job with the file and line named and
Slurm cancels the training job rather than leaving it pending."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SHORT = ["max_steps=2", "save_steps=2"]


def sacct_times(job_id: str) -> dict[str, str]:
    out = (
        subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State,Start,End"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.split("\n")[0]
        .split("|")
    )
    return {"state": out[0], "start": out[1], "end": out[2]}


def submitted(out: str, what: str) -> str | None:
    match = re.search(rf"submitted {what}(\d+)", out)
    return match.group(1) if match else None


def test_a_fresh_cache_gets_a_preprocessing_job_then_training_and_a_filled_one_none(tiny_cpu, real_workspace, run_cli):
    prepared = real_workspace / "prepared"
    first = run_cli(
        "submit",
        "--profile",
        "local",
        tiny_cpu,
        "--follow",
        f"dataset_prepared_path={prepared}",
        f"output_dir={real_workspace / 'out1'}",
        *SHORT,
    )
    assert first.code == 0, first.out[-3000:] + first.err
    pre_id, train_id = submitted(first.out, "preprocessing job "), submitted(first.out, "job ")
    assert pre_id and train_id, first.out[:2000]
    assert "no prepared dataset in" in first.out
    # The preprocessing job's log is part of the run's log, before the training job's.
    assert first.out.index("[hpcft data] preparing datasets into") < first.out.index("step 1/")
    pre, train = sacct_times(pre_id), sacct_times(train_id)
    assert pre["state"] == train["state"] == "COMPLETED"
    assert pre["end"] <= train["start"], (pre, train)  # the training job started only once the data was ready
    status = run_cli("status", train_id).out
    assert re.search(rf"^{pre_id}\s+tiny-cpu-preprocess\s+COMPLETED", status, re.M), status
    assert re.search(rf"^{train_id}\s+tiny-cpu\s+COMPLETED", status, re.M), status

    again = run_cli(
        "submit",
        "--profile",
        "local",
        tiny_cpu,
        f"dataset_prepared_path={prepared}",
        f"output_dir={real_workspace / 'out2'}",
        *SHORT,
    )
    assert again.code == 0, again.out + again.err
    assert "preprocessing job" not in again.out
    second = submitted(again.out, "job ")
    cancelled = run_cli("cancel", second)
    assert cancelled.code == 0 and f"cancelled job {second}" in cancelled.out


def test_a_malformed_jsonl_line_fails_preprocessing_and_no_training_job_is_left(tiny_cpu, real_workspace, run_cli):
    # Past the first MiB, which validate reads on the login node (a bad line there is refused before the queue):
    # only the preprocessing job, which parses every line, can find this one.
    data = real_workspace / "broken.jsonl"
    good = "".join(f'{{"text": "row {i}"}}\n' for i in range(60_000))
    data.write_text(good + '{"text": "three",}\n{"text": "four"}\n')
    bad_line = 60_001
    config = yaml.safe_load(tiny_cpu.read_text())
    config.update(
        base_model=str(tiny_cpu.parent / "tiny-assets" / "model"),
        datasets=[{"path": str(data), "type": "completion", "field": "text"}],
        dataset_prepared_path=str(real_workspace / "prepared"),
        output_dir=str(real_workspace / "out"),
    )
    path = real_workspace / "broken.yaml"
    path.write_text(yaml.safe_dump(config))

    result = run_cli("submit", "--profile", "local", path, "--follow")
    assert result.code != 0
    pre_id, train_id = submitted(result.out, "preprocessing job "), submitted(result.out, "job ")
    assert pre_id and train_id, result.out
    assert f"{data}: line {bad_line} is not valid JSON" in result.out, result.out[-3000:]
    assert f"preprocessing job {pre_id} FAILED" in result.err and "cancelled without starting" in result.err
    assert sacct_times(pre_id)["state"] == "FAILED"
    assert sacct_times(train_id)["state"].startswith("CANCELLED")  # not pending forever
    assert not (Path(config["output_dir"]) / "metrics.jsonl").exists()  # the training job never ran
