"""Cold-start wall time of `hpcft --help`, `render`, `plan` and `status` against a bare `python -c pass`.

The launcher runs on login nodes: it must start fast, which mostly means never importing torch. `status RUN`
asks the local Slurm (squeue, sacct) about a job id it does not know, then draws the run's loss curve (plotext).
Run: python bench/cli_latency.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
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


def wall(cmd: list[str], cwd: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    hpcft = shutil.which("hpcft") or str(Path(sys.executable).parent / "hpcft")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model").mkdir()
        (work / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
        (work / "cfg.yaml").write_text(CONFIG)
        base = wall([sys.executable, "-c", "pass"], work, args.repeat)
        help_t = wall([hpcft, "--help"], work, args.repeat)
        # An 8B Llama's config.json (no weights), as `hpcft plan` reads it from a model folder or the HF cache.
        from hpcft.core.model_size import KNOWN_MODELS

        (work / "model" / "config.json").write_text(json.dumps(KNOWN_MODELS["meta-llama/Llama-3.1-8B"]))
        plan_t = wall([hpcft, "plan", "--profile", "cscs", "cfg.yaml", "--nodes", "4"], work, args.repeat)
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
        status_t = wall([hpcft, "status", str(run_dir)], work, args.repeat)
        table_t = wall([hpcft, "status", str(run_dir), "--no-plot"], work, args.repeat)
        runs = iter(range(10**6))
        render_t = statistics.median(
            wall(
                [hpcft, "render", "--profile", "cscs", "cfg.yaml", "--image", "/x.sqsh", "-o", f"r{next(runs)}"],
                work,
                1,
            )
            for _ in range(args.repeat)
        )
    rows = [
        ["python -c pass", f"{base * 1000:.0f}", "1.0"],
        ["hpcft --help", f"{help_t * 1000:.0f}", f"{help_t / base:.1f}"],
        ["hpcft render --profile cscs", f"{render_t * 1000:.0f}", f"{render_t / base:.1f}"],
        ["hpcft plan --profile cscs (8B, 4 nodes)", f"{plan_t * 1000:.0f}", f"{plan_t / base:.1f}"],
        ["hpcft status RUN (table + curve of 1000 steps)", f"{status_t * 1000:.0f}", f"{status_t / base:.1f}"],
        ["hpcft status RUN --no-plot", f"{table_t * 1000:.0f}", f"{table_t / base:.1f}"],
    ]
    record(
        "cli_latency",
        ["command", "median wall ms", "ratio to python -c pass"],
        rows,
        notes=f"median of {args.repeat} cold starts each",
        packages=["jinja2", "omegaconf", "pydantic", "plotext"],
    )


if __name__ == "__main__":
    main()
