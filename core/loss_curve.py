"""A run's loss curve read from <output_dir>/metrics.jsonl and starts.jsonl, and drawn as loss.png (matplotlib,
imported only when drawing). The trainer writes loss.png at the end of a job; `hpcft plot` draws the same file.

A resumed run re-logs the steps after its checkpoint: the later value wins, so the curve is one line, and each
restart is marked where it resumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcft.core.errors import ConfigError
from hpcft.core.protocol import METRICS_FILE, STARTS_FILE


@dataclass
class Curve:
    """Loss, learning rate and eval loss by step, and the steps where training restarted."""

    steps: list[int] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    lr: list[float | None] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    restarts: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.steps)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written while we read
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def read_curve(output_dir: str | Path) -> Curve:
    """The curve of a run's output_dir (empty when nothing has been logged yet)."""
    folder = Path(output_dir)
    train: dict[int, dict[str, Any]] = {}
    evals: dict[int, float] = {}
    restarts_seen: list[int] = []
    previous = 0
    for record in _json_lines(folder / METRICS_FILE):
        step = record["step"]
        if "eval_loss" in record:
            if record["eval_loss"] is not None:
                evals[step] = record["eval_loss"]
            continue
        if "loss" not in record:
            continue
        if step <= previous:  # a resume re-logs steps after its checkpoint
            restarts_seen.append(step - 1)
        previous = step
        train[step] = record  # the later value of a step wins
    starts = [s["step"] for s in _json_lines(folder / STARTS_FILE)]
    # starts.jsonl names every restart, also one that resumed right after the last logged step.
    restarts = sorted({s for s in starts if s > 0} if starts else set(restarts_seen))
    curve = Curve(restarts=restarts)
    for step in sorted(train):
        curve.steps.append(step)
        curve.loss.append(train[step].get("loss"))
        curve.lr.append(train[step].get("lr"))
    curve.eval_steps = sorted(evals)
    curve.eval_loss = [evals[s] for s in curve.eval_steps]
    return curve


def points(xs: list[int], ys: list[float | None]) -> tuple[list[int], list[float]]:
    kept = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def write_png(curve: Curve, path: str | Path, title: str = "") -> Path:
    """loss.png: loss and eval loss above, learning rate below, restarts marked; written atomically."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "drawing loss.png needs matplotlib: pip install matplotlib (hpcft[train] includes it)"
        ) from None
    matplotlib.use("Agg")  # no display on a compute or login node
    from matplotlib import pyplot as plt

    path = Path(path)
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, sharex=True, figsize=(9, 6), height_ratios=(3, 1))
    try:
        steps, loss = points(curve.steps, curve.loss)
        ax_loss.plot(steps, loss, color="tab:blue", linewidth=1.4, label="train loss")
        if curve.eval_steps:
            ax_loss.plot(curve.eval_steps, curve.eval_loss, "o-", color="tab:orange", markersize=4, label="eval loss")
        ax_loss.set_ylabel("loss")
        ax_loss.set_title(title or "training loss")
        ax_loss.grid(alpha=0.3)
        lr_steps, lr = points(curve.steps, curve.lr)
        ax_lr.plot(lr_steps, lr, color="tab:green", linewidth=1.2)
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("step")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax_lr.grid(alpha=0.3)
        for i, step in enumerate(curve.restarts):
            for ax in (ax_loss, ax_lr):
                ax.axvline(
                    step,
                    color="tab:red",
                    linestyle="--",
                    linewidth=1,
                    label="restart" if ax is ax_loss and i == 0 else None,
                )
        ax_loss.legend(loc="upper right")
        fig.tight_layout()
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=110)
        tmp.replace(path)
    finally:
        plt.close(fig)
    return path
