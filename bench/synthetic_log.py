"""A synthetic `srun --label`led log of a large job, for bench/log_scale.py and the log tests: NCCL chatter from
every node task, rank 0's metrics lines, a time-limit requeue appended to the same file, then one failing task's
traceback near the end followed by the NCCL timeouts of the ranks that waited for it."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

_CHATTER = (
    "NCCL INFO Channel {c:02d}/24 : {a}[0] -> {b}[0] via P2P/CUMEM/read",
    "NCCL INFO Connected all rings, use ring PXN 0 GDR 1",
    "NCCL INFO comm 0x{h:x} rank {r} nRanks {n} nNodes {t} localRanks 4 localRank 0 MNNVL 0",
    "NCCL INFO NET/OFI Selected provider is cxi, fabric is cxi (found 4 nics)",
    "NCCL INFO ncclCommInitRankConfig comm 0x{h:x} rank {r} nranks {n} cudaDev 0 busId 1901000 - Init COMPLETE",
)


@dataclass
class SyntheticLog:
    out: Path  # the merged stdout of the job (what `--output` names)
    err: Path  # srun's own messages and the batch script's errors
    failing_task: int
    failing_rank: int
    timed_out_tasks: list[int]
    lines: int


def write_synthetic_log(
    run_logs: Path,
    job_id: str,
    size_bytes: int,
    tasks: int = 512,
    failing_task: int = 377,
    gpus_per_task: int = 4,
    seed: int = 0,
) -> SyntheticLog:
    """Write logs/slurm-<job_id>.out of about size_bytes (and a small .err) as a `tasks`-node job would."""
    rng = random.Random(seed)
    run_logs.mkdir(parents=True, exist_ok=True)
    out, err = run_logs / f"slurm-{job_id}.out", run_logs / f"slurm-{job_id}.err"
    width = len(str(tasks - 1))  # srun --label pads the task number to the widest one
    world = tasks * gpus_per_task
    failing_rank = failing_task * gpus_per_task + 1
    timed_out = sorted(rng.sample([t for t in range(tasks) if t != failing_task], min(20, tasks - 1)))
    nodelist = f"nid[000000-{tasks - 1:06d}]"
    written = lines = 0
    step = 0
    requeue_at, fail_at = int(size_bytes * 0.4), int(size_bytes * 0.97)
    requeued = failed = False

    def label(task: int, text: str) -> str:
        return f"{task:>{width}}: {text}\n"

    with out.open("w") as handle:

        def emit(text: str) -> None:
            nonlocal written, lines
            handle.write(text)
            written += len(text)
            lines += text.count("\n")

        emit(f"hpcft: job {job_id} on {tasks} node(s): {nodelist} (restart 0) at 2026-11-30T01:00:00+00:00\n")
        # A pool of chatter lines, drawn from in slices: writing a GB must take seconds, not minutes.
        pool = []
        for _ in range(20000):
            task = rng.randrange(tasks)
            template = _CHATTER[rng.randrange(len(_CHATTER))]
            text = template.format(
                c=rng.randrange(24),
                a=rng.randrange(world),
                b=rng.randrange(world),
                h=rng.getrandbits(40),
                r=task * gpus_per_task,
                n=world,
                t=tasks,
            )
            pool.append(label(task, f"nid{task:06d}:{1000 + task}:{1000 + task} [0] {text}"))
        while written < size_bytes:
            start = rng.randrange(len(pool) - 1000)
            block = pool[start : start + 1000]
            step += 1
            block.append(
                label(0, json.dumps({"step": step, "loss": round(2.5 / (1 + step / 500), 4), "learning_rate": 2e-5}))
            )
            emit("".join(block))
            if not requeued and written >= requeue_at:
                requeued = True
                emit(
                    "hpcft: time limit near: asking the trainer to checkpoint and stop\n"
                    f"hpcft: requeueing job {job_id}\n"
                    f"hpcft: job {job_id} on {tasks} node(s): {nodelist} (restart 1) at 2026-11-30T05:00:00+00:00\n"
                )
            if not failed and written >= fail_at:
                failed = True
                emit(_failure(label, failing_task, failing_rank, timed_out, gpus_per_task, rng, tasks))
    with err.open("w") as handle:
        handle.write(f"srun: error: nid{failing_task:06d}: task {failing_task}: Exited with exit code 1\n")
        for task in timed_out:
            handle.write(f"srun: error: nid{task:06d}: task {task}: Exited with exit code 1\n")
        handle.write("srun: error: Terminating StepId=1.0\n")
    return SyntheticLog(out, err, failing_task, failing_rank, timed_out, lines)


def _failure(label, task: int, rank: int, timed_out: list[int], gpus: int, rng: random.Random, tasks: int) -> str:
    """The failing rank's traceback, interleaved with other tasks' chatter, then the others' NCCL timeouts."""
    crash = [
        f"[rank{rank}]: Traceback (most recent call last):",
        f'[rank{rank}]:   File "/opt/hpcft/trainer/train.py", line 97, in train',
        f"[rank{rank}]:     trainer.train(resume_from_checkpoint=resume)",
        f'[rank{rank}]:   File "/opt/hpcft/trainer/model.py", line 211, in forward',
        f"[rank{rank}]:     hidden = self.mlp(hidden)",
        f"[rank{rank}]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB "
        f"(rank {rank} on nid{task:06d})",
    ]
    parts = []
    for text in crash:
        parts.append(label(task, text))
        other = rng.randrange(tasks)
        parts.append(
            label(
                other,
                f"nid{other:06d}:{1000 + other}:{1000 + other} [0] NCCL INFO Channel 01/24 : "
                "3[0] -> 4[0] via P2P/CUMEM/read",
            )
        )
    for other in timed_out:
        r = other * gpus
        parts += [
            label(other, f"[rank{r}]: Traceback (most recent call last):"),
            label(other, f'[rank{r}]:   File "/opt/hpcft/trainer/train.py", line 97, in train'),
            label(
                other,
                f"[rank{r}]: torch.distributed.DistBackendError: [Rank {r}] Watchdog caught "
                "collective operation timeout: WorkNCCL(SeqNum=5121, OpType=ALLREDUCE) ran for "
                "600000 milliseconds before timing out.",
            ),
        ]
    return "".join(parts)
