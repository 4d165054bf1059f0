"""A job's life after rendering: submit (sbatch, submitit, sweeps as job arrays), follow, logs, status, cancel,
interactive sessions. Plain functions over a run directory and a job id; Slurm itself is reached through slurm.py.

Each submission is also recorded in $XDG_STATE_HOME/hpcft/jobs.jsonl, so that `hpcft logs 1234` and
`hpcft status` find the run directory from anywhere.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from hpcft.launcher import slurm
from hpcft.launcher.errors import ConfigError
from hpcft.launcher.slurm import JobInfo, SlurmError

if TYPE_CHECKING:  # config pulls in OmegaConf and pydantic: not needed for logs/status/cancel
    from hpcft.launcher.config import Job

BACKENDS = ("sbatch", "submitit")
_SRUN_LABEL = re.compile(r"^\s*(\d+): ?(.*)$", re.S)
_SRUN_TASK_FAILED = re.compile(r"srun: error: (\S+): tasks? (\d+)(?:-\d+)?: (?:Exited|Killed|Terminated)")
_SUBMITIT_TASK = re.compile(r"_(\d+)_log\.(?:out|err)$")


# ---------------------------------------------------------------- submissions index and manifest

def state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "hpcft"


def index_path() -> Path:
    return state_dir() / "jobs.jsonl"


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{run_dir} is not an hpcft run directory (no manifest.json); "
                          "give a run directory written by `hpcft render`/`hpcft submit`, or a job id") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: unreadable manifest ({exc}); re-render the run") from None


def update_manifest(run_dir: Path, **values: Any) -> dict[str, Any]:
    data = read_manifest(run_dir)
    data.update(values)
    tmp = run_dir / f".manifest.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(run_dir / "manifest.json")  # atomic: a reader sees the old or the new manifest
    return data


def record_submission(run_dir: Path, job_id: str, backend: str) -> None:
    """Write the job id into the manifest and the user's submissions index."""
    submitted_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    data = update_manifest(run_dir, job_id=job_id, submitted_at=submitted_at, backend=backend)
    entry = {"job_id": job_id, "run_dir": str(run_dir), "name": data.get("job_name"),
             "submitted_at": submitted_at, "backend": backend}
    index = index_path()
    index.parent.mkdir(parents=True, exist_ok=True)
    with index.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


def submissions() -> list[dict[str, Any]]:
    """Recorded submissions, oldest first, dropping those whose run directory is gone."""
    try:
        lines = index_path().read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (Path(entry.get("run_dir", "")) / "manifest.json").is_file():
            found.append(entry)
    return found


# ---------------------------------------------------------------- finding a run

@dataclass
class RunRef:
    """What a user named: a job id, and the run directory when the job is hpcft's."""

    job_id: str
    run_dir: Path | None = None


def resolve_run(ref: str | None) -> RunRef:
    """JOBID, RUN_DIR, or 'latest' (also when ref is None) -> the job id and its run directory."""
    if ref in (None, "latest"):
        entries = submissions()
        if not entries:
            raise ConfigError("no hpcft job submitted yet (nothing in "
                              f"{index_path()}); give a job id or a run directory")
        return RunRef(entries[-1]["job_id"], Path(entries[-1]["run_dir"]))
    path = Path(ref).expanduser()
    if path.exists():
        run_dir = (path.parent if path.is_file() else path).resolve()
        job_id = read_manifest(run_dir).get("job_id")
        if not job_id:
            raise ConfigError(f"{run_dir} was rendered but never submitted; submit it with "
                              f"`sbatch {run_dir}/job.sbatch` or `hpcft submit`")
        return RunRef(str(job_id), run_dir)
    if not re.fullmatch(r"\d+(_\d+)?", ref):
        raise ConfigError(f"'{ref}' is neither a job id, a run directory, nor 'latest'")
    return RunRef(ref, _run_dir_of(ref))


def _run_dir_of(job_id: str) -> Path | None:
    base = job_id.split("_")[0]
    for entry in reversed(submissions()):
        if entry["job_id"] == base:
            return Path(entry["run_dir"])
    # Submitted by hand (`sbatch job.sbatch`) or from another machine: hpcft submits from the run directory,
    # and Slurm remembers each job's working directory.
    for member in slurm.job_members(base):
        if member.work_dir and (Path(member.work_dir) / "manifest.json").is_file():
            return Path(member.work_dir)
    return None


# ---------------------------------------------------------------- sweeps

def sweep_points(specs: list[str]) -> list[list[str]]:
    """`--sweep lr=1e-5,2e-5 --sweep lora_r=8,16` -> the grid, as override lists (lr first, varying slowest)."""
    axes = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not choices:
            raise ConfigError(f"--sweep '{spec}' must look like key=value1,value2 (e.g. learning_rate=1e-5,2e-5)")
        axes.append([f"{key.strip()}={choice}" for choice in choices])
    return [list(point) for point in itertools.product(*axes)]


@dataclass
class SweepPoint:
    index: int
    overrides: list[str]
    job: Job


def load_sweep(config: str | Path, profile: str, overrides: list[str], cli_launch: dict[str, Any],
               specs: list[str], base: Job) -> list[SweepPoint]:
    """Validate every grid point before anything is written; each point trains into <output_dir>/point-<i>."""
    from hpcft.launcher.config import load_job

    points = []
    for index, point in enumerate(sweep_points(specs)):
        own = [*overrides, *point, f"output_dir={base.cfg.output_dir}/point-{index}"]
        points.append(SweepPoint(index, point, load_job(config, profile, overrides=own, cli_launch=cli_launch)))
    return points


def render_sweep_files(points: list[SweepPoint], run_dir: Path) -> dict[str, str]:
    """points/<i>/{train.yaml, deepspeed.json or fsdp.json, point.json}: array task i trains point i."""
    from hpcft.launcher.render import render_files

    files: dict[str, str] = {}
    for point in points:
        point_dir = run_dir / "points" / str(point.index)
        rendered = render_files(point.job, point_dir)
        files[f"points/{point.index}/train.yaml"] = rendered["train.yaml"]
        for name in ("deepspeed.json", "fsdp.json"):
            if name in rendered:
                files[f"points/{point.index}/{name}"] = rendered[name]
        files[f"points/{point.index}/point.json"] = json.dumps(
            {"index": point.index, "overrides": point.overrides, "output_dir": point.job.cfg.output_dir}, indent=2)
    return files


# ---------------------------------------------------------------- submit

@dataclass
class Submission:
    run_dir: Path
    job_id: str | None  # None for a dry run
    backend: str
    command: list[str] = field(default_factory=list)  # the sbatch command (sbatch backend)
    handle: Any = None  # the submitit Job (submitit backend)


def submit_run(job: Job, *, out_dir: str | Path | None = None, backend: str = "sbatch", dry_run: bool = False,
               sweep: list[SweepPoint] | None = None, command_line: list[str] | None = None) -> Submission:
    """Render the run directory and submit it; a refused submission leaves no run directory behind."""
    from hpcft.launcher.render import finalize_job_name, render_run_dir

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    if sweep and backend != "sbatch":
        raise ConfigError("--sweep runs as one Slurm job array rendered into job.sbatch; use --backend sbatch")
    if not dry_run:
        from hpcft.launcher.image import check_image

        check_image(job)  # a missing .sqsh/.sif is an error now, not a failed job after the queue wait
    finalize_job_name(job)
    for point in sweep or []:
        point.job.cfg.launch.job_name = job.cfg.launch.job_name
    if sweep:
        # Each point's train.yaml names files inside the run directory, so choose it before rendering.
        from hpcft.launcher.render import default_run_dir

        target = Path(out_dir).expanduser().resolve() if out_dir else default_run_dir(job)
        run_dir = render_run_dir(job, out_dir=target, command_line=command_line,
                                 extra_files=render_sweep_files(sweep, target),
                                 array=f"0-{len(sweep) - 1}", log_name="slurm-%A_%a")
        update_manifest(run_dir, sweep={"points": [
            {"index": p.index, "overrides": p.overrides, "output_dir": p.job.cfg.output_dir} for p in sweep]})
    else:
        run_dir = render_run_dir(job, out_dir=out_dir, command_line=command_line)
    script = run_dir / "job.sbatch"
    command = slurm.sbatch_argv(script)
    if dry_run:
        return Submission(run_dir, None, backend, command)
    try:
        if backend == "submitit":
            handle = submit_with_submitit(job, run_dir)
            job_id, command = str(handle.job_id), []
        else:
            handle, job_id = None, slurm.submit_batch(script, cwd=run_dir)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # nothing may look submitted that is not
        raise
    record_submission(run_dir, job_id, backend)
    return Submission(run_dir, job_id, backend, command, handle)


# ---------------------------------------------------------------- submitit backend

@dataclass
class TorchrunOnNode:
    """What submitit runs as each node's task: the same torchrun command job.sbatch runs under srun."""

    container_exec: list[str]
    stop_grace_s: float = 300

    def __call__(self) -> int:
        import subprocess

        env = os.environ
        argv = [*self.container_exec, env["HPCFT_PYTHON"], "-m", "torch.distributed.run",
                f"--nnodes={env['SLURM_NNODES']}", f"--nproc_per_node={env['HPCFT_NPROC_PER_NODE']}",
                f"--node_rank={env['SLURM_PROCID']}", "--rdzv_backend=c10d",
                f"--rdzv_endpoint={env['MASTER_ADDR']}:{env['MASTER_PORT']}", f"--rdzv_id={env['SLURM_JOB_ID']}",
                "--max_restarts=0", "-m", "hpcft.trainer", "train", env["HPCFT_TRAIN_YAML"]]
        self._proc = subprocess.Popen(argv)
        code = self._proc.wait()
        if code != 0:
            raise RuntimeError(f"torchrun on {os.uname().nodename} (node rank {env['SLURM_PROCID']}) exited {code}")
        return code

    def checkpoint(self) -> Any:
        """submitit's time-limit hook: as job.sbatch's USR1 trap, ask the trainer to save and stop (it polls
        $HPCFT_STOP_FILE), wait for it, then let submitit requeue the job, which resumes from the checkpoint."""
        from submitit.helpers import DelayedSubmission

        Path(os.environ["HPCFT_STOP_FILE"]).touch()
        proc = getattr(self, "_proc", None)
        if proc is not None:
            try:
                proc.wait(timeout=self.stop_grace_s)
            except Exception:  # noqa: BLE001 - out of time: Slurm ends it anyway
                pass
        return DelayedSubmission(TorchrunOnNode(self.container_exec, self.stop_grace_s))


def time_to_minutes(value: str) -> int:
    """Slurm time strings (MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) -> whole minutes, rounded up."""
    days, _, rest = value.partition("-") if "-" in value else ("0", "", value)
    parts = [int(p) for p in rest.split(":")]
    if "-" in value:
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = 0, parts[0], 0
    total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    return max(1, -(-total // 60))


def submit_with_submitit(job: Job, run_dir: Path) -> Any:
    """Submit the rendered job through submitit: one task per node running torchrun, as job.sbatch does."""
    import submitit

    from hpcft.launcher.config import unique_mounts
    from hpcft.launcher.render import _job_env, _python_for, container_invocation, shell_env_value

    profile, launch, cfg = job.profile, job.cfg.launch, job.cfg
    mounts = unique_mounts([*launch.mounts, str(run_dir), cfg.output_dir])
    srun_args, exec_words = container_invocation(job, run_dir, mounts)
    python = _python_for(profile.python)
    exports = {"HPCFT_RUN_DIR": shlex.quote(str(run_dir)),
               "HPCFT_TRAIN_YAML": shlex.quote(str(run_dir / "train.yaml")),
               "HPCFT_PYTHON": shlex.quote(python), "HPCFT_NPROC_PER_NODE": str(launch.nproc_per_node),
               "HPCFT_STOP_FILE": '"${HPCFT_RUN_DIR}/stop-${SLURM_JOB_ID}"',
               "HPCFT_HANG_TIMEOUT": str(launch.hang_timeout)}
    exports.update({k: shell_env_value(v) for k, v in _job_env(job).items()})
    setup = [f"export {k}={v}" for k, v in exports.items()]
    if profile.secret_file:
        secret = shlex.quote(str(Path(profile.secret_file).expanduser()))
        setup.append(f"if [ -r {secret} ]; then set -a; . {secret}; set +a; fi")
    setup += list(profile.setup)
    setup += ['MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)',
              f"MASTER_PORT=$(( {profile.rdzv_port_base} + SLURM_JOB_ID % 10000 ))",
              "export MASTER_ADDR MASTER_PORT"]
    # In a container runtime the task's Python is the image's; on bare nodes it is the one running hpcft.
    executor_python = shlex.quote(python if profile.runtime in ("edf", "pyxis") else sys.executable)
    executor = submitit.SlurmExecutor(folder=run_dir / "submitit", python=executor_python,
                                      max_num_timeout=launch.max_requeues if launch.requeue else 0)
    params: dict[str, Any] = {
        "job_name": launch.job_name, "nodes": launch.nodes, "ntasks_per_node": 1,
        "time": time_to_minutes(launch.time), "setup": setup,
        # As job.sbatch: one failed node ends the step rather than leaving the others in a collective.
        "srun_args": ["--kill-on-bad-exit=1", "--wait=60", *srun_args, *launch.srun_args],
        "signal_delay_s": launch.signal_grace, "additional_parameters": {"chdir": str(run_dir)},
    }
    for key in ("partition", "account", "qos", "constraint", "cpus_per_task"):
        if getattr(launch, key):
            params[key] = getattr(launch, key)
    for key in ("reservation", "mem"):  # as Slurm strings ("64G"); submitit's own `mem` wants gigabytes
        if getattr(launch, key):
            params["additional_parameters"][key] = getattr(launch, key)
    if launch.gpus_per_node:
        if profile.gres:
            params["gres"] = f"gpu:{launch.gpus_per_node}"
        else:
            params["gpus_per_node"] = launch.gpus_per_node
    executor.update_parameters(**params)
    try:
        return executor.submit(TorchrunOnNode(exec_words, stop_grace_s=max(10, launch.signal_grace - 10)))
    except Exception as exc:  # submitit wraps sbatch's refusal in its own exception types
        raise SlurmError(f"sbatch refused the job (submitit): {slurm.slurm_message(str(exc))}") from None


# ---------------------------------------------------------------- logs

def log_files(run: RunRef) -> list[Path]:
    """The job's stdout/stderr files: in the run directory (logs/, submitit/), else where Slurm says."""
    if run.run_dir is not None:
        token = re.compile(rf"(?<![0-9]){re.escape(run.job_id)}(?![0-9])")
        found = []
        for sub in ("logs", "submitit"):
            folder = run.run_dir / sub
            if folder.is_dir():
                found += [p for p in folder.iterdir()
                          if p.suffix in (".out", ".err") and token.search(p.name)]
        return sorted(found, key=_log_sort_key)
    paths: list[Path] = []
    for record in slurm.scontrol_show_job(run.job_id):
        for key in ("StdOut", "StdErr"):
            if record.get(key) and Path(record[key]) not in paths:
                paths.append(Path(record[key]))
    return [p for p in paths if p.is_file()]


def _log_sort_key(path: Path) -> tuple[str, int, str]:
    match = _SUBMITIT_TASK.search(path.name)
    stem = path.name[: match.start()] if match else path.stem
    return (stem, int(match.group(1)) if match else -1, path.suffix)


@dataclass
class LogLine:
    text: str
    task: int | None  # the Slurm task (= node rank: one task per node), when known
    source: Path


class LogTailer:
    """Reads what was appended to a set of log files since the last call, line by line."""

    def __init__(self) -> None:
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, str] = {}

    def read_new(self, paths: list[Path], final: bool = False) -> list[LogLine]:
        lines: list[LogLine] = []
        for path in paths:
            try:
                with path.open("rb") as handle:
                    handle.seek(self._offsets.get(path, 0))
                    chunk = handle.read()
                    self._offsets[path] = handle.tell()
            except FileNotFoundError:
                continue
            text = self._partial.pop(path, "") + chunk.decode(errors="replace")
            parts = text.split("\n")
            if not final:  # keep an unfinished last line for the next read
                self._partial[path] = parts.pop()
            elif parts and parts[-1] == "":
                parts.pop()
            submitit_task = _SUBMITIT_TASK.search(path.name)
            for raw in parts:
                lines.append(_labelled(raw.rstrip("\r"), path, submitit_task))
        return lines


def _labelled(raw: str, path: Path, submitit_task: re.Match[str] | None) -> LogLine:
    if submitit_task:
        return LogLine(raw, int(submitit_task.group(1)), path)
    match = _SRUN_LABEL.match(raw)
    if match:  # `srun --label` output: "1: text"
        return LogLine(match.group(2), int(match.group(1)), path)
    return LogLine(raw, None, path)


_RANK_COLORS = ("36", "33", "35", "32", "34", "91", "96", "93")  # ANSI: cyan, yellow, magenta, green, ...


def use_color(out: IO[str]) -> bool:
    """Colour on a terminal only: never in a pipe or a file, nor with NO_COLOR set (https://no-color.org)."""
    return hasattr(out, "isatty") and out.isatty() and not os.environ.get("NO_COLOR")


def format_line(line: LogLine, hosts: list[str], prefix: bool, color: bool = False) -> str:
    if not prefix or line.task is None:
        return line.text
    host = hosts[line.task] if line.task < len(hosts) else "?"
    label = f"[{host}/{line.task}]"
    if color:
        label = f"\033[{_RANK_COLORS[line.task % len(_RANK_COLORS)]}m{label}\033[0m"
    return f"{label} {line.text}"


def follow_job(run: RunRef, out: IO[str] | None = None, *, follow: bool = True, rank: int | None = None,
               poll: float = 1.0, timeout: float | None = None) -> int:
    """Print the job's logs (following them until the job ends when follow); returns the job's exit status."""
    out = out or sys.stdout
    tailer = LogTailer()
    deadline = None if timeout is None else time.monotonic() + timeout
    members = _members_or_fail(run.job_id)
    shown_state = ""
    while True:
        done = all(m.finished for m in members)
        if follow:
            shown_state = _note_state_change(members, shown_state)
        # Once the job has ended its files are complete: read to the end, unfinished last lines included.
        _print_lines(tailer.read_new(log_files(run), final=done or not follow), members, out, rank)
        if done or not follow:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise SlurmError(f"job {run.job_id} still {members[0].state} after {timeout:.0f} s")
        time.sleep(poll)
        members = _members_or_fail(run.job_id)
    if not done:
        return 0
    return max(slurm.exit_status(m) for m in slurm.accounted_when_ended(run.job_id, members))


def _note_state_change(members: list[JobInfo], shown: str) -> str:
    """While following, say on stderr when the job waits, starts, is requeued or ends (the logs say nothing then)."""
    first = members[0]
    state = f"{first.state} {first.reason}" if first.state == "PENDING" and first.reason not in ("", "None") \
        else first.state
    if first.restarts:
        state += f" (restart {first.restarts})"
    if state != shown:
        where = f" on {first.nodelist}" if first.state == "RUNNING" and first.nodelist else ""
        print(f"hpcft: job {first.array_job_id} {state}{where}", file=sys.stderr, flush=True)
    return state


def _members_or_fail(job_id: str) -> list[JobInfo]:
    members = slurm.job_members(job_id)
    if not members:
        raise SlurmError(f"job {job_id} is unknown to Slurm (not in squeue, scontrol or sacct); check the id")
    return members


def _print_lines(lines: list[LogLine], members: list[JobInfo], out: IO[str], rank: int | None) -> None:
    """Write lines prefixed by node/rank (multi-node jobs) and by array task (sweeps)."""
    multi_node = any(m.nodes > 1 for m in members)
    color = use_color(out)
    by_task = {m.array_task_id: m for m in members if m.array_task_id}
    if rank is not None and lines and all(line.task is None for line in lines):
        print("hpcft: these logs carry no rank labels (the job's srun has no --label); --rank shows nothing",
              file=sys.stderr)
    for line in lines:
        if rank is not None and line.task != rank:
            continue
        member = members[0]
        task_match = re.search(rf"(?<![0-9]){re.escape(member.array_job_id)}_(\d+)(?![0-9])", line.source.name)
        if task_match and task_match.group(1) in by_task:
            member = by_task[task_match.group(1)]
        text = format_line(line, _hosts(member), multi_node, color)
        out.write(f"[{member.job_id}] {text}\n" if by_task else text + "\n")
    out.flush()


def _hosts(member: JobInfo) -> list[str]:
    return slurm.expand_hostlist(member.nodelist) if member.nodelist not in ("", "None assigned") else []


@dataclass
class Traceback:
    task: int | None
    text: str
    source: Path


def first_traceback(lines: list[LogLine]) -> Traceback | None:
    """The first Python traceback of the first task srun reports as failed (else the first traceback at all)."""
    failed = next((int(m.group(2)) for line in lines if (m := _SRUN_TASK_FAILED.search(line.text))), None)
    tracebacks = _tracebacks(lines)
    for tb in tracebacks:
        if failed is None or tb.task == failed:
            return tb
    return tracebacks[0] if tracebacks else None


def _tracebacks(lines: list[LogLine]) -> list[Traceback]:
    found: list[Traceback] = []
    open_blocks: dict[tuple[Path, int | None], list[str]] = {}
    for line in lines:
        key = (line.source, line.task)
        text = re.sub(r"^\[(?:rank|default)\d+\]: ?", "", line.text)  # torchrun's per-worker prefix
        if text.startswith("Traceback (most recent call last):"):
            open_blocks[key] = [text]
        elif key in open_blocks:
            open_blocks[key].append(text)
            if text and not text[0].isspace():  # "ValueError: ..." ends the traceback
                found.append(Traceback(line.task, "\n".join(open_blocks.pop(key)), line.source))
    return found


def show_errors(run: RunRef, out: IO[str] | None = None) -> int:
    """Print the first traceback of the first failing rank; 1 when none is found."""
    out = out or sys.stdout
    tailer = LogTailer()
    paths = log_files(run)
    lines = tailer.read_new([p for p in paths if p.suffix == ".err"] + [p for p in paths if p.suffix == ".out"],
                            final=True)
    tb = first_traceback(lines)
    if tb is None:
        print(f"hpcft: no Python traceback in the logs of job {run.job_id} ({len(paths)} file(s))", file=sys.stderr)
        return 1
    out.write(f"first traceback{_where(tb, lines, run.job_id)} ({tb.source}):\n{tb.text}\n")
    return 0


# torchrun prints a worker's global rank with its failure ("rank : 1 (local_rank: 0)"), and every rank of the
# trainer names itself in its first lines ("[rank1]:" prefixes from torch.distributed).
_TORCHRUN_RANK = re.compile(r"^\s*rank\s*:\s*(\d+) \(local_rank")
_WORKER_PREFIX = re.compile(r"^\[(?:rank|default)(\d+)\]:")


def _where(tb: Traceback, lines: list[LogLine], job_id: str) -> str:
    """' on node2 (node rank 1, global rank 1)': where the traceback came from, as far as the logs tell."""
    if tb.task is None:
        return ""
    members = slurm.job_members(job_id)
    hosts = _hosts(members[0]) if members else []
    host = hosts[tb.task] if tb.task < len(hosts) else f"task {tb.task}"
    rank = next((m.group(1) for line in lines if line.task == tb.task
                 for m in [_TORCHRUN_RANK.match(line.text) or _WORKER_PREFIX.match(line.text)]
                 if m and (m.re is _TORCHRUN_RANK or "Traceback" in line.text)), None)
    return f" on {host} (node rank {tb.task}" + (f", global rank {rank})" if rank else ")")


# ---------------------------------------------------------------- status

@dataclass
class StatusRow:
    job_id: str
    name: str
    state: str
    elapsed: str
    nodes: int
    restarts: int
    step: int | None = None
    loss: float | None = None
    run_dir: str = ""


def last_metrics(output_dir: str | None) -> tuple[int | None, float | None]:
    """The last {"step", "loss"} line of <output_dir>/metrics.jsonl (only the file's tail is read)."""
    if not output_dir:
        return None, None
    path = Path(output_dir) / "metrics.jsonl"
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 65536))
            tail = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return None, None
    for line in reversed(tail):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record and "loss" in record:
            return record["step"], record["loss"]
    return None, None


def _output_dir_for(member: JobInfo, manifest: dict[str, Any]) -> str | None:
    points = (manifest.get("sweep") or {}).get("points")
    if points and member.array_task_id and member.array_task_id.isdigit():
        index = int(member.array_task_id)
        return points[index]["output_dir"] if index < len(points) else None
    return manifest.get("output_dir")


def status_rows(runs: list[RunRef]) -> list[StatusRow]:
    """One row per job (per task for arrays): squeue for live jobs, sacct for ended ones and restart counts."""
    ids = list(dict.fromkeys(r.job_id.split("_")[0] for r in runs))
    live = slurm.squeue_jobs(ids)
    try:
        accounted = {m.job_id: m for m in slurm.sacct_jobs(ids)}
    except SlurmError:  # no accounting on this cluster: live jobs only
        accounted = {}
    rows: list[StatusRow] = []
    for run in runs:
        base = run.job_id.split("_")[0]
        # The controller's view wins while it holds the job; accounting fills in the rest and the restarts.
        members = {m.job_id: m for m in accounted.values() if m.array_job_id == base}
        for m in live:
            if m.array_job_id == base:
                m.restarts = max(m.restarts, members[m.job_id].restarts if m.job_id in members else 0)
                members[m.job_id] = m
        manifest = read_manifest(run.run_dir) if run.run_dir else {}
        if not members:
            rows.append(StatusRow(run.job_id, manifest.get("job_name") or "", "UNKNOWN", "", 0, 0,
                                  run_dir=str(run.run_dir or "")))
            continue
        for member in sorted(members.values(), key=slurm.task_order):
            if "_" in run.job_id and member.job_id != run.job_id:
                continue
            step, loss = last_metrics(_output_dir_for(member, manifest))
            rows.append(StatusRow(member.job_id, member.name, member.state, member.elapsed, member.nodes,
                                  member.restarts, step, loss, str(run.run_dir or "")))
    return rows


def recent_runs(include_all: bool, max_age_s: float = 86400) -> list[RunRef]:
    """Recorded submissions: all of them, or those submitted in the last day."""
    now = time.time()
    runs = []
    for entry in submissions():
        try:
            age = now - time.mktime(time.strptime(entry["submitted_at"][:19], "%Y-%m-%dT%H:%M:%S"))
        except (KeyError, ValueError):
            age = 0
        if include_all or age <= max_age_s:
            runs.append(RunRef(entry["job_id"], Path(entry["run_dir"])))
    return runs


def format_status_table(rows: list[StatusRow]) -> str:
    header = ("JOBID", "NAME", "STATE", "ELAPSED", "NODES", "RESTARTS", "STEP", "LOSS", "RUN_DIR")
    table = [header] + [
        (r.job_id, r.name, r.state, r.elapsed, str(r.nodes), str(r.restarts),
         "-" if r.step is None else str(r.step), "-" if r.loss is None else f"{r.loss:.4g}", r.run_dir)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
                     for row in table)


# ---------------------------------------------------------------- cancel

def cancel_run(run: RunRef) -> None:
    slurm.scancel(run.job_id)


def wait_for_state(job_id: str, states: set[str], timeout: float = 30, poll: float = 0.5) -> list[JobInfo]:
    """Poll until every member of the job is in one of `states` (used after cancel, and by tests)."""
    deadline = time.monotonic() + timeout
    while True:
        members = slurm.job_members(job_id)
        if members and all(m.state in states for m in members):
            return members
        if time.monotonic() > deadline:
            seen = ", ".join(f"{m.job_id}={m.state}" for m in members) or "unknown"
            raise SlurmError(f"job {job_id} did not reach {'/'.join(sorted(states))} within {timeout:.0f} s ({seen})")
        time.sleep(poll)


# ---------------------------------------------------------------- interactive

def interactive_rc(job: Job, run_dir: Path, torchrun_line: str) -> str:
    """The shell start-up file of an interactive session: the batch job's environment, then a prompt."""
    from hpcft.launcher.render import _job_env, _python_for, shell_env_value

    launch = job.cfg.launch
    lines = ["# Written by `hpcft interactive`: the environment job.sbatch sets up, for an interactive shell.",
             '[ -f ~/.bashrc ] && . ~/.bashrc',
             f"export HPCFT_RUN_DIR={shlex.quote(str(run_dir))}",
             'export HPCFT_TRAIN_YAML="${HPCFT_RUN_DIR}/train.yaml"',
             f"export HPCFT_PYTHON={shlex.quote(_python_for(job.profile.python))}",
             f"export HPCFT_NPROC_PER_NODE={launch.nproc_per_node}"]
    lines += [f"export {k}={shell_env_value(v)}" for k, v in _job_env(job).items()]
    if job.profile.secret_file:
        secret = shlex.quote(str(Path(job.profile.secret_file).expanduser()))
        lines.append(f"if [ -r {secret} ]; then set -a; . {secret}; set +a; fi")
    lines += list(job.profile.setup)
    lines += ['MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)',
              f"MASTER_PORT=$(( {job.profile.rdzv_port_base} + SLURM_JOB_ID % 10000 ))",
              "export MASTER_ADDR MASTER_PORT",
              f"echo {shlex.quote('hpcft: to train, run:  ' + torchrun_line)}"]
    return "\n".join(lines) + "\n"


def _container_words(job: Job, run_dir: Path) -> tuple[list[str], list[str]]:
    from hpcft.launcher.config import unique_mounts
    from hpcft.launcher.render import container_invocation

    mounts = unique_mounts([*job.cfg.launch.mounts, str(run_dir), job.cfg.output_dir])
    srun_args, exec_words = container_invocation(job, run_dir, mounts)
    return [*srun_args, *job.cfg.launch.srun_args], exec_words


def torchrun_command(job: Job, run_dir: Path) -> str:
    """The command to paste in an interactive session (the one job.sbatch runs on every node)."""
    torchrun = ('"$HPCFT_PYTHON" -m torch.distributed.run --nnodes="$SLURM_NNODES" '
                '--nproc_per_node="$HPCFT_NPROC_PER_NODE" --node_rank="$SLURM_PROCID" --rdzv_backend=c10d '
                '--rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="$SLURM_JOB_ID" --max_restarts=0 '
                '-m hpcft.trainer train "$HPCFT_TRAIN_YAML"')
    if job.cfg.launch.nodes == 1:
        return torchrun
    # From the shell on the first node, one task per allocated node, each in the job's container
    # (--overlap: the shell holds CPUs). The shell's step sets SLURM_NTASKS=1, which srun would obey,
    # so the task counts are given explicitly.
    srun_args, exec_words = _container_words(job, run_dir)
    words = ["srun", "--overlap", '--nodes="$SLURM_JOB_NUM_NODES"', '--ntasks="$SLURM_JOB_NUM_NODES"',
             "--ntasks-per-node=1", *map(shlex.quote, srun_args), *map(shlex.quote, exec_words),
             "bash", "-c", shlex.quote(torchrun)]
    return " ".join(words)


def interactive_argv(job: Job, run_dir: Path) -> list[str]:
    """srun --pty into a shell with the batch job's environment: inside its container on one node; on several
    nodes, under salloc, a plain shell on the first node (srun is not available inside containers) from where
    the printed command starts torchrun in the container on every node."""
    launch, profile = job.cfg.launch, job.profile
    alloc = [f"--nodes={launch.nodes}", "--ntasks-per-node=1", f"--time={launch.time}",
             f"--job-name={launch.job_name}"]
    for key in ("partition", "account", "qos", "reservation", "constraint", "mem"):
        if getattr(launch, key):
            alloc.append(f"--{key}={getattr(launch, key)}")
    if launch.gpus_per_node:
        alloc.append(f"--gres=gpu:{launch.gpus_per_node}" if profile.gres
                     else f"--gpus-per-node={launch.gpus_per_node}")
    if launch.cpus_per_task:
        alloc.append(f"--cpus-per-task={launch.cpus_per_task}")
    shell = ["bash", "--rcfile", str(run_dir / "interactive.rc"), "-i"]
    if launch.nodes == 1:
        srun_args, exec_words = _container_words(job, run_dir)
        return ["srun", "--pty", *alloc, *srun_args, *exec_words, *shell]
    return ["salloc", *alloc, "srun", "--pty", "--overlap", "--nodes=1", "--ntasks=1", *shell]


def prepare_interactive(job: Job, out_dir: str | Path | None = None,
                        command_line: list[str] | None = None) -> tuple[Path, list[str], str]:
    """Render the run directory plus interactive.rc; returns (run_dir, srun argv, torchrun line to paste)."""
    from hpcft.launcher.render import default_run_dir, finalize_job_name, render_run_dir

    finalize_job_name(job)
    target = Path(out_dir).expanduser().resolve() if out_dir else default_run_dir(job)
    line = torchrun_command(job, target)
    run_dir = render_run_dir(job, out_dir=target, command_line=command_line,
                             extra_files={"interactive.rc": interactive_rc(job, target, line)})
    return run_dir, interactive_argv(job, run_dir), line

