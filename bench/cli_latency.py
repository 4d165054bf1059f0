"""Cold-start cost of `hpcft --help`, `validate`, `render`, `plan` and `status` against a bare `python -c pass` of
the same venv, in CPU time (user + system of the child: what a loaded login node charges) and wall time.

Each command runs in pairs with the bare interpreter (bare, command, bare, command, ...) so that both see the same
machine load; the ratio is the median of the pairs' ratios. Targets (issue 25): render, validate, plan, status
<= 10x, --help <= 4x. The launcher runs on login nodes, which import from parallel file systems: every module
costs. `status RUN` asks the local Slurm (squeue, sacct) about a job id it does not know, then draws the run's
loss curve (plotext).
Run: python bench/cli_latency.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import record  # noqa: E402

CONFIG = """\
base_model: ./model
datasets:
  - path: ./chat.jsonl
    type: chat_template
output_dir: ./out
"""


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of cmd."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, elapsed


def paired(cmd: list[str] | Callable[[], list[str]], cwd: Path, repeat: int) -> dict[str, float]:
    """Medians over `repeat` pairs (bare interpreter, command): CPU ms, wall ms, and the CPU and wall ratios."""
    cpu, wall, cpu_ratio, wall_ratio = [], [], [], []
    for _ in range(repeat):
        base_cpu, base_wall = timed([sys.executable, "-c", "pass"], cwd)
        run_cpu, run_wall = timed(cmd() if callable(cmd) else cmd, cwd)
        cpu.append(run_cpu)
        wall.append(run_wall)
        cpu_ratio.append(run_cpu / max(base_cpu, 1e-3))
        wall_ratio.append(run_wall / base_wall)
    median = statistics.median
    return {"cpu": median(cpu), "wall": median(wall), "cpu_ratio": median(cpu_ratio), "wall_ratio": median(wall_ratio)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    hpcft = shutil.which("hpcft") or str(Path(sys.executable).parent / "hpcft")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model").mkdir()
        (work / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
        (work / "cfg.yaml").write_text(CONFIG)
        # The shipped cscs profile, with this temporary folder among the file systems its nodes see.
        (work / "profiles").mkdir()
        (work / "profiles" / "cscs.yaml").write_text(
            f"extends: cscs\nnode_paths: [/capstor, /iopsstor, /users, {work}]\n"
        )
        os.environ["HPCFT_PROFILE_PATH"] = str(work / "profiles")
        base = paired([sys.executable, "-c", "pass"], work, args.repeat)
        help_t = paired([hpcft, "--help"], work, args.repeat)
        validate_t = paired(
            [hpcft, "validate", "--profile", "cscs", "cfg.yaml", "--image", "/x.sqsh"], work, args.repeat
        )
        # An 8B Llama's config.json (no weights), as `hpcft plan` reads it from a model folder or the HF cache.
        from hpcft.core.model_size import KNOWN_MODELS

        (work / "model" / "config.json").write_text(json.dumps(KNOWN_MODELS["meta-llama/Llama-3.1-8B"]))
        plan = [hpcft, "plan", "--profile", "cscs", "cfg.yaml", "--nodes", "4", "--image", "/x.sqsh"]
        plan_t = paired(plan, work, args.repeat)
        run_dir = work / "runs" / "bench" / "20260101-000000"
        run_dir.mkdir(parents=True)
        (run_dir / "manifest.json").write_text(
            json.dumps({"job_id": "999999", "job_name": "bench", "output_dir": str(work / "out")})
        )
        (work / "out").mkdir()
        (work / "out" / "metrics.jsonl").write_text(
            "".join(
                json.dumps(
                    {
                        "step": s,
                        "loss": 6 / (1 + s / 100),
                        "lr": 1e-5,
                        "grad_norm": 1.0,
                        "tokens_per_s": 1e4,
                        "epoch": s / 1000,
                    }
                )
                + "\n"
                for s in range(1, 1001)
            )
        )
        status_t = paired([hpcft, "status", str(run_dir)], work, args.repeat)
        table_t = paired([hpcft, "status", str(run_dir), "--no-plot"], work, args.repeat)
        runs = iter(range(10**6))
        render_t = paired(
            lambda: [hpcft, "render", "--profile", "cscs", "cfg.yaml", "--image", "/x.sqsh", "-o", f"r{next(runs)}"],
            work,
            args.repeat,
        )
    measured = [
        ("python -c pass", base, None),
        ("hpcft --help", help_t, 4),
        ("hpcft validate --profile cscs", validate_t, 10),
        ("hpcft render --profile cscs", render_t, 10),
        ("hpcft plan --profile cscs (8B, 4 nodes)", plan_t, 10),
        ("hpcft status RUN (table + curve of 1000 steps)", status_t, 10),
        ("hpcft status RUN --no-plot", table_t, 10),
    ]
    rows = [
        [
            name,
            f"{m['cpu'] * 1000:.0f}",
            f"{m['cpu_ratio']:.1f}",
            f"{m['wall'] * 1000:.0f}",
            f"{m['wall_ratio']:.1f}",
            "" if target is None else f"<= {target}",
        ]
        for name, m, target in measured
    ]
    record(
        "cli_latency",
        ["command", "CPU ms", "CPU ratio", "wall ms", "wall ratio", "target (CPU ratio)"],
        rows,
        notes=f"medians of {args.repeat} pairs (python -c pass, then the command) each; ratios are the pairs' medians",
        packages=["jinja2", "omegaconf", "pydantic", "plotext"],
    )


if __name__ == "__main__":
    main()
