"""MLflow on the local two-node cluster: configs/examples/tiny-cpu.yaml with a `file:` tracking store, submitted
through `hpcft submit --profile local --follow` (2 nodes x 1 process, ZeRO-3 on CPU). The store is read back with
mlflow's own client: one run (only rank 0 logs), finished, with the loss of every step that metrics.jsonl has.
The same job scores do_bench_eval's questions at each evaluation (each rank its share, under ZeRO-3) and runs
lm_eval_tasks (a local task) on the final model after training: their scores are in the same MLflow run, checked
against an independent scoring of the saved model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trainer.test_bench_eval import QUESTIONS, independent_scores
from tests.trainer.test_lm_eval_after_training import write_colors_task

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_a_two_node_run_writes_its_metrics_to_a_file_store(tiny_cpu, real_workspace, run_cli, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow-skinny is in hpcft[train]")
    from mlflow import MlflowClient

    out, store = real_workspace / "outputs", real_workspace / "mlruns"
    tasks = write_colors_task(real_workspace / "tasks")  # /tmp: both nodes of the local cluster see it
    bench = real_workspace / "bench.json"
    bench.write_text("".join(json.dumps({"subject": s, "input": i, "output": o}) + "\n" for s, i, o in QUESTIONS))
    result = run_cli(
        "submit",
        "--profile",
        "local",
        tiny_cpu,
        "--follow",
        f"output_dir={out}",
        "max_steps=4",
        "save_steps=100",
        f"mlflow_tracking_uri=file:{store}",
        "mlflow_experiment_name=hpcft-slurm",
        "mlflow_run_name=two-nodes",
        "lm_eval_tasks=[tiny_colors]",
        f"lm_eval_include_path={tasks}",
        "val_set_size=0.05",
        "eval_steps=2",
        "do_bench_eval=true",
        f"bench_dataset={bench}",
    )
    assert result.code == 0, result.out[-3000:] + result.err

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a folder store only when asked
    client = MlflowClient(tracking_uri=f"file://{store}")
    experiment = client.get_experiment_by_name("hpcft-slurm")
    assert experiment is not None, sorted(p.name for p in store.iterdir())
    (run,) = client.search_runs([experiment.experiment_id])  # one run: the other node's rank logged nothing
    assert run.info.run_name == "two-nodes" and run.info.status == "FINISHED"
    losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
    logged = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    expected = {row["step"]: row["loss"] for row in logged if "loss" in row}
    assert sorted(losses) == [1, 2, 3, 4] == sorted(expected)
    assert losses == pytest.approx(expected, rel=1e-4)
    assert {"learning_rate", "grad_norm"} <= set(run.data.metrics)

    # Bench eval at steps 2 and 4 on 2 ranks (5 questions: 3 and 2, the second rank's padding turn counts nothing);
    # at step 4 the weights are the saved model's.
    total = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval_bench_total_accuracy")}
    assert sorted(total) == [2, 4] and "eval bench 4/4  accuracy" in result.out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out).eval()
    groups, loss = independent_scores(model, AutoTokenizer.from_pretrained(out))
    assert total[4] == pytest.approx(sum(sum(g) for g in groups.values()) / 5)
    (bench_loss,) = [m for m in client.get_metric_history(run.info.run_id, "eval_bench_loss") if m.step == 4]
    assert bench_loss.value == pytest.approx(loss, rel=1e-3)

    (run_dir,) = real_workspace.glob("runs/tiny-cpu/*")
    results = json.loads((run_dir / "lm_eval_results.json").read_text())
    accuracy = results["results"]["tiny_colors"]["acc,none"]
    assert results["step"] == 4 and f"lm_eval tiny_colors  acc {accuracy:.4f}" in result.out
    (metric,) = client.get_metric_history(run.info.run_id, "lm_eval/tiny_colors/acc")
    assert (metric.step, metric.value) == (4, pytest.approx(accuracy))
