"""Parsing of Slurm's output, on text captured from the local cluster (tests/data/slurm/capture.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpcft.launcher import slurm
from hpcft.launcher.jobs import submitit_backend, sweeps
from hpcft.launcher.logs.log_scan import scan_logs
from hpcft.launcher.logs.logstream import FileCursor, LogView, print_new
from hpcft.launcher.slurm import JobInfo, SlurmError

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"
IDS = dict(line.split("=") for line in (DATA / "ids.txt").read_text().split())


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_sbatch_parsable_gives_the_job_id():
    assert slurm.parse_sbatch_parsable(read("sbatch_parsable.txt")) == IDS["held_cancelled"]
    assert slurm.parse_sbatch_parsable("1234;clusterA\n") == "1234"


def test_sbatch_parsable_rejects_text_that_is_no_job_id():
    with pytest.raises(SlurmError, match="where a job id was expected"):
        slurm.parse_sbatch_parsable("Submitted batch job 12\n")


@pytest.mark.parametrize(
    "name, expected",
    [
        (
            "sbatch_bad_partition.stderr",
            "invalid partition specified: nosuchpartition; "
            "Batch job submission failed: Invalid partition name specified",
        ),
        (
            "sbatch_bad_account.stderr",
            "Batch job submission failed: Invalid account or account/partition combination specified",
        ),
    ],
)
def test_sbatch_refusals_become_one_line(name, expected):
    assert slurm.slurm_message(read(name)) == expected


def test_squeue_live_lists_array_tasks_and_keeps_names_with_bars():
    jobs = {j.job_id: j for j in slurm.parse_squeue(read("squeue_live.txt"))}
    held, running, array = IDS["held_cancelled"], IDS["requeued_cancelled"], IDS["array"]
    assert jobs[running] == JobInfo(
        job_id=running,
        array_job_id=running,
        array_task_id=None,
        name="two nodes|odd name",
        state="RUNNING",
        elapsed=jobs[running].elapsed,
        nodes=2,
        nodelist="node[1-2]",
        reason="None",
    )
    assert [jobs[f"{array}_{i}"].array_task_id for i in range(3)] == ["0", "1", "2"]
    assert {jobs[f"{array}_{i}"].array_job_id for i in range(3)} == {array}
    assert jobs[f"{held}_0"].state == "PENDING" and jobs[f"{held}_0"].reason == "JobHeldUser"
    assert not any(j.finished for j in jobs.values())


def test_squeue_ended_states_are_terminal():
    jobs = {j.job_id: j for j in slurm.parse_squeue(read("squeue_ended.txt"))}
    assert jobs[IDS["ok"]].state == "COMPLETED"
    assert jobs[IDS["failing"]].state == "FAILED"
    assert jobs[IDS["requeued_cancelled"]].state == "CANCELLED"
    assert all(j.finished for j in jobs.values())


def test_squeue_line_with_missing_fields_is_an_error():
    with pytest.raises(SlurmError, match="cannot parse squeue line"):
        slurm.parse_squeue("12|12|N/A|RUNNING\n")


def test_sacct_counts_requeues_and_keeps_the_last_run():
    jobs = {j.job_id: j for j in slurm.parse_sacct(read("sacct_ended.txt"))}
    requeued = jobs[IDS["requeued_cancelled"]]
    assert (requeued.state, requeued.restarts, requeued.nodelist) == ("CANCELLED", 1, "None assigned")
    ok = jobs[IDS["ok"]]
    assert (ok.state, ok.exit_code, ok.nodes, ok.name, ok.restarts) == ("COMPLETED", "0:0", 2, "two nodes|odd name", 0)
    assert ok.work_dir and ok.work_dir.startswith("/tmp/hpcft-capture-")
    held = jobs[f"{IDS['held_cancelled']}_[0-2]"]
    assert held.array_job_id == IDS["held_cancelled"] and held.state == "CANCELLED"
    assert [jobs[f"{IDS['array']}_{i}"].state for i in range(3)] == ["COMPLETED"] * 3


def test_exit_status_prefers_the_steps_exit_code():
    jobs = {j.job_id: j for j in slurm.parse_sacct(read("sacct_ended.txt"))}
    failing = jobs[IDS["failing"]]
    # The batch script ended with 15 (srun after --kill-on-bad-exit); the failing task's own code was 1.
    assert (failing.exit_code, failing.derived_exit_code) == ("15:0", "1:0")
    assert slurm.exit_status(failing) == 1
    assert slurm.exit_status(jobs[IDS["ok"]]) == 0
    assert slurm.exit_status(jobs[IDS["requeued_cancelled"]]) == 1  # cancelled, no code: still a failure


def test_exit_status_of_a_signalled_job():
    assert slurm.exit_status(JobInfo("1", "1", None, "x", "CANCELLED", exit_code="0:15")) == 143


def test_scontrol_records_parse_values_with_spaces():
    (record,) = [slurm.parse_scontrol_record(line) for line in read("scontrol_show_job_running.txt").splitlines()]
    assert record["JobName"] == "two nodes|odd name"
    assert record["JobState"] == "RUNNING"
    assert record["AllocNode:Sid"] == "localhost:5390"
    assert record["StdOut"].endswith(f"/{IDS['requeued_cancelled']}.out")
    info = slurm.job_from_scontrol(record)
    assert (info.job_id, info.nodes, info.nodelist, info.restarts) == (IDS["requeued_cancelled"], 2, "node[1-2]", 0)


def test_scontrol_array_records_become_array_tasks():
    infos = sorted(
        (
            slurm.job_from_scontrol(slurm.parse_scontrol_record(line))
            for line in read("scontrol_show_job_array.txt").splitlines()
        ),
        key=lambda j: j.job_id,
    )
    assert [i.job_id for i in infos] == [f"{IDS['array']}_{n}" for n in range(3)]


def test_scontrol_failed_job_reports_the_batch_exit_code():
    info = slurm.job_from_scontrol(slurm.parse_scontrol_record(read("scontrol_show_job_failed.txt")))
    assert (info.state, info.exit_code) == ("FAILED", "143:0")
    assert slurm.exit_status(info) == 143


@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("node[1-2]", ["node1", "node2"]),
        ("node1", ["node1"]),
        ("nid[001998-002001,005]", ["nid001998", "nid001999", "nid002000", "nid002001", "nid005"]),
        ("a[1-2],b3,c[7]", ["a1", "a2", "b3", "c7"]),
    ],
)
def test_expand_hostlist(nodelist, hosts):
    assert slurm.expand_hostlist(nodelist) == hosts


def _shown(name: str, hosts: list[str]) -> list[str]:
    out: list[bytes] = []
    print_new(FileCursor(DATA / name), LogView(hosts), out.append, final=True)
    return b"".join(out).decode().splitlines()


def test_srun_labels_become_node_and_rank_prefixes():
    assert sorted(_shown("srun_label_hostname.out", ["node1", "node2"])) == [
        "[node1/0] node1 SLURM_PROCID=0",
        "[node2/1] node2 SLURM_PROCID=1",
    ]


def test_first_traceback_is_the_failing_ranks():
    report = scan_logs([DATA / "srun_label_traceback.err", DATA / "srun_label_traceback.out"], ["node1", "node2"])
    assert report is not None and report.first.node_rank == 1 and report.first.host == "node2"
    assert report.first.traceback.splitlines()[0] == "Traceback (most recent call last):"
    assert report.first.traceback.splitlines()[-1] == "ValueError: fake failure on node rank 1"


def test_no_traceback_in_a_clean_log():
    assert scan_logs([DATA / "srun_label_hostname.out"]) is None


def test_cursor_holds_back_an_unfinished_line(tmp_path):
    log = tmp_path / "x.out"
    log.write_text("0: one\n0: tw")
    cursor, view, out = FileCursor(log), LogView(["n1"], prefix=False), []
    print_new(cursor, view, out.append)
    assert out == [b"one\n"]
    with log.open("a") as handle:
        handle.write("o\n")
    print_new(cursor, view, out.append)
    assert out == [b"one\n", b"two\n"]


@pytest.mark.parametrize(
    "value, minutes",
    [("00:20:00", 20), ("1-00:00:00", 1440), ("90", 90), ("01:30", 2), ("2-12", 3600), ("00:00:30", 1)],
)
def test_time_to_minutes(value, minutes):
    assert submitit_backend.time_to_minutes(value) == minutes


def test_sweep_grid_is_the_product_of_the_axes():
    assert sweeps.sweep_points(["learning_rate=1e-5,2e-5", "lora_r=8,16"]) == [
        ["learning_rate=1e-5", "lora_r=8"],
        ["learning_rate=1e-5", "lora_r=16"],
        ["learning_rate=2e-5", "lora_r=8"],
        ["learning_rate=2e-5", "lora_r=16"],
    ]


@pytest.mark.parametrize("spec", ["learning_rate", "=1,2", "lr="])
def test_bad_sweep_spec_says_how_to_write_it(spec):
    with pytest.raises(Exception, match="must look like key=value1,value2"):
        sweeps.sweep_points([spec])


def test_missing_slurm_command_says_what_to_check(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SlurmError, match="sbatch not found: is this a login node of a Slurm cluster"):
        slurm.run_slurm(["sbatch", "--version"])


def test_lifecycle_modules_import_neither_torch_nor_submitit():
    modules = ", ".join(
        f"hpcft.{m}"
        for m in (
            "launcher.api",
            "launcher.cli",
            "launcher.jobs.runs",
            "launcher.jobs.sweeps",
            "launcher.jobs.submit",
            "launcher.jobs.submitit_backend",
            "launcher.logs.job_logs",
            "launcher.jobs.status",
            "launcher.jobs.cancel",
            "launcher.jobs.interactive",
            "core.protocol",
            "core.features.deepspeed_config",
            "launcher.jobplan",
            "core.quoting",
            "launcher.node_paths",
            "launcher.runtimes.image_contents",
            "launcher.config",
            "launcher.render",
        )
    )
    code = (
        f"import sys, {modules}; "
        "heavy = sorted(m for m in ('torch', 'transformers', 'deepspeed', 'submitit') if m in sys.modules); "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_first_traceback_of_the_real_trainer_is_the_workers_not_torchruns():
    """Captured from tests/slurm/test_reliability.py (crash injected on rank 1 of 2 nodes): torchrun prefixes
    each worker line with [rankN]: and adds its own ChildFailedError traceback later; the user needs the first."""
    report = scan_logs([DATA / "torchrun_crash_rank1.err"], ["node1", "node2"])
    assert report is not None and report.first.node_rank == 1 and report.first.rank == 1
    lines = report.first.traceback.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith('  File "<frozen runpy>"')  # indentation kept after the prefix is removed
    assert lines[-1] == "hpcft.trainer.faults.InjectedFault: HPCFT_FAULT_CRASH_AT_STEP=3: injected crash on rank 1"
