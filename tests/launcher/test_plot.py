"""The loss curve: one continuous line over restarts, restarts marked, eval loss on the same plot; drawn in the
terminal (plotext) and as loss.png (matplotlib) by `hpcft plot`, also for a run that is still going."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hpcft.core.loss_curve import Curve, read_curve
from hpcft.launcher.cli import print_curves
from hpcft.launcher.logs.plot import terminal_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(output_dir: Path, starts: bool = True) -> None:
    """A run that crashed after step 7 and resumed from checkpoint-5 (steps 6 and 7 logged twice), with evals."""
    output_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        {"step": s, "loss": 6.0 - 0.1 * s, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 1e3, "epoch": 0.1}
        for s in range(1, 8)
    ]
    lines.append({"step": 5, "eval_loss": 5.6, "epoch": 0.1})
    lines += [
        {
            "step": s,
            "loss": 5.0 - 0.05 * s,
            "lr": 1e-3 * (12 - s) / 12,
            "grad_norm": 1.0,
            "tokens_per_s": 1e3,
            "epoch": 0.2,
        }
        for s in range(6, 13)
    ]
    lines.append({"step": 10, "eval_loss": 4.7, "epoch": 0.2})
    (output_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"step": 13, "lo')
    if starts:
        (output_dir / "starts.jsonl").write_text('{"step": 0, "max_steps": 12}\n{"step": 5, "max_steps": 12}\n')


@pytest.mark.parametrize("starts", [True, False])
def test_resumed_run_is_one_curve_with_the_restart_marked(tmp_path, starts):
    write_run(tmp_path, starts)
    curve = read_curve(tmp_path)
    assert curve.steps == list(range(1, 13))  # the half-written last line is skipped
    assert curve.loss[5] == pytest.approx(5.0 - 0.05 * 6)  # step 6 as the resumed run logged it
    assert curve.restarts == [5]  # from starts.jsonl, or from the steps going back when it is missing
    assert (curve.eval_steps, curve.eval_loss) == ([5, 10], [5.6, 4.7])


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_terminal_plot_of_a_run_just_begun(steps):
    # plotext's legends raise IndexError on runs this short: the plot has none (its titles say what is drawn).
    curve = Curve(steps=list(range(1, steps + 1)), loss=[2.0 / s for s in range(1, steps + 1)], lr=[1e-3] * steps)
    assert "loss" in terminal_plot(curve, "just begun", width=78)


def test_terminal_plot_draws_loss_lr_and_restarts(tmp_path):
    write_run(tmp_path)
    text = terminal_plot(read_curve(tmp_path), "unit: step 12", width=80)
    assert "unit: step 12" in text and "learning rate" in text and "eval loss" in text
    assert "restart at step 5" in text
    assert re.search("[\u2800-\u28ff]", text)  # braille dots: the curve itself
    assert "\x1b[" not in text  # no colour codes unless asked for
    assert "\x1b[" in terminal_plot(read_curve(tmp_path), width=80, color=True)


def test_hpcft_plot_writes_loss_png_of_an_output_dir(run_cli, tmp_path):
    write_run(tmp_path / "out")
    result = run_cli("plot", tmp_path / "out", "-o", tmp_path / "curve.png")
    assert result.code == 0, result.err
    assert result.out.strip() == str(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(tmp_path.glob(".*.tmp.png"))  # written atomically


def test_hpcft_plot_of_a_run_directory_and_status_curve(run_cli, tmp_path, capsys):
    write_run(tmp_path / "out")
    run_dir = tmp_path / "runs" / "unit" / "20261130-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(
        json.dumps({"job_id": "4242", "job_name": "unit", "output_dir": str(tmp_path / "out")})
    )
    result = run_cli("plot", run_dir)
    assert result.code == 0, result.err
    assert (run_dir / "loss.png").read_bytes()[:8] == PNG_MAGIC
    print_curves(str(run_dir))  # what `hpcft status RUN` prints below its table
    out = capsys.readouterr().out
    assert "unit (job 4242): step 12, loss 4.400, 1 restart(s)" in out
    assert f"loss.png: {run_dir / 'loss.png'}" in out


def test_nothing_logged_yet_is_said_not_drawn(run_cli, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.jsonl").write_text("")
    result = run_cli("plot", tmp_path / "out")
    assert result.code == 1 and "no step logged yet" in result.err
    assert not (tmp_path / "out" / "loss.png").exists()
