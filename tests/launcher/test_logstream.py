"""`hpcft logs` at scale: a few-MB synthetic log of a 512-node job (bench/synthetic_log.py, the same writer
bench/log_scale.py uses for 1 GB) read in small blocks must give exactly what a line-by-line reading of the whole
file gives, in memory that does not grow with the file; the first failure comes from torch's error files and,
without them, from the logs with the same answer."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tracemalloc
from pathlib import Path

import pytest

from hpcft.core.protocol import worker_note
from hpcft.launcher.logs.error_files import failure_kind, format_report, read_error_files
from hpcft.launcher.logs.log_scan import scan_logs
from hpcft.launcher.logs.logstream import FileCursor, LogView, print_new, print_tail, tail_offset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from synthetic_log import SyntheticLog, write_synthetic_log  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
HOSTS = [f"nid{i:06d}" for i in range(512)]
SMALL_BLOCK = 4096  # many block boundaries inside the test log: lines cut across blocks are the risk


@pytest.fixture(scope="module")
def big_log(tmp_path_factory) -> SyntheticLog:
    return write_synthetic_log(tmp_path_factory.mktemp("run") / "logs", "4242", 3_000_000)


def reference(path: Path, rank: int | None = None, grep: str | None = None) -> list[str]:
    """What `hpcft logs` must print, computed the obvious way: every line of the whole file, one at a time."""
    shown = []
    for raw in path.read_text().splitlines():
        header = re.match(r"hpcft: job (\S+) on \d+ node\(s\): \S* \(restart ([1-9]\d*)\)", raw)
        if header:
            shown.append(
                f"---------------- job {header.group(1)}, restart {header.group(2)}: "
                "a new allocation appends below ----------------"
            )
            shown.append(raw)
            continue
        label = re.match(r" *(\d+): (.*)$", raw)
        task, text = (int(label.group(1)), label.group(2)) if label else (None, raw)
        if rank is not None and task != rank:
            continue
        if grep is not None and not re.search(grep, text):
            continue
        shown.append(text if task is None else f"[{HOSTS[task]}/{task}] {text}")
    return shown


def streamed(path: Path, view: LogView, tail: int | None = None) -> list[str]:
    out: list[bytes] = []
    cursor = FileCursor(path)
    if tail is None:
        print_new(cursor, view, out.append, final=True, block_bytes=SMALL_BLOCK)
    else:
        print_tail(cursor, view, tail, out.append, block_bytes=SMALL_BLOCK)
    return b"".join(out).decode().splitlines()


def test_streaming_prints_every_line_once_with_its_node_and_a_separator_per_restart(big_log):
    got = streamed(big_log.out, LogView(HOSTS))
    assert got == reference(big_log.out)
    assert len(got) == big_log.lines + 1  # one restart: one separator
    assert sum("restart 1: a new allocation appends below" in line for line in got) == 1


def test_memory_does_not_grow_with_the_log(big_log):
    assert big_log.out.stat().st_size > 2_500_000
    sink = []
    tracemalloc.start()
    print_new(
        FileCursor(big_log.out), LogView(HOSTS), lambda data: sink.append(len(data)), final=True, block_bytes=1 << 16
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sum(sink) > big_log.out.stat().st_size
    assert peak < 1_000_000, f"peak {peak} bytes while streaming a {big_log.out.stat().st_size}-byte log"


@pytest.mark.parametrize(
    ("rank", "grep"),
    [
        (377, None),
        (0, None),
        (None, "Watchdog caught"),
        (None, r"^\[rank\d+\]: torch\."),
        (0, r"\"loss\": 2\."),
        (None, "hpcft: |NCCL INFO Channel 23"),
    ],
)
def test_rank_and_grep_filters_match_a_line_by_line_filter(big_log, rank, grep):
    view = LogView(HOSTS, rank=rank, grep=re.compile(grep.encode()) if grep else None)
    got = streamed(big_log.out, view)
    assert got == reference(big_log.out, rank, grep)
    assert len([line for line in got if not line.startswith(("----", "hpcft:"))]) > 0


@pytest.mark.parametrize(
    ("rank", "grep", "lines"), [(None, None, 100), (None, None, 1), (377, None, 25), (None, "Traceback", 7)]
)
def test_tail_prints_the_last_lines_reading_from_the_end(big_log, rank, grep, lines):
    view = LogView(HOSTS, rank=rank, grep=re.compile(grep.encode()) if grep else None)
    assert streamed(big_log.out, view, tail=lines) == reference(big_log.out, rank, grep)[-lines:]


def test_tail_offset_counts_lines_from_the_end(tmp_path):
    log = tmp_path / "x.out"
    log.write_bytes(b"a\nbb\nccc\n")
    assert [tail_offset(log, n) for n in (0, 1, 2, 3, 9)] == [9, 5, 2, 0, 0]
    log.write_bytes(b"a\nbb\nccc")  # an unfinished last line counts as a line
    assert [tail_offset(log, n) for n in (1, 2)] == [5, 2]


def test_following_prints_appended_lines_once_and_holds_an_unfinished_line(tmp_path):
    log = tmp_path / "slurm-7.out"
    log.write_bytes(b"hpcft: job 7 on 2 node(s): n[1-2] (restart 0) at now\n0: one\n1: tw")
    cursor, view, out = FileCursor(log), LogView(["n1", "n2"]), []
    print_new(cursor, view, out.append)
    assert b"".join(out) == b"hpcft: job 7 on 2 node(s): n[1-2] (restart 0) at now\n[n1/0] one\n"
    with log.open("ab") as handle:
        handle.write(b"o\nhpcft: job 7 on 2 node(s): n[1-2] (restart 1) at later\n0: three\n")
    out.clear()
    print_new(cursor, view, out.append)
    assert b"".join(out).decode().splitlines() == [
        "[n2/1] two",
        "---------------- job 7, restart 1: a new allocation appends below ----------------",
        "hpcft: job 7 on 2 node(s): n[1-2] (restart 1) at later",
        "[n1/0] three",
    ]
    out.clear()
    print_new(cursor, view, out.append, final=True)
    assert out == []


def test_the_log_scan_names_the_failing_task_its_rank_and_traceback(big_log):
    report = scan_logs([big_log.err, big_log.out], HOSTS, world_size=2048)
    assert report is not None and report.origin == "log scan"
    first = report.first
    assert (first.node_rank, first.rank, first.host) == (377, big_log.failing_rank, "nid000377")
    assert first.traceback.startswith("Traceback (most recent call last):")
    assert first.traceback.splitlines()[-1].startswith("torch.OutOfMemoryError: CUDA out of memory")
    assert len(first.traceback.splitlines()) == 6
    assert first.kind == "out of memory"
    assert report.others_summary() == (
        "2047 other ranks failed after it: 20 NCCL timeouts, 2027 stopped by a signal (no error of their own)"
    )


def test_a_log_without_tracebacks_gives_no_report(tmp_path):
    log = tmp_path / "slurm-1.out"
    log.write_text("0: hello\n1: world\n")
    assert scan_logs([log], ["a", "b"], 2) is None


def _error_file(root: Path, host: str, local_rank: int, rank: int, message: str, stamp: int, node_rank: int) -> None:
    folder = root / "torchelastic" / host / "55_abcd" / "attempt_0" / str(local_rank)
    folder.mkdir(parents=True)
    callstack = f'Traceback (most recent call last):\n  File "train.py", line 1, in <module>\n{message}\n'
    (folder / "error.json").write_text(
        json.dumps({"message": {"message": message, "extraInfo": {"py_callstack": callstack, "timestamp": str(stamp)}}})
    )
    (folder / "hpcft-worker.json").write_text(
        json.dumps(
            {
                "rank": rank,
                "local_rank": local_rank,
                "world_size": 8,
                "node_rank": node_rank,
                "host": host,
                "job_id": "55",
                "restart": 0,
            }
        )
    )


def test_error_files_name_the_earliest_failure_and_summarise_the_rest(tmp_path):
    timeout = (
        "torch.distributed.DistBackendError: [Rank {r}] Watchdog caught collective operation timeout: "
        "WorkNCCL(SeqNum=9, OpType=ALLREDUCE) ran for 600000 milliseconds before timing out."
    )
    _error_file(tmp_path, "nid2", 0, 4, timeout.format(r=4), 1700000100, 1)
    _error_file(tmp_path, "nid2", 1, 5, "ValueError: bad batch on rank 5", 1700000000, 1)
    _error_file(tmp_path, "nid1", 2, 2, timeout.format(r=2), 1700000101, 0)
    _error_file(tmp_path, "nid1", 3, 3, "SignalException: Process 12 got signal: 15", 1700000102, 0)
    report = read_error_files(tmp_path, "55")
    assert report is not None
    assert (report.first.rank, report.first.host, report.first.node_rank) == (5, "nid2", 1)
    assert report.first.exception == "ValueError: bad batch on rank 5"
    assert report.others_summary() == (
        "7 other ranks failed after it: 2 NCCL timeouts, 1 SIGTERM, 4 stopped by a signal (no error of their own)"
    )
    text = format_report(report, "55")
    assert text.startswith("first failure of job 55: global rank 5 on nid2 (node rank 1)")
    assert "ValueError: bad batch on rank 5" in text
    assert read_error_files(tmp_path, "56") is None  # another job's files are not this one's


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (
            "torch.distributed.DistBackendError: [Rank 3] Watchdog caught collective operation timeout: x",
            "NCCL timeout",
        ),
        ("RuntimeError: NCCL communicator was aborted on rank 3 after a timeout", "NCCL timeout"),
        ("torch.distributed.elastic.multiprocessing.api.SignalException: Process 1 got signal: 15", "SIGTERM"),
        ("RuntimeError: [pair.cc:553] Connection closed by peer [127.0.0.1]:46988.", "lost peer"),
        ("hpcft.trainer.faults.InjectedFault: injected", "InjectedFault"),
    ],
)
def test_failure_kinds(line, kind):
    assert failure_kind(line) == kind


def test_a_real_two_node_crash_gives_the_same_answer_from_error_files_and_from_the_logs(tmp_path):
    """Captured from the local cluster: rank 1 raised InjectedFault at step 3 on node1; rank 0 on node2 lost its
    peer. torch wrote both error files; torchrun and srun wrote their own tracebacks into the logs too."""
    run = tmp_path / "run"
    shutil.copytree(DATA / "errors" / "crash-2node", run)
    from_files = read_error_files(run, "20")
    logs = [run / "logs" / "slurm-20.err", run / "logs" / "slurm-20.out"]
    from_logs = scan_logs(logs, ["node1", "node2"], world_size=2)
    assert from_files is not None and from_logs is not None
    for report in (from_files, from_logs):
        assert (report.first.rank, report.first.host, report.first.node_rank) == (1, "node1", 0)
        assert report.first.exception == (
            "hpcft.trainer.faults.InjectedFault: HPCFT_FAULT_CRASH_AT_STEP=3: injected crash on rank 1"
        )
        assert "in on_step_end\n    raise InjectedFault(" in report.first.traceback
        assert report.others_summary() == "1 other rank failed after it: 1 lost peer"


def test_worker_note_names_the_rank_and_slurms_node_name():
    env = {
        "TORCHELASTIC_ERROR_FILE": "/run/torchelastic/node2/7_x/attempt_0/1/error.json",
        "RANK": "5",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "8",
        "SLURM_PROCID": "2",
        "SLURMD_NODENAME": "node2",
        "SLURM_JOB_ID": "7",
        "SLURM_RESTART_COUNT": "1",
    }
    assert worker_note(env) == {
        "rank": 5,
        "local_rank": 1,
        "world_size": 8,
        "node_rank": 2,
        "host": "node2",
        "job_id": "7",
        "restart": 1,
    }
    assert worker_note({"RANK": "0"}) is None  # not under torchrun: no error file to sit next to


def test_torchruns_own_tracebacks_are_not_counted_as_failed_ranks():
    """Captured from the local cluster: after rank 1 (node2) crashed, node1's torchrun lost the rendezvous store and
    printed its own chained DistNetworkError / RendezvousConnectionError tracebacks, without a [rankN]: prefix."""
    logs = DATA / "errors" / "crash-2node-store-lost" / "logs"
    report = scan_logs([logs / "slurm-57.err", logs / "slurm-57.out"], ["node1", "node2"], world_size=2)
    assert report is not None
    assert (report.first.rank, report.first.host, report.first.node_rank) == (1, "node2", 1)
    assert report.first.exception.startswith("hpcft.trainer.faults.InjectedFault")
    assert report.others_summary() == "1 other rank failed after it: 1 lost peer"
