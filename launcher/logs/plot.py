"""The loss curve in the terminal (plotext, for `hpcft status RUN` and the end of `submit --follow`), and which
runs `hpcft plot` draws (the curve itself and loss.png are hpcft.core.loss_curve's). plotext is imported only when
drawing, so `hpcft --help` and `hpcft status` without a plot stay fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hpcft.core.errors import ConfigError
from hpcft.core.loss_curve import Curve, points
from hpcft.core.protocol import METRICS_FILE
from hpcft.core.run_paths import RunPaths

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def terminal_plot(curve: Curve, title: str = "", width: int = 100, color: bool = False) -> str:
    """Loss (and eval loss) above, learning rate below, restarts as vertical lines: text for a terminal."""
    import plotext as plt

    plt.clear_figure()
    plt.subplots(2, 1)
    steps, loss = points(curve.steps, curve.loss)
    lr_steps, lr = points(curve.steps, curve.lr)
    top = plt.subplot(1, 1)
    top.plotsize(width, 16)
    # No plotext legends (label=): they raise IndexError on short or marked-up plots; the titles say what is drawn.
    top.title((title or "loss") + ("  (loss; x: eval loss)" if curve.eval_steps else "  (loss)"))
    top.plot(steps, loss, marker="braille")
    if curve.eval_steps:
        top.scatter(curve.eval_steps, curve.eval_loss, marker="x")
    bottom = plt.subplot(2, 1)
    bottom.plotsize(width, 8)
    if lr:
        bottom.title("learning rate")
        bottom.plot(lr_steps, lr, marker="braille")
    bottom.xlabel("step" + (f"  (| restart at step {', '.join(map(str, curve.restarts))})" if curve.restarts else ""))
    for panel in (top, bottom):
        for step in curve.restarts:
            panel.vline(step)
        if not color:
            panel.theme("clear")
    text = plt.build()
    plt.clear_figure()
    return text if color else _ANSI.sub("", text)


@dataclass(frozen=True)
class CurveSource:
    """One training's output_dir and how to name its plot (a sweep has one per point)."""

    label: str
    output_dir: Path
    png: Path


def curve_sources(ref: str | None, out: str | Path | None = None) -> list[CurveSource]:
    """What `hpcft plot` / `hpcft status RUN` draw for a reference: a job id, a run directory, 'latest', or an
    output_dir holding metrics.jsonl. The PNG goes to `out`, else loss.png in the run directory (a sweep:
    loss-<point>.png each)."""
    from hpcft.core.manifest import read_manifest
    from hpcft.launcher.jobs.runs import resolve_run

    given = Path(ref).expanduser() if ref and ref != "latest" else None
    if given is not None and (given / METRICS_FILE).is_file() and not RunPaths(given).manifest.is_file():
        png = Path(out) if out else given / "loss.png"
        return [CurveSource(given.name, given, png)]
    run = resolve_run(ref)
    if run.run_dir is None:
        raise ConfigError(
            f"job {run.job_id} has no hpcft run directory here; give the run directory or the training's output_dir"
        )
    manifest = read_manifest(run.run_dir)
    name = manifest.get("job_name") or run.run_dir.parent.name
    points = (manifest.get("sweep") or {}).get("points")
    if points:
        base = Path(out) if out else run.run_dir / "loss.png"
        return [
            CurveSource(
                f"{name} point {p['index']} ({' '.join(p['overrides'])})",
                Path(p["output_dir"]),
                base.with_name(f"{base.stem}-{p['index']}{base.suffix}"),
            )
            for p in points
        ]
    if not manifest.get("output_dir"):
        raise ConfigError(f"{run.run_dir}/manifest.json names no output_dir; give the training's output_dir")
    return [
        CurveSource(
            f"{name} (job {run.job_id})", Path(manifest["output_dir"]), Path(out) if out else run.run_dir / "loss.png"
        )
    ]


def curve_title(source: CurveSource, curve: Curve) -> str:
    last = next((loss for loss in reversed(curve.loss) if loss is not None), None)
    restarts = f", {len(curve.restarts)} restart(s)" if curve.restarts else ""
    return f"{source.label}: step {curve.steps[-1]}" + (f", loss {last:.3f}" if last is not None else "") + restarts
