"""The benchmarks' datasets on the login node: `validate` says whether each one (lm_eval_tasks, do_bench_eval's
bench_dataset) is in the Hugging Face cache the job uses, and refuses before the queue when it is not and the
profile keeps the nodes off the Hub. The cache is a fake one laid out as huggingface_hub and `datasets` lay it out."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

from hpcft.core.errors import ConfigError
from hpcft.core.features.eval_datasets import LM_EVAL_TASK_DATASETS, bench_source, hub_dataset_cached
from hpcft.launcher.config import load_job

from .conftest import BASE_CONFIG


def _config(workspace, text: str):
    path = workspace / "cfg.yaml"
    path.write_text(BASE_CONFIG.replace("launch:\n", text + "launch:\n"))
    return path


def _online_profile(tmp_path, monkeypatch) -> str:
    """The local profile with the Hub reachable from the nodes."""
    folder = tmp_path / "profiles"
    folder.mkdir(exist_ok=True)
    (folder / "online.yaml").write_text("extends: local\nenv:\n  HF_HUB_OFFLINE: '0'\n")
    monkeypatch.setenv("HPCFT_PROFILE_PATH", str(folder))
    return "online"


def fake_hub_download(hf_home: Path, repo: str) -> None:
    """What `hf download --repo-type dataset REPO` leaves in HF_HOME/hub."""
    snapshot = hf_home / "hub" / f"datasets--{repo.replace('/', '--')}" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "data.parquet").write_bytes(b"PAR1")


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "hf"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    for name in ("HF_HUB_CACHE", "HF_DATASETS_CACHE"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_offline_nodes_and_a_task_dataset_not_cached_is_refused_before_the_queue(run_cli, workspace, hf_home):
    config = _config(workspace, "lm_eval_tasks: [hellaswag, arc_easy:25]\n")
    result = run_cli("validate", "--profile", "local", config, cwd=workspace)  # local: HF_HUB_OFFLINE=1
    assert result.code == 2
    assert "lm_eval_tasks: hellaswag: the dataset Rowan/hellaswag is not in the Hugging Face cache" in result.err
    assert "HF_HUB_OFFLINE" in result.err and "hf download --repo-type dataset Rowan/hellaswag" in result.err
    assert "Traceback" not in result.err

    fake_hub_download(hf_home, "Rowan/hellaswag")
    with pytest.raises(ConfigError, match="allenai/ai2_arc is not in the Hugging Face cache"):
        load_job(config, "local")
    # A dataset `datasets` has prepared (HF_HOME/datasets/owner___name) counts as cached too.
    (hf_home / "datasets" / "allenai___ai2_arc").mkdir(parents=True)
    job = load_job(config, "local")
    assert not any("lm_eval_tasks" in w for w in job.warnings)


def test_online_nodes_get_a_warning_that_the_preprocessing_job_downloads_it(workspace, hf_home, tmp_path, monkeypatch):
    profile = _online_profile(tmp_path, monkeypatch)
    job = load_job(_config(workspace, "lm_eval_tasks: [gsm8k]\n"), profile)
    (warning,) = [w for w in job.warnings if "lm_eval_tasks" in w]
    assert "openai/gsm8k is not in the Hugging Face cache yet; the preprocessing job downloads it" in warning


def test_a_task_hpcft_does_not_know_is_a_warning(workspace, hf_home):
    job = load_job(_config(workspace, "lm_eval_tasks: [my_private_task]\n"), "local")
    assert any("my_private_task: hpcft cannot tell which dataset this task reads" in w for w in job.warnings)


def test_a_local_task_reads_its_own_data_file(workspace, hf_home):
    tasks = workspace / "tasks"
    tasks.mkdir()
    data = workspace / "colors.jsonl"
    (tasks / "colors.yaml").write_text(
        f"task: tiny_colors\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "process_docs: !function utils.process_docs\n"
    )
    config = _config(workspace, "lm_eval_tasks: [tiny_colors]\nlm_eval_include_path: ./tasks\n")
    with pytest.raises(ConfigError, match=f"lm_eval_tasks: tiny_colors: data file {data} not found"):
        load_job(config, "local")
    data.write_text("{}\n")
    job = load_job(config, "local")
    assert job.cfg.lm_eval_include_path == str(tasks)
    assert not any("tiny_colors" in w for w in job.warnings)


def test_bench_dataset_sources_as_axolotl_reads_them(workspace, hf_home, train_config_from):
    assert bench_source(train_config_from()).repo == "pharaouk/dharma-1"  # axolotl's default
    mmlu = bench_source(train_config_from(bench_dataset="mmlu-zs", bench_split="test"))
    assert (mmlu.repo, mmlu.files) == ("openaccess-ai-collective/mmlu-evals", ("zero_shot_mmlu_test.json",))
    config = _config(workspace, "val_set_size: 0.1\ndo_bench_eval: true\nbench_dataset: mmlu-fs\n")
    with pytest.raises(ConfigError, match="bench_dataset: mmlu-fs: the dataset openaccess-ai-collective/mmlu-evals"):
        load_job(config, "local")
    fake_hub_download(hf_home, "openaccess-ai-collective/mmlu-evals")
    assert hub_dataset_cached("openaccess-ai-collective/mmlu-evals", {})
    load_job(config, "local")


@pytest.fixture
def train_config_from(workspace):
    from hpcft.core.schema import TrainConfig

    def make(**keys):
        data = [{"path": str(workspace / "data" / "pretrain.jsonl"), "type": "completion"}]
        return TrainConfig.model_validate({"base_model": str(workspace / "model"), "datasets": data, **keys})

    return make


def test_the_job_cache_folder_of_the_profile_is_the_one_checked(workspace, tmp_path, monkeypatch, hf_home):
    shared = tmp_path / "shared-cache"
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "withcache.yaml").write_text(f"extends: local\ncache_dir: {shared}\n")
    monkeypatch.setenv("HPCFT_PROFILE_PATH", str(folder))
    config = _config(workspace, "lm_eval_tasks: [piqa]\n")
    fake_hub_download(hf_home, "baber/piqa")  # in this shell's cache ...
    load_job(config, "withcache")  # ... which the login node's check also reads
    fake_hub_download(shared, "allenai/winogrande")  # the job's own HF_HOME
    load_job(_config(workspace, "lm_eval_tasks: [winogrande]\n"), "withcache")


@pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm_eval is in hpcft[train]")
def test_the_table_of_task_datasets_is_what_the_pinned_lm_eval_reads():
    """Each entry against lm_eval's own task YAML (following `include:` as lm_eval does)."""
    tasks = Path(importlib.util.find_spec("lm_eval").origin).parent / "tasks"
    by_task: dict[str, Path] = {}
    for path in tasks.rglob("*.yaml"):
        text = path.read_text(errors="ignore")
        for key in ("task", "group"):
            found = re.search(rf"^{key}:\s*(\S+)\s*$", text, re.M)
            if found and found.group(1) in LM_EVAL_TASK_DATASETS:
                by_task.setdefault(found.group(1), path)
    assert set(by_task) == set(LM_EVAL_TASK_DATASETS)

    def dataset_path(path: Path) -> str | None:
        text = path.read_text(errors="ignore")
        found = re.search(r"^dataset_path:\s*(\S+)", text, re.M)
        if found:
            return found.group(1)
        include = re.search(r"^include:\s*(\S+)", text, re.M)
        if include:
            return dataset_path(path.parent / include.group(1))
        # A group (mmlu): the template its subtasks include, next to it.
        templates = sorted(path.parent.glob("*template*"))
        return dataset_path(templates[0]) if templates else None

    assert {name: dataset_path(path) for name, path in by_task.items()} == LM_EVAL_TASK_DATASETS


def test_submit_queues_the_preprocessing_job_to_download_missing_benchmark_data(
    workspace, hf_home, tmp_path, monkeypatch
):
    from hpcft.launcher.jobs.submit import preprocessing_job_needed

    (workspace / "model" / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    profile = _online_profile(tmp_path, monkeypatch)
    config = _config(workspace, "lm_eval_tasks: [hellaswag, arc_easy]\n")
    job = load_job(config, profile)
    assert preprocessing_job_needed(job, sweep=False, backend="sbatch") == (
        True,
        "benchmark datasets to download first: Rowan/hellaswag, allenai/ai2_arc",
    )
    fake_hub_download(hf_home, "Rowan/hellaswag")
    fake_hub_download(hf_home, "allenai/ai2_arc")
    needed, reason = preprocessing_job_needed(load_job(config, profile), sweep=False, backend="sbatch")
    assert "benchmark" not in reason  # back to the prepared-dataset decision


def test_validating_benchmarks_and_mlflow_imports_none_of_their_libraries(workspace, hf_home):
    import subprocess
    import sys

    fake_hub_download(hf_home, "Rowan/hellaswag")
    config = _config(
        workspace,
        "lm_eval_tasks: [hellaswag]\nmlflow_tracking_uri: file:./mlruns\nval_set_size: 0.1\ndo_bench_eval: true\n"
        f"bench_dataset: {workspace / 'data' / 'pretrain.jsonl'}\n",
    )
    code = (
        "import sys; from hpcft.launcher.config import load_job; "
        f"load_job({str(config)!r}, 'local'); "
        "print([m for m in ('torch', 'datasets', 'mlflow', 'lm_eval') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
