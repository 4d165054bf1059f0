"""The job lifecycle against the real local cluster (scripts/local-slurm.sh up): two nodes, jobs start in ~1 s.

Rendered jobs run unchanged (job.sbatch -> srun -> "torchrun"), with the test profile's Python replaced by
fake_torchrun.py so that no trainer or torch is needed; hand-written scripts go through the same slurm.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hpcft.launcher.logs.job_logs as logs
from hpcft.launcher import slurm
from hpcft.launcher.api import JobHandle, submit
from hpcft.launcher.jobs import cancel, runs

pytestmark = pytest.mark.slurm


def submitted_id(out: str) -> str:
    match = re.search(r"submitted job (\d+)", out)
    assert match, out
    return match.group(1)


def test_hand_written_two_node_job_reaches_both_nodes(tmp_path, capsys):
    script = tmp_path / "hello.sbatch"
    script.write_text(
        "#!/bin/bash\n#SBATCH --nodes=2 --ntasks-per-node=1\n"
        f"#SBATCH --output={tmp_path}/hello-%j.out\n"
        "srun --label bash -c 'echo \"$(hostname) SLURM_PROCID=$SLURM_PROCID\"'\n"
    )
    job_id = slurm.submit_batch(script, cwd=tmp_path)
    code = logs.follow_job(runs.RunRef(job_id), poll=0.3, timeout=60)
    out = capsys.readouterr().out
    assert code == 0
    assert "[node1/0] node1 SLURM_PROCID=0" in out
    assert "[node2/1] node2 SLURM_PROCID=1" in out


def test_submit_follow_runs_the_rendered_job_on_both_nodes(workspace, run_cli):
    result = run_cli("submit", "--profile", "localtest", workspace.config, "--follow")
    assert result.code == 0, result.err
    job_id = submitted_id(result.out)
    for rank, host in enumerate(["node1", "node2"]):
        assert re.search(
            rf"fake-torchrun host={host} SLURM_PROCID={rank} node_rank={rank} nnodes=2 "
            r"rdzv=node1:\d+",
            result.out,
        ), result.out
    (run_dir,) = workspace.run_dirs()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (manifest["job_id"], manifest["backend"]) == (job_id, "sbatch")
    assert manifest["submitted_at"]
    assert (run_dir / "logs" / f"slurm-{job_id}.out").is_file()


def test_status_lists_recent_runs_and_logs_filter_by_rank(workspace, run_cli):
    first = submitted_id(run_cli("submit", "--profile", "localtest", workspace.config, "--follow").out)
    second = submitted_id(
        run_cli("submit", "--profile", "localtest", workspace.config, "--follow", "launch.env.HPCFT_FAKE_EXIT='2'").out
    )
    table = run_cli("status").out.splitlines()
    assert table[0].split() == ["JOBID", "NAME", "STATE", "ELAPSED", "NODES", "RESTARTS", "STEP", "LOSS", "RUN_DIR"]
    assert [(row.split()[0], row.split()[2]) for row in table[1:]] == [(first, "COMPLETED"), (second, "FAILED")]
    assert run_cli("status", "--all").out.splitlines() == table
    # --no-plot: the table alone (`status RUN` also draws the run's loss curve below it)
    one = run_cli("status", second, "--no-plot").out.splitlines()
    assert [row.split() for row in one] == [table[0].split(), table[2].split()]
    # The rendered srun has --label: each line carries its task (= node rank); logs prefix and filter by it.
    labelled = submitted_id(run_cli("submit", "--profile", "localtest", workspace.config, "--follow").out)
    rank1 = run_cli("logs", labelled, "--rank", "1")
    assert "[node2/1] step 3 on rank 1" in rank1.out and "on rank 0" not in rank1.out
    everything = run_cli("logs", labelled)
    assert "[node1/0] step 3 on rank 0" in everything.out and "[node2/1] step 3 on rank 1" in everything.out
    assert "\033[" not in everything.out  # not a terminal: no colour codes
    # --tail reads each file from its end; --grep matches the text after the label.
    tail = run_cli("logs", labelled, "--rank", "1", "--tail", "2")
    assert tail.out.splitlines() == ["[node2/1] step 2 on rank 1", "[node2/1] step 3 on rank 1"], tail.out
    grep = run_cli("logs", labelled, "--grep", "^step [13] ")
    assert sorted(grep.out.splitlines()) == [
        "[node1/0] step 1 on rank 0",
        "[node1/0] step 3 on rank 0",
        "[node2/1] step 1 on rank 1",
        "[node2/1] step 3 on rank 1",
    ], grep.out

    # On a terminal (a pty made by `script`) each rank's label has its own colour.
    hpcft = shutil.which("hpcft") or str(Path(sys.executable).with_name("hpcft"))
    on_tty = subprocess.run(
        ["script", "-qec", shlex.join([hpcft, "logs", labelled]), "/dev/null"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "NO_COLOR"},
    )
    assert "\033[36m[node1/0]\033[0m step 3 on rank 0" in on_tty.stdout, on_tty.stdout
    assert "\033[33m[node2/1]\033[0m step 3 on rank 1" in on_tty.stdout


def test_follow_returns_the_jobs_exit_code(workspace, run_cli):
    result = run_cli("submit", "--profile", "localtest", workspace.config, "--follow", "launch.env.HPCFT_FAKE_EXIT='3'")
    assert result.code == 3, result.out + result.err
    status = run_cli("status", "latest")
    assert " FAILED " in status.out


def test_logs_and_status_of_a_running_then_finished_job(workspace, run_cli):
    result = run_cli(
        "submit",
        "--profile",
        "localtest",
        workspace.config,
        "launch.env.HPCFT_FAKE_SLEEP='4'",
        "launch.env.HPCFT_FAKE_STEPS='4'",
    )
    assert result.code == 0, result.err
    job_id = submitted_id(result.out)
    cancel.wait_for_state(job_id, {"RUNNING"}, timeout=30)
    time.sleep(1.5)  # a step or two written

    running = run_cli("status", job_id)
    assert re.search(rf"^{job_id}\s+fake\s+RUNNING\s", running.out, re.M), running.out
    partial = run_cli("logs", job_id)
    assert partial.code == 0
    assert "fake-torchrun host=" in partial.out and "step 4" not in partial.out

    followed = run_cli("logs", "-f", job_id)
    assert followed.code == 0
    assert followed.out.count("step 4 on rank") == 2  # both nodes, to the end

    finished = run_cli("status", job_id)
    # last step and loss come from <output_dir>/metrics.jsonl
    assert re.search(rf"^{job_id}\s+fake\s+COMPLETED\s+\S+\s+2\s+0\s+4\s+0\.5\s", finished.out, re.M), finished.out
    again = run_cli("logs", str(workspace.run_dirs()[0]))
    assert again.out.count("step 4 on rank") == 2


def test_a_requeued_job_counts_its_restart(workspace, run_cli):
    job_id = submitted_id(
        run_cli("submit", "--profile", "localtest", workspace.config, "launch.env.HPCFT_FAKE_SLEEP='3'").out
    )
    cancel.wait_for_state(job_id, {"RUNNING"}, timeout=30)
    # What a node failure or the time-limit handler does; Slurm then holds the job ~2 min, so release it now.
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    cancel.wait_for_state(job_id, {"PENDING"}, timeout=30)
    time.sleep(3)  # Slurm's 2-min hold exists so the killed run's processes are gone before the next starts
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    assert run_cli("logs", "-f", job_id).code == 0
    status = run_cli("status", job_id)
    assert re.search(rf"^{job_id}\s+fake\s+COMPLETED\s+\S+\s+2\s+1\s", status.out, re.M), status.out


def test_failed_job_shows_the_failing_ranks_traceback(workspace, run_cli):
    result = run_cli(
        "submit", "--profile", "localtest", workspace.config, "--follow", "launch.env.HPCFT_FAKE_FAIL_RANK='1'"
    )
    assert result.code == 1
    errors = run_cli("logs", "--errors")
    assert errors.code == 0
    # No torch here (fake_torchrun.py), so no error files: the log scan names the failure.
    assert re.search(r"^first failure of job \d+: on node2 \(node rank 1\) \(from the log scan", errors.out, re.M)
    assert "Traceback (most recent call last):" in errors.out
    assert "\nValueError: fake failure on node rank 1\n" in errors.out
    assert errors.out.rstrip().endswith("1 other rank failed after it: 1 stopped by a signal (no error of its own)")
    assert " FAILED " in run_cli("status", "latest").out


def test_cancel_ends_a_running_job(workspace, run_cli):
    result = run_cli("submit", "--profile", "localtest", workspace.config, "launch.env.HPCFT_FAKE_SLEEP='120'")
    job_id = submitted_id(result.out)
    cancel.wait_for_state(job_id, {"RUNNING"}, timeout=30)
    (run_dir,) = workspace.run_dirs()
    cancelled = run_cli("cancel", run_dir)
    assert cancelled.code == 0 and f"cancelled job {job_id}" in cancelled.out
    cancel.wait_for_state(job_id, {"CANCELLED"}, timeout=30)
    assert re.search(rf"^{job_id}\s+fake\s+CANCELLED\s", run_cli("status", job_id).out, re.M)


def test_refused_submission_leaves_no_run(workspace, run_cli):
    result = run_cli("submit", "--profile", "localtest", workspace.config, "--partition", "nosuchpartition")
    assert result.code != 0
    assert "sbatch refused the job: invalid partition specified: nosuchpartition" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert workspace.run_dirs() == []
    assert runs.submissions() == []
    bad_account = run_cli("submit", "--profile", "localtest", workspace.config, "--account", "nosuchaccount")
    assert bad_account.code != 0 and "Invalid account" in bad_account.err
    assert workspace.run_dirs() == []


def test_dry_run_renders_and_submits_nothing(workspace, run_cli):
    result = run_cli("submit", "--profile", "localtest", workspace.config, "--dry-run")
    assert result.code == 0
    (run_dir,) = workspace.run_dirs()
    assert result.out.strip() == f"sbatch --parsable {run_dir}/job.sbatch"
    assert json.loads((run_dir / "manifest.json").read_text())["job_id"] is None
    assert runs.submissions() == []


def test_submitit_backend_runs_the_same_two_node_job(workspace):
    job = submit(workspace.config, "localtest", backend="submitit")
    job.results()  # one result per task; raises if a node's torchrun failed
    (run_dir,) = workspace.run_dirs()
    outputs = sorted((run_dir / "submitit").glob(f"{job.job_id}_*_log.out"))
    text = "".join(p.read_text() for p in outputs)
    assert len(outputs) == 2
    assert "fake-torchrun host=node1 SLURM_PROCID=0 node_rank=0 nnodes=2" in text
    assert "fake-torchrun host=node2 SLURM_PROCID=1 node_rank=1 nnodes=2" in text
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (manifest["job_id"], manifest["backend"]) == (job.job_id, "submitit")


def test_submitit_failure_surfaces_in_python_and_in_logs(workspace, run_cli):
    job = submit(workspace.config, "localtest", backend="submitit", overrides=["launch.env.HPCFT_FAKE_FAIL_RANK='1'"])
    with pytest.raises(Exception, match="node rank 1"):
        job.results()
    errors = run_cli("logs", "--errors", job.job_id)
    assert errors.code == 0 and "on node2 (node rank 1)" in errors.out
    assert "\nValueError: fake failure on node rank 1\n" in errors.out


def test_api_sbatch_handle_waits_for_the_exit_status(workspace):
    handle = submit(workspace.config, "localtest", nodes=1, overrides=["launch.env.HPCFT_FAKE_EXIT='4'"])
    assert isinstance(handle, JobHandle)
    assert handle.wait(timeout=60, poll=0.3) == 4
    assert handle.state == "FAILED"


def test_sweep_is_one_job_array_with_a_directory_per_point(workspace, run_cli):
    result = run_cli(
        "submit", "--profile", "localtest", workspace.config, "--follow", "--sweep", "learning_rate=1e-5,2e-5,5e-5"
    )
    assert result.code == 0, result.err
    job_id = submitted_id(result.out)
    (run_dir,) = workspace.run_dirs()
    points = sorted((run_dir / "points").iterdir())
    assert [p.name for p in points] == ["0", "1", "2"]
    rates = [re.search(r"^learning_rate: (.*)$", (p / "train.yaml").read_text(), re.M).group(1) for p in points]
    assert rates == ["1.0e-05", "2.0e-05", "5.0e-05"]
    assert sorted(p.name for p in (run_dir / "logs").glob("*.out")) == [f"slurm-{job_id}_{i}.out" for i in range(3)]
    for i in range(3):
        assert f"train_yaml={run_dir}/points/{i}/train.yaml" in result.out
    members = slurm.job_members(job_id)
    assert [m.job_id for m in members] == [f"{job_id}_{i}" for i in range(3)]
    logs = run_cli("logs", job_id).out
    for i in range(3):  # each line says which array task wrote it
        assert f"[{job_id}_{i}] [node1/0] fake-torchrun host=node1 SLURM_PROCID=0" in logs
    status = run_cli("status", job_id, "--no-plot")
    rows = [line for line in status.out.splitlines()[1:] if line.strip()]
    assert [row.split()[0] for row in rows] == [f"{job_id}_{i}" for i in range(3)]
    assert all(" COMPLETED " in row for row in rows)


def test_interactive_dry_run_prints_the_exact_srun(workspace, run_cli):
    result = run_cli(
        "interactive",
        "--profile",
        "localtest",
        workspace.config,
        "--nodes",
        "1",
        "--dry-run",
        "-o",
        workspace.root / "session",
    )
    assert result.code == 0
    rc = workspace.root / "session" / "interactive.rc"
    assert result.out.strip() == (
        "srun --pty --job-name=fake --nodes=1 --ntasks-per-node=1 --cpus-per-task=2 --time=00:05:00 "
        f"--partition=debug bash --rcfile {rc} -i"
    )
    two = run_cli(
        "interactive", "--profile", "localtest", workspace.config, "--dry-run", "-o", workspace.root / "session2"
    )
    assert two.out.strip() == (
        "salloc --job-name=fake --nodes=2 --ntasks-per-node=1 --cpus-per-task=2 --time=00:05:00 --partition=debug "
        "srun --pty --overlap --nodes=1 --ntasks=1 bash --rcfile "
        f"{workspace.root / 'session2' / 'interactive.rc'} -i"
    )


def _wait_for_file(path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.2)
    return ""


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")
def test_interactive_session_in_a_terminal_runs_on_the_nodes(workspace):
    """Drive `hpcft interactive` through a real pty (tmux): a shell on node1, srun reaching both nodes, exit."""
    hpcft = f"{shlex.quote(sys.executable)} -m hpcft.launcher"
    session = f"hpcft-test-{time.monotonic_ns()}"
    marker, done = workspace.root / "inside.txt", workspace.root / "exit-code.txt"
    command = f"cd {workspace.root} && {hpcft} interactive --profile localtest {workspace.config}; echo $? > {done}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", command], check=True)
    try:
        inner = (
            f'echo "shell=$(hostname) nodes=$SLURM_JOB_NUM_NODES rundir=$HPCFT_RUN_DIR" > {marker}; '
            'srun --overlap --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" '
            f"--ntasks-per-node=1 hostname >> {marker}; exit"
        )
        time.sleep(1)
        subprocess.run(["tmux", "send-keys", "-t", session, inner, "Enter"], check=True)
        assert _wait_for_file(done, 60).strip() == "0"
        lines = marker.read_text().splitlines()
        assert lines[0].startswith("shell=node1 nodes=2 rundir=")
        assert sorted(lines[1:]) == ["node1", "node2"]
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
