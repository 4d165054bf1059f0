"""Nothing lost: the real trainer (configs/examples/tiny-cpu.yaml, ZeRO-3 on CPU) on the local two-node cluster,
with faults injected through the trainer's HPCFT_FAULT_* variables (trainer/loop/faults.py): time-limit requeue and
resume, a crashing rank, a hanging rank, a kill in the middle of a checkpoint save.

Each job runs 2 nodes x 1 process; start-up (torch, deepspeed, rendezvous) is ~12 s of each."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from pathlib import Path

import pytest

from hpcft.trainer.loop.checkpoints import COMPLETE_MARKER

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

RESUME_RTOL = 1e-4  # a resumed run's losses vs the uninterrupted run (measured in tests/trainer: bit-identical)


def metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def job_id_of(out: str) -> str:
    match = re.search(r"submitted job (\d+)", out)
    assert match, out
    return match.group(1)


def submit_tiny(run_cli, config: Path, output_dir: Path, *overrides: str):
    return run_cli("submit", "--profile", "local", config, "--follow", f"output_dir={output_dir}", *overrides)


@pytest.fixture(scope="module")
def uninterrupted(tiny_cpu, tmp_path_factory):
    """The reference: the tiny config trained start to end in one allocation (30 steps, seed 42)."""
    from hpcft.launcher.cli import main

    root = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(root / "state"))
        mp.chdir(root)
        code = main(["submit", "--profile", "local", str(tiny_cpu), "--follow", f"output_dir={root / 'outputs'}"])
    assert code == 0
    return metrics(root / "outputs")


def test_two_node_training_completes_and_the_loss_falls(uninterrupted):
    steps = [m["step"] for m in uninterrupted]
    assert steps == list(range(1, 31))
    first, last = uninterrupted[0]["loss"], uninterrupted[-1]["loss"]
    assert last < 0.7 * first, (first, last)


def test_time_limit_checkpoints_requeues_and_resumes_without_losing_a_step(
    tiny_cpu, uninterrupted, real_workspace, run_cli, monkeypatch
):
    """2-minute limit, USR1 60 s before it (Slurm sends it up to 30 s earlier still), steps slowed to ~2.6 s: the
    30 steps (78 s of sleep alone) cannot fit before the signal even when the job starts at once; at 1.5 s a fast
    start finished all 30 steps just as the signal came. Secrets ride along in the environment to prove none is
    written."""
    hf_token, wandb_key = f"hf_{secrets.token_hex(16)}", secrets.token_hex(20)
    monkeypatch.setenv("HF_TOKEN", hf_token)
    monkeypatch.setenv("WANDB_API_KEY", wandb_key)
    out = real_workspace / "outputs"
    result = submit_tiny(
        run_cli,
        tiny_cpu,
        out,
        "launch.time='00:02:00'",
        "launch.signal_grace=60",
        "launch.env.HPCFT_FAULT_STEP_SLEEP='2.5'",
    )
    assert result.code == 0, result.out[-3000:] + result.err
    job_id = job_id_of(result.out)

    # Every step trained exactly once, across allocations, with the uninterrupted run's losses.
    got = metrics(out)
    assert [m["step"] for m in got] == list(range(1, 31))
    assert [m["loss"] for m in got] == pytest.approx([m["loss"] for m in uninterrupted], rel=RESUME_RTOL)
    log = result.out
    assert "hpcft: time limit near: asking the trainer to checkpoint and stop" in log
    assert re.search(r"resuming from \S+/checkpoint-\d+", log), log[-3000:]
    status = run_cli("status", job_id).out
    row = next(line.split() for line in status.splitlines() if line.startswith(job_id))
    assert row[2] == "COMPLETED" and int(row[5]) >= 1, status  # RESTARTS column

    # Secrets: the job had them (Slurm passes the submitting environment), no file hpcft or the job wrote has them.
    leaked = [
        str(p)
        for p in real_workspace.rglob("*")
        if p.is_file() and (hf_token.encode() in p.read_bytes() or wandb_key.encode() in p.read_bytes())
    ]
    assert not leaked


def test_a_run_finishing_when_the_time_limit_signal_comes_is_not_requeued(tiny_cpu, real_workspace, run_cli):
    """The issue-13 race, provoked on purpose: training reaches max_steps and saves its last checkpoint, then waits
    (HPCFT_FAULT_AWAIT_STOP_AT_END) until the time limit's USR1 has made the script create the stop file, and only
    then saves the final model. The script must see the run finished and not requeue it; nothing trains past 4."""
    out = real_workspace / "outputs"
    result = submit_tiny(
        run_cli,
        tiny_cpu,
        out,
        "max_steps=4",
        "save_steps=2",
        "launch.time='00:02:00'",
        "launch.signal_grace=60",
        "launch.env.HPCFT_FAULT_AWAIT_STOP_AT_END='110'",
    )
    assert result.code == 0, result.out[-3000:] + result.err
    log = result.out
    assert "hpcft: time limit near: asking the trainer to checkpoint and stop" in log, log[-3000:]
    assert "hpcft: training had finished; not requeueing" in log, log[-3000:]
    assert "requeueing job" not in log.split("HPCFT_FAULT_AWAIT_STOP_AT_END")[-1]  # not after training ended
    assert [m["step"] for m in metrics(out)][-1] == 4 and not (out / "checkpoint-5").exists()
    assert (out / "model.safetensors").is_file() and (out / "hpcft_finished.json").is_file()


def test_a_crashing_rank_ends_the_job_fast_with_the_cause_named(tiny_cpu, real_workspace, run_cli):
    started = time.monotonic()
    result = submit_tiny(
        run_cli,
        tiny_cpu,
        real_workspace / "outputs",
        "launch.env.HPCFT_FAULT_CRASH_AT_STEP='3'",
        "launch.env.HPCFT_FAULT_RANK='1'",
    )
    elapsed = time.monotonic() - started
    assert result.code != 0
    assert elapsed < 120, f"the job took {elapsed:.0f} s to end after rank 1 died"
    assert " FAILED " in run_cli("status", "latest").out
    errors = run_cli("logs", "--errors")
    assert errors.code == 0
    # From torch's error files (trainer/__main__.py records them, torchrun keeps them in the run directory).
    # c10d rendezvous hands out global ranks in arrival order: global rank 1 may run on either node.
    where = re.search(
        r"^first failure of job \d+: global rank 1 on (node\d) \(node rank (\d)\) at [-\d]+ [:\d]+ "
        r"\(from the error files: \S+/torchelastic/node\d/",
        errors.out,
        re.M,
    )
    assert where and where.group(1) == f"node{int(where.group(2)) + 1}", errors.out
    assert "Traceback (most recent call last):" in errors.out
    assert (
        "hpcft.trainer.loop.faults.InjectedFault: HPCFT_FAULT_CRASH_AT_STEP=3: injected crash on rank 1" in errors.out
    )
    # Rank 0 either lost its peer in a collective (its own error file) or was stopped by torchrun/srun first.
    assert re.fullmatch(
        r"1 other rank failed after it: 1 (lost peer|stopped by a signal \(no error of its own\))",
        errors.out.rstrip().splitlines()[-1],
    ), errors.out

    # Without the error files (a crash before the trainer started, another tool's job): the same answer, from
    # a scan of the logs.
    run_dir = next(real_workspace.glob("runs/*/*/manifest.json")).parent
    shutil.rmtree(run_dir / "torchelastic")
    scanned = run_cli("logs", "--errors")
    assert scanned.code == 0 and "(from the log scan: " in scanned.out, scanned.out
    assert _failure_essentials(scanned.out) == _failure_essentials(errors.out)


def _failure_essentials(report: str) -> list[str]:
    """Who failed, with what, and how many after it; not where it was read from nor the traceback's frames."""
    lines = report.rstrip().splitlines()
    who = re.sub(r"( at [-\d]+ [:\d]+)? \(from the .*$", "", lines[0])
    exception = next(line for line in lines if line.startswith("hpcft.trainer.loop.faults.InjectedFault"))
    return [who, exception, lines[-1]]


def test_a_hanging_rank_is_ended_by_the_watchdog_with_stacks_saved(tiny_cpu, real_workspace, run_cli):
    started = time.monotonic()
    result = submit_tiny(
        run_cli,
        tiny_cpu,
        real_workspace / "outputs",
        "launch.hang_timeout=15",
        "launch.env.HPCFT_FAULT_HANG_AT_STEP='3'",
        "launch.env.HPCFT_FAULT_RANK='1'",
    )
    elapsed = time.monotonic() - started
    assert result.code != 0
    assert elapsed < 90, f"the hung job took {elapsed:.0f} s to end"
    assert "no training step for" in result.out + result.err
    run_dir = next(real_workspace.glob("runs/*/*/manifest.json")).parent
    dumps = {p.name: p.read_text() for p in (run_dir / "stacks").glob("*.txt")}
    hung = next(text for name, text in dumps.items() if name.endswith("-rank1.txt"))
    assert "launch.hang_timeout=15" in hung
    assert "faults.py" in hung and "on_step_end" in hung  # where rank 1 is stuck


def test_a_kill_during_checkpoint_save_resumes_from_the_previous_checkpoint(tiny_cpu, real_workspace, run_cli):
    out = real_workspace / "outputs"
    killed = submit_tiny(
        run_cli, tiny_cpu, out, "launch.env.HPCFT_FAULT_KILL_IN_SAVE_AT_STEP='20'", "launch.env.HPCFT_FAULT_RANK='1'"
    )
    assert killed.code != 0
    assert (out / "checkpoint-10" / COMPLETE_MARKER).is_file()
    assert (out / "checkpoint-20").is_dir() and not (out / "checkpoint-20" / COMPLETE_MARKER).exists()

    resumed = submit_tiny(run_cli, tiny_cpu, out)  # the same config again: auto-resume
    assert resumed.code == 0, resumed.out[-3000:] + resumed.err
    assert re.search(r"resuming from \S+/checkpoint-10\b", resumed.out), resumed.out[-3000:]
    steps = [m["step"] for m in metrics(out)]
    assert steps == list(range(1, 21)) + list(range(11, 31))  # the first run logged up to 20, then died
    assert all((out / f"checkpoint-{s}" / COMPLETE_MARKER).is_file() for s in (10, 20, 30))
