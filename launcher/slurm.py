"""The one module that runs Slurm's commands (sbatch, squeue, sacct, scontrol, scancel, srun) and parses their output.
(Over 300 lines on purpose: every Slurm output format is parsed here and nowhere else.)

Every command is run from an argument list (never a shell string) and asked for a machine-readable form
(`--parsable`, `-P`, `-o` formats), so what comes back is parsed here and nowhere else.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hpcft.core.quoting import check_job_id

# squeue -o fields (one line per array task with --array). The job name goes last: it may contain '|'.
SQUEUE_FIELDS = {
    "job_id": "%i",
    "array_job_id": "%F",
    "array_task_id": "%K",
    "state": "%T",
    "elapsed": "%M",
    "nodes": "%D",
    "nodelist": "%N",
    "reason": "%r",
    "name": "%j",
}
SQUEUE_FORMAT = "|".join(SQUEUE_FIELDS.values())
# sacct -P fields; JobName last for the same reason. JobIDRaw is the member's own id, JobID the 12_3 form.
# DerivedExitCode is the highest exit code of the job's steps: the trainer's own code, where ExitCode is the
# batch script's (15 or 143 once srun's --kill-on-bad-exit has terminated the other nodes).
SACCT_FIELDS = (
    "JobID",
    "JobIDRaw",
    "State",
    "ExitCode",
    "DerivedExitCode",
    "Elapsed",
    "NNodes",
    "NodeList",
    "WorkDir",
    "JobName",
)

# States after which a job (or array task) will not run again on its own.
TERMINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
    }
)
_INVALID_JOB = "Invalid job id specified"


class SlurmError(Exception):
    """A Slurm command is missing, did not answer, or refused what we asked; the message carries Slurm's own words.
    Not a ConfigError: the CLI exits with SLURM_EXIT_CODE, so scripts can tell an outage from bad input."""


SLURM_EXIT_CODE = 69  # EX_UNAVAILABLE (sysexits.h): the service hpcft needs failed
TIMEOUT_ENV = "HPCFT_SLURM_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_ARRAY_SIZE = 1001  # slurm.conf's default: array indices 0 to 1000


@dataclass
class JobInfo:
    """One job, or one task of a job array, as squeue / sacct / scontrol report it."""

    job_id: str  # "12", or "12_3" for task 3 of array job 12
    array_job_id: str  # "12" for both
    array_task_id: str | None
    name: str
    state: str  # first word only: sacct's "CANCELLED by 0" becomes "CANCELLED"
    elapsed: str = ""
    nodes: int = 0
    nodelist: str = ""
    reason: str = ""
    exit_code: str | None = None  # "code:signal", known once the job has ended
    derived_exit_code: str | None = None  # sacct only: the highest of the steps' exit codes
    work_dir: str | None = None
    restarts: int = 0

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


# ---------------------------------------------------------------- running commands


def _missing(command: str) -> SlurmError:
    return SlurmError(
        f"{command} not found: is this a login node of a Slurm cluster? "
        "(for a local test cluster run scripts/local-slurm.sh up)"
    )


def command_timeout() -> float:
    """Seconds any Slurm command may take (HPCFT_SLURM_TIMEOUT, default 60): a hung controller ends in an error."""
    try:
        return max(1.0, float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def run_slurm(
    argv: list[str], *, cwd: str | Path | None = None, timeout: float | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run one Slurm command; with check, a non-zero exit raises SlurmError with Slurm's stderr.

    The command runs in its own process group, killed whole at the timeout: a wrapper script whose child still
    holds the output pipes would otherwise keep subprocess.run waiting after the wrapper itself was killed."""
    if shutil.which(argv[0]) is None:
        raise _missing(argv[0])
    timeout = command_timeout() if timeout is None else timeout
    try:
        with subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        ) as child:
            try:
                stdout, stderr = child.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.communicate()
                raise SlurmError(
                    f"{argv[0]} did not answer within {timeout:.0f} s; is slurmctld up (scontrol ping)? "
                    f"({TIMEOUT_ENV} sets the limit)"
                ) from None
    except OSError as exc:
        raise SlurmError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    proc = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise SlurmError(slurm_message(proc.stderr or proc.stdout) or f"{argv[0]} exited with {proc.returncode}")
    return proc


def slurm_message(stderr: str) -> str:
    """Slurm's error lines joined on one line, most specific last ('sbatch: error: ...' prefixes dropped)."""
    lines = [re.sub(r"^\w+: error: ", "", line.strip()) for line in stderr.splitlines() if line.strip()]
    return "; ".join(dict.fromkeys(lines))


def controller_reachable() -> bool:
    """`scontrol ping` says a slurmctld answers (used to decide whether integration tests can run)."""
    try:
        proc = run_slurm(["scontrol", "ping"], timeout=15, check=False)
    except SlurmError:
        return False
    return proc.returncode == 0 and "UP" in proc.stdout


def max_array_size() -> int:
    """The cluster's MaxArraySize (`scontrol show config`): a job array's indices must be below it. Slurm's
    default when the controller does not say (no scontrol here, or it failed)."""
    try:
        proc = run_slurm(["scontrol", "show", "config"], timeout=min(15.0, command_timeout()), check=False)
    except SlurmError:
        return DEFAULT_MAX_ARRAY_SIZE
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", proc.stdout, re.M) if proc.returncode == 0 else None
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


# ---------------------------------------------------------------- sbatch


def sbatch_argv(script: Path, extra_args: list[str] | None = None) -> list[str]:
    return ["sbatch", "--parsable", *(extra_args or []), str(script)]


def parse_sbatch_parsable(stdout: str) -> str:
    """`sbatch --parsable` prints `jobid` or `jobid;cluster` (and possibly warnings before it)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise SlurmError("sbatch printed no job id")
    job_id = lines[-1].split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed '{lines[-1]}' where a job id was expected")
    return job_id


def dependency_args(after_ok: str) -> list[str]:
    """Start only after job `after_ok` completed successfully; if it fails the dependency can never be met and
    Slurm cancels this job instead of leaving it pending forever."""
    return [f"--dependency=afterok:{after_ok}", "--kill-on-invalid-dep=yes"]


def submit_batch(script: Path, *, cwd: Path, extra_args: list[str] | None = None) -> str:
    """Submit a batch script; returns the job id. Slurm's refusal (bad partition, account...) raises SlurmError."""
    try:
        proc = run_slurm(sbatch_argv(script, extra_args), cwd=cwd, check=False)
    except SlurmError as exc:
        if "did not answer" not in str(exc):
            raise
        # The controller may have queued the job before sbatch was stopped: say how to tell before a resubmit.
        raise SlurmError(f"{exc}; the job may be queued anyway: check `squeue --me` before submitting again") from None
    if proc.returncode != 0:
        raise SlurmError("sbatch refused the job: " + (slurm_message(proc.stderr) or f"exit {proc.returncode}"))
    return parse_sbatch_parsable(proc.stdout)


# ---------------------------------------------------------------- squeue


def _pipe_rows(stdout: str, fields: list[str], tool: str) -> list[dict[str, str]]:
    """`|`-separated lines as dicts over fields; the last field takes the rest of the line (a job name may
    contain '|'). Blank lines are skipped; a line with too few fields is an error naming the tool."""
    rows = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", len(fields) - 1)
        if len(parts) != len(fields):
            raise SlurmError(f"cannot parse {tool} line: {line!r}")
        rows.append(dict(zip(fields, parts, strict=True)))
    return rows


def parse_squeue(stdout: str) -> list[JobInfo]:
    """Lines of `squeue --array --noheader -o SQUEUE_FORMAT`."""
    jobs = []
    for row in _pipe_rows(stdout, list(SQUEUE_FIELDS), "squeue"):
        task = row["array_task_id"]
        jobs.append(
            JobInfo(
                job_id=row["job_id"],
                array_job_id=row["array_job_id"],
                array_task_id=None if task in ("N/A", "") else task,
                name=row["name"],
                state=row["state"].split()[0],
                elapsed=row["elapsed"],
                nodes=_int(row["nodes"]),
                nodelist=row["nodelist"],
                reason=row["reason"],
            )
        )
    return jobs


def squeue_jobs(job_ids: list[str]) -> list[JobInfo]:
    """Jobs the controller still holds (queued, running, and ended less than MinJobAge ago)."""
    if not job_ids:
        return []
    job_ids = [check_job_id(job_id, "job id") for job_id in job_ids]
    proc = run_slurm(
        ["squeue", "--array", "--states=all", "--noheader", "-o", SQUEUE_FORMAT, "-j", ",".join(job_ids)], check=False
    )
    if proc.returncode != 0:
        if _INVALID_JOB in proc.stderr:  # every id has left the controller's memory
            return []
        raise SlurmError("squeue failed: " + slurm_message(proc.stderr))
    return parse_squeue(proc.stdout)


# ---------------------------------------------------------------- sacct


def parse_sacct(stdout: str) -> list[JobInfo]:
    """Lines of `sacct -X -D -P -n -o SACCT_FIELDS`; requeued runs of a job (duplicates) count as restarts."""
    by_id: dict[str, JobInfo] = {}
    for row in _pipe_rows(stdout, list(SACCT_FIELDS), "sacct"):
        job_id = row["JobID"]
        array_job_id, _, task = job_id.partition("_")
        info = JobInfo(
            job_id=job_id,
            array_job_id=array_job_id,
            array_task_id=task or None,
            name=row["JobName"],
            state=row["State"].split()[0],
            exit_code=row["ExitCode"],
            derived_exit_code=row["DerivedExitCode"] or None,
            elapsed=row["Elapsed"],
            nodes=_int(row["NNodes"]),
            nodelist=row["NodeList"],
            work_dir=row["WorkDir"] or None,
        )
        if job_id in by_id:  # sacct lists earlier runs of a requeued job first
            info.restarts = by_id[job_id].restarts + 1
        by_id[job_id] = info
    return list(by_id.values())


def sacct_jobs(job_ids: list[str]) -> list[JobInfo]:
    """Jobs from the accounting database (finished ones too). Raises SlurmError where there is no slurmdbd."""
    if not job_ids:
        return []
    job_ids = [check_job_id(job_id, "job id") for job_id in job_ids]
    proc = run_slurm(
        ["sacct", "-X", "-D", "-P", "-n", "-o", ",".join(SACCT_FIELDS), "-j", ",".join(job_ids)], check=False
    )
    if proc.returncode != 0:
        raise SlurmError(
            "sacct failed (is accounting, slurmdbd, set up on this cluster?): " + slurm_message(proc.stderr)
        )
    return parse_sacct(proc.stdout)


# ---------------------------------------------------------------- scontrol

_SCONTROL_KEY = re.compile(r" (?=[A-Za-z][A-Za-z0-9:/_]*=)")


def parse_scontrol_record(line: str) -> dict[str, str]:
    """One `scontrol show -o` line of Key=Value pairs; values may contain spaces (JobName=my job)."""
    record = {}
    for item in _SCONTROL_KEY.split(line.strip()):
        key, sep, value = item.partition("=")
        if sep:
            record[key] = value
    return record


def scontrol_show_job(job_id: str) -> list[dict[str, str]]:
    """`scontrol show job -o ID`: one record per array task; [] once the controller has forgotten the job."""
    proc = run_slurm(["scontrol", "show", "job", "-o", check_job_id(job_id, "job id")], check=False)
    if proc.returncode != 0:
        if _INVALID_JOB in proc.stderr:
            return []
        raise SlurmError("scontrol show job failed: " + slurm_message(proc.stderr))
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    records = [parse_scontrol_record(line) for line in lines]
    for line, record in zip(lines, records, strict=True):
        if "JobId" not in record:
            raise SlurmError(f"cannot parse scontrol line: {line[:200]!r}")
    return records


def job_from_scontrol(record: dict[str, str]) -> JobInfo:
    task = record.get("ArrayTaskId")
    array_job = record.get("ArrayJobId") or record["JobId"]
    return JobInfo(
        job_id=f"{array_job}_{task}" if task else record["JobId"],
        array_job_id=array_job,
        array_task_id=task,
        name=record.get("JobName", ""),
        state=record.get("JobState", "").split()[0],
        elapsed=record.get("RunTime", ""),
        nodes=_int(record.get("NumNodes", "0")),
        nodelist=record.get("NodeList", ""),
        reason=record.get("Reason", ""),
        exit_code=record.get("ExitCode"),
        work_dir=record.get("WorkDir"),
        restarts=_int(record.get("Restarts", "0")),
    )


def scancel(job_id: str) -> None:
    run_slurm(["scancel", check_job_id(job_id, "job id")])


# ---------------------------------------------------------------- combined views


def job_members(job_id: str) -> list[JobInfo]:
    """The job (or every task of an array) with its current state: the controller first, then accounting."""
    records = scontrol_show_job(job_id)
    if records:
        return sorted((job_from_scontrol(r) for r in records), key=task_order)
    try:
        return sorted(sacct_jobs([job_id]), key=task_order)
    except SlurmError:
        return []


def exit_status(info: JobInfo) -> int:
    """A shell-style exit status for an ended job: the steps' exit code, else the batch script's,
    else 128+signal, else 1 when Slurm ended a job that reported nothing (cancelled, timed out)."""
    if info.state == "COMPLETED":  # the batch script exited 0 (DerivedExitCode may still hold a requeued run's)
        return 0
    pairs = [(info.derived_exit_code or "0:0").partition(":"), (info.exit_code or "0:0").partition(":")]
    for code, _, _ in pairs:
        if _int(code):
            return _int(code)
    for _, _, sig in pairs:
        if _int(sig):
            return 128 + _int(sig)
    return 1


def accounted_when_ended(job_id: str, members: list[JobInfo], wait: float = 5.0) -> list[JobInfo]:
    """sacct's records of an ended job (they carry DerivedExitCode), waiting briefly for slurmdbd to catch up;
    the controller's records when there is no accounting."""
    deadline = time.monotonic() + wait
    while True:
        try:
            records = sacct_jobs([job_id])
        except SlurmError:
            return members
        if len(records) >= len(members) and all(r.finished for r in records):
            return sorted(records, key=task_order)
        if time.monotonic() > deadline:
            return members
        time.sleep(0.3)


def expand_hostlist(nodelist: str) -> list[str]:
    """Slurm's compressed host list ('node[1-3,7],gpu01') as names, as `scontrol show hostnames` prints them."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", nodelist):
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not match:
            hosts.append(part)
            continue
        prefix, ranges, suffix = match.groups()
        for chunk in ranges.split(","):
            start, _, end = chunk.partition("-")
            if not end:
                hosts.append(f"{prefix}{start}{suffix}")
                continue
            width = len(start) if start.startswith("0") else 0
            hosts.extend(f"{prefix}{n:0{width}d}{suffix}" for n in range(int(start), int(end) + 1))
    return hosts


def exec_interactive(argv: list[str]) -> None:
    """Replace this process by an interactive srun/salloc (the terminal goes to Slurm)."""
    if shutil.which(argv[0]) is None:
        raise _missing(argv[0])
    os.execvp(argv[0], argv)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def task_order(info: JobInfo) -> tuple[int, int]:
    """Sort key: array job id, then task id (a plain job first)."""
    return (_int(info.array_job_id), _int(info.array_task_id or "-1"))
