"""`hpcft status` over an index of 10,000 runs and a 1,000-task sweep array asks Slurm once (one squeue, one
sacct) and builds every row. squeue and sacct are stand-in scripts on PATH that print rows in Slurm's own
formats and count their calls (the real commands are exercised by tests/slurm)."""

from __future__ import annotations

import json
from pathlib import Path

from hpcft.launcher.jobs.runs import RunRef
from hpcft.launcher.jobs.status import status_rows

RUNS = 10_000
ARRAY_TASKS = 1_000


def _stand_in(bin_dir: Path, name: str, rows: Path, calls: Path) -> None:
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\necho \"$*\" >> '{calls}'\ncat '{rows}'\n")
    script.chmod(0o755)


def test_status_of_ten_thousand_runs_and_a_thousand_task_array_asks_slurm_once(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # sacct -P: JobID|JobIDRaw|State|ExitCode|DerivedExitCode|Elapsed|NNodes|NodeList|WorkDir|JobName
    sacct_rows = tmp_path / "sacct.txt"
    sacct_rows.write_text(
        "".join(f"{100000 + i}|{100000 + i}|COMPLETED|0:0|0:0|00:01:00|2|node[1-2]|/w|run{i}\n" for i in range(RUNS))
    )
    # squeue -o %i|%F|%K|%T|%M|%D|%N|%r|%j: the live array, one line per task
    squeue_rows = tmp_path / "squeue.txt"
    squeue_rows.write_text(
        "".join(f"200000_{t}|200000|{t}|RUNNING|1:00|1|node1|None|sweep\n" for t in range(ARRAY_TASKS))
    )
    calls = tmp_path / "calls.txt"
    _stand_in(bin_dir, "sacct", sacct_rows, calls)
    _stand_in(bin_dir, "squeue", squeue_rows, calls)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    sweep_dir = tmp_path / "sweep-run"
    sweep_dir.mkdir()
    points = [{"index": t, "overrides": [], "output_dir": str(tmp_path / f"point-{t}")} for t in range(ARRAY_TASKS)]
    (sweep_dir / "manifest.json").write_text(json.dumps({"job_name": "sweep", "sweep": {"points": points}}))
    (tmp_path / "point-7").mkdir()
    (tmp_path / "point-7" / "metrics.jsonl").write_text('{"step": 12, "loss": 0.5}\n')

    runs = [RunRef(str(100000 + i)) for i in range(RUNS)] + [RunRef("200000", sweep_dir)]
    rows = status_rows(runs)

    invoked = calls.read_text().splitlines()
    assert len(invoked) == 2  # one squeue, one sacct, each with every id
    assert all(len(line.split("-j ")[1].split(",")) == RUNS + 1 for line in invoked)
    assert len(rows) == RUNS + ARRAY_TASKS
    assert rows[0].job_id == "100000" and rows[0].state == "COMPLETED"
    task7 = next(r for r in rows if r.job_id == "200000_7")
    assert (task7.state, task7.step, task7.loss) == ("RUNNING", 12, 0.5)
