"""`hpcft logs` on the log of a 512-node job: wall time and peak memory of each variant against grep/tail.

A real job runs on the local Slurm cluster (a few seconds, a stand-in Python); its log is then replaced by a
synthetic `srun --label`led one of the given size (bench/synthetic_log.py: 512 node tasks x 4 ranks, NCCL
chatter, a requeue, task 377's traceback near the end) and its manifest says 512 nodes. Each command runs as
its own process; peak memory is that process's max RSS (GNU time's %M).

Run (holding the shared cluster lock only while the job runs):
    python bench/log_scale.py --sizes 300M 1G [--keep]
or, with the run directory of a job that already ran on the local cluster (its logs are not touched):
    python bench/log_scale.py --run-dir runs/tiny-cpu/20261130-042956
Files go to /var/tmp/hpcft-log-scale (deleted at the end unless --keep).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import record  # noqa: E402
from synthetic_log import write_synthetic_log  # noqa: E402

LOCK = "/tmp/hpcft-slurm.lock"
CONFIG = """\
base_model: ./model
datasets:
  - path: ./data.jsonl
    type: completion
output_dir: ./outputs
launch:
  job_name: log-scale
  nodes: 2
  time: '00:05:00'
"""


def parse_size(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def finished_job(work: Path, env: dict[str, str]) -> tuple[str, Path]:
    """Submit a job that ends at once and wait for it; returns its id and run directory."""
    (work / "model").mkdir(parents=True, exist_ok=True)
    (work / "model" / "config.json").write_text("{}")
    (work / "data.jsonl").write_text('{"text": "x"}\n')
    (work / "cfg.yaml").write_text(CONFIG)
    profiles = work / "profiles"
    profiles.mkdir(exist_ok=True)
    wrapper = profiles / "quick-python"
    wrapper.write_text('#!/bin/sh\necho "stand-in for torchrun on $(hostname)"\n')
    wrapper.chmod(0o755)
    (profiles / "logscale.yaml").write_text(f"extends: local\npython: {wrapper}\n")
    env["HPCFT_PROFILE_PATH"] = str(profiles)
    hpcft = str(Path(sys.executable).parent / "hpcft")
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = subprocess.run(
            [hpcft, "submit", "--profile", "logscale", "cfg.yaml", "--follow"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    if out.returncode != 0:
        raise SystemExit(f"the stand-in job failed:\n{out.stdout}\n{out.stderr}")
    submitted = re.search(r"submitted job (\d+): (\S+)", out.stdout)
    if submitted is None:
        raise SystemExit(f"no job id in hpcft's output:\n{out.stdout}")
    return submitted.group(1), Path(submitted.group(2))


def measure(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, last line of stdout) of one command."""
    # GNU time reports the command's own peak: a child forked straight from this Python would be charged this
    # process's RSS at the fork (Linux carries the high-water mark across exec).
    peak_file = cwd / "bench-peak.txt"
    start = time.perf_counter()
    with open(cwd / "bench-out.txt", "wb") as sink:
        code = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(peak_file), *argv],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.DEVNULL,
        ).returncode
    wall = time.perf_counter() - start
    if code not in (0, 1):
        raise SystemExit(f"{argv} exited {code}")
    peak_kb = int(peak_file.read_text().split()[-1])
    with open(cwd / "bench-out.txt", "rb") as handle:
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - 400))
        last = handle.read().decode(errors="replace").strip().splitlines()
    return wall, peak_kb / 1024, last[-1] if last else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["300M", "1G"])
    parser.add_argument("--tasks", type=int, default=512)
    parser.add_argument("--root", default="/var/tmp/hpcft-log-scale")
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    parser.add_argument("--no-record", action="store_true", help="print the table only")
    parser.add_argument(
        "--run-dir",
        help="a run directory of a finished job to copy and use instead of running one "
        "(when the shared cluster is busy)",
    )
    args = parser.parse_args()
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    env = dict(os.environ, XDG_STATE_HOME=str(root / "state"), NO_COLOR="1")
    slurm_conf = Path("/var/tmp/hpcft-slurm/etc/slurm.conf")
    if "SLURM_CONF" not in env and slurm_conf.is_file():
        env["SLURM_CONF"] = str(slurm_conf)
    hpcft = str(Path(sys.executable).parent / "hpcft")
    rows = []
    try:
        if args.run_dir:
            run_dir = root / "run"
            shutil.copytree(args.run_dir, run_dir, ignore=shutil.ignore_patterns("torchelastic", "logs"))
            job_id = str(json.loads((run_dir / "manifest.json").read_text())["job_id"])
        else:
            job_id, run_dir = finished_job(root / "work", env)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        manifest["launch"].update(nodes=args.tasks, procs_per_node=4)  # the job the synthetic log pretends to be
        (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
        for size in args.sizes:
            for old in (run_dir / "logs").glob("*"):
                old.unlink()
            log = write_synthetic_log(run_dir / "logs", job_id, parse_size(size), tasks=args.tasks)
            mb = log.out.stat().st_size / 1e6
            variants = [
                ("hpcft logs RUN", [hpcft, "logs", str(run_dir)]),
                ("hpcft logs --tail 100 RUN", [hpcft, "logs", "--tail", "100", str(run_dir)]),
                ("hpcft logs --rank 377 RUN", [hpcft, "logs", "--rank", "377", str(run_dir)]),
                ("hpcft logs --grep 'Watchdog caught' RUN", [hpcft, "logs", "--grep", "Watchdog caught", str(run_dir)]),
                ("hpcft logs --errors RUN (log scan)", [hpcft, "logs", "--errors", str(run_dir)]),
                ("grep '^377: ' FILE", ["grep", "^377: ", str(log.out)]),
                ("grep 'Watchdog caught' FILE", ["grep", "Watchdog caught", str(log.out)]),
                ("tail -n 100 FILE", ["tail", "-n", "100", str(log.out)]),
            ]
            for name, argv in variants:
                wall, rss, last = measure(argv, root, env)
                if "--errors" in name and "1509" not in (root / "bench-out.txt").read_text().splitlines()[0]:
                    raise SystemExit("--errors did not name task 377's rank 1509")
                rows.append([f"{mb:.0f} MB ({log.lines / 1e6:.1f} M lines)", name, f"{wall:.2f}", f"{rss:.0f}"])
                print(rows[-1], last[:100], flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    notes = (
        f"A finished 2-node job of the local Slurm cluster (job {job_id}) with its log replaced by a "
        f"synthetic one of {args.tasks} `srun --label`led node tasks (bench/synthetic_log.py); every "
        "command is one process, its output to a file; peak = the process's max RSS (GNU time). "
        "`--errors` names task 377's traceback (rank 1509) from the log scan (the synthetic job has no "
        "error files). The job's 2 real nodes name only tasks 0-1 (others show as [?/N]). The machine is a "
        "shared 2-core VM: other engineers' jobs load it at the same time, so walls vary by 2x from run "
        "to run; compare rows of one run."
    )
    if args.no_record:
        print(notes)
    else:
        record(
            "log_scale: hpcft logs on the log of a 512-node job",
            ["log", "command", "wall s", "peak MB"],
            rows,
            notes=notes,
        )


if __name__ == "__main__":
    main()
