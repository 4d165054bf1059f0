"""lm_eval_tasks: lm-evaluation-harness on the final model after training, end to end on the tiny model with a
local task (an `include_path` YAML reading a local JSON file: no Hub), its scores in output_dir, on stdout and in
the MLflow run of the training; the accuracy checked against the saved model's own log-likelihoods."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hpcft.trainer.reporting.lm_eval_after_training import lm_eval_requests, model_arguments, scores, summary_lines

from .test_train_single import run_train, write_config

pytest.importorskip("lm_eval", reason="lm_eval is in hpcft[train]")

COLORS = ["blue", "green", "white", "black", "yellow", "red"]
THINGS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "sun": "yellow", "blood": "red"}


def write_colors_task(folder: Path) -> Path:
    """A multiple-choice task: "The sky is" -> one of six colours."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "colors.jsonl"
    data.write_text(
        "".join(
            json.dumps({"thing": t, "choices": COLORS, "answer": COLORS.index(c)}) + "\n" for t, c in THINGS.items()
        )
    )
    (folder / "colors.yaml").write_text(
        f"""task: tiny_colors
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "The {{{{thing}}}} is"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
    )
    return folder


def expected_accuracy(model_dir: str) -> float:
    """What the task's accuracy must be: for each row, the colour whose tokens the model finds likeliest after the
    prompt (sum of log-probabilities, as lm-evaluation-harness scores a multiple-choice answer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    right = 0
    for thing, colour in THINGS.items():
        context = f"The {thing} is"
        best, best_score = None, -float("inf")
        for choice in COLORS:
            context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
            whole = tokenizer(f"{context} {choice}", add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([whole])).logits[0].log_softmax(-1)
            score = sum(logits[i - 1, whole[i]].item() for i in range(len(context_ids), len(whole)))
            if score > best_score:
                best, best_score = choice, score
        right += best == colour
    return right / len(THINGS)


def test_lm_eval_runs_on_the_final_model_and_reports_everywhere(train_config, tmp_path, monkeypatch):
    tasks = write_colors_task(tmp_path / "tasks")
    store = tmp_path / "mlruns"
    cfg = train_config(
        max_steps=3,
        micro_batch_size=2,
        learning_rate=1e-2,
        save_steps=100,
        lm_eval_tasks=["tiny_colors"],
        lm_eval_include_path=str(tasks),
        lm_eval_batch_size=4,
        mlflow_tracking_uri=f"file://{store}",
        mlflow_experiment_name="lm-eval",
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    done = run_train(write_config(cfg, tmp_path / "train.yaml"), timeout=600, HPCFT_RUN_DIR=str(run_dir))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    results = json.loads((Path(cfg.output_dir) / "lm_eval_results.json").read_text())
    assert results["step"] == 3 and results["n-shot"] == {"tiny_colors": 0}
    accuracy = results["results"]["tiny_colors"]["acc,none"]
    assert accuracy == pytest.approx(expected_accuracy(cfg.output_dir))  # the trained model, not the base
    assert (run_dir / "lm_eval_results.json").read_text() == (Path(cfg.output_dir) / "lm_eval_results.json").read_text()
    assert f"lm_eval tiny_colors  acc {accuracy:.4f} ±" in done.stdout

    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=f"file://{store}")
    (run,) = client.search_runs([client.get_experiment_by_name("lm-eval").experiment_id])
    (metric,) = client.get_metric_history(run.info.run_id, "lm_eval/tiny_colors/acc")
    assert (metric.step, metric.value) == (3, pytest.approx(accuracy))
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 3  # the training's own metrics, same run


def test_tasks_are_grouped_by_their_few_shot_count_as_axolotl_does(train_config):
    cfg = train_config(lm_eval_tasks=["hellaswag", "arc_easy:25", "gsm8k:5", "arc_challenge:25"])
    got = {r.num_fewshot: r.tasks for r in lm_eval_requests(cfg, "cpu")}
    assert got == {None: ["hellaswag"], 25: ["arc_easy", "arc_challenge"], 5: ["gsm8k"]}
    assert all(r.batch_size == 8 for r in lm_eval_requests(cfg, "cpu"))  # axolotl's default


def test_the_model_evaluated_is_the_final_one(train_config):
    full = train_config()
    assert model_arguments(full) == {"pretrained": full.output_dir, "tokenizer": full.output_dir, "dtype": "auto"}
    lora = train_config(adapter="lora", lora_target_linear=True, model_revision="abc", trust_remote_code=True)
    assert model_arguments(lora) == {
        "pretrained": lora.base_model,
        "peft": lora.output_dir,
        "tokenizer": lora.output_dir,
        "dtype": "auto",
        "revision": "abc",
        "trust_remote_code": True,
    }
    assert model_arguments(train_config(lm_eval_model="/models/other")) == {"pretrained": "/models/other"}


def test_scores_and_summary_read_lm_eval_result_keys():
    results = {
        "gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": 0.05},
        "arc_easy": {"alias": "arc_easy", "acc,none": 0.5, "acc_stderr,none": 0.1, "acc_norm,none": 0.6},
    }
    assert scores(results) == {
        "lm_eval/gsm8k/exact_match/strict-match": 0.25,
        "lm_eval/gsm8k/exact_match_stderr/strict-match": 0.05,
        "lm_eval/arc_easy/acc": 0.5,
        "lm_eval/arc_easy/acc_stderr": 0.1,
        "lm_eval/arc_easy/acc_norm": 0.6,
    }
    assert summary_lines(results) == [
        "lm_eval gsm8k  exact_match/strict-match 0.2500 ±0.0500",
        "lm_eval arc_easy  acc 0.5000 ±0.1000  acc_norm 0.6000",
    ]


def test_the_child_process_does_not_see_torchrun(monkeypatch):
    from hpcft.trainer.reporting.lm_eval_after_training import child_environment

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("MASTER_ADDR", "node1")
    env = child_environment()
    assert not {"RANK", "WORLD_SIZE", "MASTER_ADDR"} & set(env) and env["PATH"] == os.environ["PATH"]
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # what a batch job's log sets (progress.py)
    assert child_environment()["TQDM_DISABLE"] == "1"


def test_the_preprocessing_job_caches_the_benchmark_datasets(train_config, tmp_path, monkeypatch):
    import datasets

    from hpcft.trainer.reporting.eval_downloads import fetch_eval_datasets

    cache = tmp_path / "datasets-cache"
    # The job sets HF_DATASETS_CACHE before `datasets` is imported; in this process it may be imported already.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    tasks = write_colors_task(tmp_path / "tasks")
    cfg = train_config(lm_eval_tasks=["tiny_colors:2"], lm_eval_include_path=str(tasks))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch_eval_datasets(cfg) == []  # nodes off the Hub: nothing to fetch from here
    assert not cache.exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert fetch_eval_datasets(cfg) == ["lm_eval_tasks tiny_colors"]
    assert list(cache.glob("json/*/*/*/*.arrow"))  # built by `datasets` into the cache the job reads


def test_an_adapter_run_is_evaluated_as_the_base_model_with_its_adapter(train_config, tiny_model_dir, tmp_path):
    """A LoRA run's output_dir holds the adapter: lm_eval loads base_model with it (peft=), which scores as the
    merged model does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hpcft.trainer.reporting.lm_eval_after_training import lm_eval_requests, run_request

    tasks = write_colors_task(tmp_path / "tasks")
    cfg = train_config(
        adapter="lora", lora_target_linear=True, lm_eval_tasks=["tiny_colors"], lm_eval_include_path=str(tasks)
    )
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(target_modules="all-linear")
    )
    for name, weight in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.5)  # a trained adapter changes the answers; a fresh one would not
    model.save_pretrained(cfg.output_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(cfg.output_dir)
    merged = tmp_path / "merged"
    model.merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(merged)

    with_adapter = expected_accuracy(str(merged))
    assert with_adapter != expected_accuracy(str(tiny_model_dir))  # so an ignored adapter would fail below

    (request,) = lm_eval_requests(cfg, "cpu")
    found = run_request(request)
    assert found["results"]["tiny_colors"]["acc,none"] == pytest.approx(with_adapter)


def test_a_tracker_that_fails_is_a_warning_not_a_failed_job(monkeypatch, tmp_path, caplog):
    from hpcft.trainer.reporting.lm_eval_after_training import log_to_trackers

    # TensorBoard asked for (use_tensorboard) but its package missing here: the scores stay in the results file.
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    monkeypatch.setitem(__import__("sys").modules, "tensorboard", None)
    assert "tensorboard" not in log_to_trackers({"lm_eval/t/acc": 0.5}, 3)
    assert "could not log the scores to tensorboard" in caplog.text
