"""A job whose model, datasets and prepared-data folder all live outside the run folder (and outside the
config's folder) trains on the local two-node cluster with the plan hpcft renders for it (profile local)."""

from __future__ import annotations

import json
import shutil

import pytest

from hpcft.launcher.config import load_job
from hpcft.launcher.jobplan import job_paths

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_data_in_its_own_folder_trains_with_the_plan(tiny_cpu, real_workspace, run_cli):
    shared = real_workspace / "shared"  # stands for a project folder on the cluster's shared file system
    shutil.copytree(tiny_cpu.parent / "tiny-assets" / "model", shared / "models" / "tiny")
    shutil.copytree(tiny_cpu.parent / "data", shared / "datasets")
    config = real_workspace / "configs" / "tiny.yaml"
    config.parent.mkdir()
    text = tiny_cpu.read_text()
    for old, new in {
        "./tiny-assets/model": str(shared / "models" / "tiny"),
        "./data/": f"{shared / 'datasets'}/",
        "./tiny-assets/prepared": str(shared / "prepared"),
        "./tiny-assets/outputs": str(shared / "outputs"),
        "max_steps: 30": "max_steps: 4",
        "save_steps: 10": "save_steps: 4",
    }.items():
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)

    job = load_job(config, "local")
    assert {
        str(shared / "models" / "tiny"),
        str(shared / "datasets" / "chat.jsonl"),
        str(shared / "prepared"),
        str(shared / "outputs"),
    } <= set(job_paths(job))
    result = run_cli(
        "submit", "--profile", "local", config, "--follow", "-o", real_workspace / "run", cwd=real_workspace
    )
    assert result.code == 0, result.out[-3000:] + result.err
    run = real_workspace / "run"
    assert not any(run.rglob("*.jsonl"))  # nothing of the data was copied into the run folder
    lines = [json.loads(line) for line in (shared / "outputs" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    assert any((shared / "prepared").iterdir())  # the trainer wrote its prepared data where the config says
    assert (shared / "outputs" / "checkpoint-4").is_dir()
