"""The metrics line: format, rank-0-only output, the metrics.jsonl file and tracker selection."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re

from transformers import TrainerControl, TrainerState, TrainingArguments

from hpcft.trainer.reporting.metrics import (
    METRICS_FILE,
    TRAIN_KEYS,
    MetricsCallback,
    format_metrics_line,
    tracker_arguments,
    tracker_environment,
)
from hpcft.trainer.reporting.progress import (
    PROGRESS_BAR_SWITCHES,
    format_step_line,
    quiet_progress_bars_in_logs,
    short_count,
)


def test_metrics_line_format():
    line = format_metrics_line(7, 2.5, 1e-4, 0.75, 1234.5, 0.25)
    assert "\n" not in line
    assert json.loads(line) == {
        "step": 7,
        "loss": 2.5,
        "lr": 1e-4,
        "grad_norm": 0.75,
        "tokens_per_s": 1234.5,
        "epoch": 0.25,
    }
    assert list(json.loads(line)) == list(TRAIN_KEYS)
    # JSON has no NaN: a diverged loss must still give a parseable line
    assert json.loads(format_metrics_line(1, math.nan, 1e-4, math.inf, None, 0.0))["loss"] is None


def test_metrics_callback_writes_rank0_lines(tmp_path, capsys):
    args, control = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"), TrainerControl()
    callback = MetricsCallback(tmp_path)
    state = TrainerState(global_step=0, num_input_tokens_seen=0, max_steps=10)
    state.is_world_process_zero = True
    callback.on_train_begin(args, state, control)
    state.global_step, state.num_input_tokens_seen, state.epoch = 5, 4096, 0.5
    callback.on_log(args, state, control, logs={"loss": 1.5, "learning_rate": 2e-5, "grad_norm": 0.3, "epoch": 0.5})
    callback.on_log(args, state, control, logs={"eval_loss": 1.7, "epoch": 0.5})
    callback.on_log(args, state, control, logs={"train_runtime": 3.0})  # the end-of-training summary: no line
    replica = TrainerState(global_step=5)
    replica.is_world_process_zero = False
    callback.on_log(args, replica, control, logs={"loss": 9.9, "learning_rate": 1.0})
    printed = capsys.readouterr().out.splitlines()
    written = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert len(written) == 2 and len(printed) == 2
    # People read the step line; machines read the JSON in metrics.jsonl.
    assert re.fullmatch(
        r"step 5/10  loss 1\.500  lr 2\.00e-05  grad 0\.30  \S+ tok/s  0:00 elapsed  ~0:00 left", printed[0]
    ), printed[0]
    assert printed[1] == "eval at step 5/10  eval_loss 1.700"
    train = json.loads(written[0])
    assert train["step"] == 5 and train["loss"] == 1.5 and train["lr"] == 2e-5 and train["tokens_per_s"] > 0
    assert json.loads(written[1]) == {"step": 5, "eval_loss": 1.7, "epoch": 0.5}


def test_trackers(train_config, caplog):
    assert tracker_arguments(train_config())["report_to"] == "none"
    with caplog.at_level(logging.WARNING, logger="hpcft.trainer"):
        report_to = tracker_arguments(train_config(wandb_project="p", wandb_mode="offline"))["report_to"]
    if importlib.util.find_spec("wandb") is None:
        assert report_to == "none" and "wandb_project is set but wandb is not installed" in caplog.text
    else:
        assert report_to == ["wandb"]
    assert tracker_arguments(train_config(wandb_project="p", wandb_mode="disabled"))["report_to"] == "none"
    env = tracker_environment(train_config(wandb_project="p", wandb_mode="offline", wandb_run_id="abc"))
    assert env["WANDB_MODE"] == "offline" and env["WANDB_RUN_ID"] == "abc" and env["WANDB_RESUME"] == "allow"
    cfg = train_config(use_tensorboard=True)
    assert tracker_environment(cfg)["TENSORBOARD_LOGGING_DIR"].endswith("out/tensorboard")


def test_step_line_reads_like_the_issue_asks():
    line = format_step_line(10, 35, 4.71389, 2.5612e-3, 1.7749, 2712.4, 41.2, 62.0)
    assert line == "step 10/35  loss 4.714  lr 2.56e-03  grad 1.77  2.7k tok/s  0:41 elapsed  ~1:02 left"
    assert format_step_line(3, None, math.nan, None, None, None, 3725, None) == "step 3  loss nan  1:02:05 elapsed"
    assert [short_count(v) for v in (950, 2712, 41_000, 1_234_567)] == ["950", "2.7k", "41k", "1.2M"]


def test_progress_bars_are_turned_off_in_a_log_file_only(tmp_path, monkeypatch):
    for name in PROGRESS_BAR_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    with open(tmp_path / "job.err", "w") as log_file:
        assert quiet_progress_bars_in_logs(log_file)
    assert all(os.environ[name] == "1" for name in PROGRESS_BAR_SWITCHES)

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv(PROGRESS_BAR_SWITCHES[0])
    assert not quiet_progress_bars_in_logs(Terminal()) and PROGRESS_BAR_SWITCHES[0] not in os.environ


def test_loss_png_goes_to_the_run_directory_at_job_end(tmp_path, monkeypatch, capsys):
    from hpcft.trainer.train import draw_loss_png

    out, run_dir = tmp_path / "out", tmp_path / "runs" / "tiny-cpu" / "20261130-000000"
    run_dir.mkdir(parents=True)
    out.mkdir()
    (out / METRICS_FILE).write_text(
        "".join(format_metrics_line(s, 5.0 - s / 10, 1e-3, 1.0, 1e3, 0.1) + "\n" for s in range(1, 6))
    )
    monkeypatch.setenv("HPCFT_RUN_DIR", str(run_dir))
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert draw_loss_png(str(out)) == run_dir / "loss.png"
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")  # a sweep's task: one plot per point
    assert draw_loss_png(str(out)) == run_dir / "loss-3.png"
    assert (run_dir / "loss-3.png").read_bytes()[:4] == b"\x89PNG"
    assert f"hpcft: loss curve: {run_dir / 'loss.png'}" in capsys.readouterr().out
    (out / METRICS_FILE).write_text("")  # nothing logged (a crash before step 1): no plot, no error
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    (run_dir / "loss.png").unlink()
    assert draw_loss_png(str(out)) is None and not (run_dir / "loss.png").exists()
