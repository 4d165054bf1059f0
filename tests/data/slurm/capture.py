"""Re-capture the Slurm outputs the parsing tests read, from the local cluster (scripts/local-slurm.sh up).

    python tests/data/slurm/capture.py

Every command is the one hpcft.launcher.slurm runs (same formats), so the files are exactly what it parses.
Captured with Slurm 22.05.8 (Debian bookworm).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hpcft.launcher import slurm

HERE = Path(__file__).resolve().parent
FAKE = HERE.parents[1] / "slurm" / "fake_torchrun.py"


def run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def sbatch(work: Path, body: str, *args: str) -> str:
    script = work / f"job{time.monotonic_ns()}.sh"
    script.write_text("#!/bin/bash\n" + body + "\n")
    proc = run(slurm.sbatch_argv(script, ["-o", str(work / "%j.out"), "-e", str(work / "%j.err"), *args]), cwd=work)
    (HERE / "sbatch_parsable.txt").write_text(proc.stdout)
    return slurm.parse_sbatch_parsable(proc.stdout)


def wait_ended(job_id: str) -> None:
    for _ in range(100):
        members = slurm.job_members(job_id)
        if members and all(m.finished for m in members):
            return
        time.sleep(0.3)
    raise SystemExit(f"job {job_id} did not end")


def squeue_text(ids: list[str]) -> str:
    return run(
        ["squeue", "--array", "--states=all", "--noheader", "-o", slurm.SQUEUE_FORMAT, "-j", ",".join(ids)]
    ).stdout


def main() -> int:
    if not slurm.controller_reachable():
        print("no Slurm controller answers; run scripts/local-slurm.sh up first", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="hpcft-capture-"))
    for name, args in (("bad_partition", ["-p", "nosuchpartition"]), ("bad_account", ["-A", "nosuchaccount"])):
        script = work / "refused.sh"
        script.write_text("#!/bin/bash\ntrue\n")
        (HERE / f"sbatch_{name}.stderr").write_text(run(slurm.sbatch_argv(script, args)).stderr)

    two_nodes = ["-N2", "--ntasks-per-node=1", "-J", "two nodes|odd name"]
    ok = sbatch(work, "srun --label bash -c 'echo \"$(hostname) SLURM_PROCID=$SLURM_PROCID\"'", *two_nodes)
    (work / "train.yaml").write_text("output_dir:\n")
    # A 2-node run whose task 1 raises: srun --label output with a real traceback, for `hpcft logs --errors`.
    failing = sbatch(
        work,
        f"srun --label --kill-on-bad-exit=1 bash -c '{sys.executable} {FAKE} "
        f"--node_rank=$SLURM_PROCID {work}/train.yaml'",
        *two_nodes,
        "--export=ALL,HPCFT_FAKE_FAIL_RANK=1,HPCFT_FAKE_STEPS=2",
    )
    running = sbatch(work, "sleep 60", *two_nodes)
    array = sbatch(work, "sleep 2", "--array=0-2", "-J", "sweep")
    held = sbatch(work, "true", "--array=0-2", "--hold", "-J", "held")
    time.sleep(1.5)
    (HERE / "squeue_live.txt").write_text(squeue_text([running, array, held]))
    (HERE / "scontrol_show_job_running.txt").write_text(run(["scontrol", "show", "job", "-o", running]).stdout)
    (HERE / "scontrol_show_job_array.txt").write_text(run(["scontrol", "show", "job", "-o", array]).stdout)
    run(["scontrol", "requeue", running])  # a requeued job: sacct -D lists both runs
    time.sleep(1.5)
    run(["scancel", running])
    run(["scancel", held])
    for job_id in (ok, failing, running, array):
        wait_ended(job_id)
    time.sleep(2)  # let slurmdbd record the ends
    ids = [ok, failing, running, array, held]
    (HERE / "squeue_ended.txt").write_text(squeue_text(ids))
    (HERE / "sacct_ended.txt").write_text(
        run(["sacct", "-X", "-D", "-P", "-n", "-o", ",".join(slurm.SACCT_FIELDS), "-j", ",".join(ids)]).stdout
    )
    (HERE / "scontrol_show_job_failed.txt").write_text(run(["scontrol", "show", "job", "-o", failing]).stdout)
    (HERE / "srun_label_hostname.out").write_text((work / f"{ok}.out").read_text())
    (HERE / "srun_label_traceback.out").write_text((work / f"{failing}.out").read_text())
    (HERE / "srun_label_traceback.err").write_text((work / f"{failing}.err").read_text())
    (HERE / "ids.txt").write_text(
        f"ok={ok}\nfailing={failing}\nrequeued_cancelled={running}\narray={array}\nheld_cancelled={held}\n"
    )
    print(f"captured into {HERE} (jobs {', '.join(ids)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
