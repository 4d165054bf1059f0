"""Render a validated job into a self-contained run directory a person can read and `sbatch` by hand.

Rendering never shells out and writes atomically: everything is rendered in memory, written to a hidden
temporary folder next to the target, and renamed into place, so a failure leaves no half-written run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from hpcft.core.errors import ConfigError
from hpcft.core.features.fsdp import cpu_translation_note, fsdp_version
from hpcft.core.features.training_loop import runs_plain_ddp
from hpcft.core.quoting import comment_text, sbatch_value, toml_key, toml_str
from hpcft.core.run_paths import RunPaths
from hpcft.core.schema import TrainConfig
from hpcft.launcher import __version__
from hpcft.launcher.config import Job
from hpcft.launcher.jobplan import JobPlan, job_env, make_plan
from hpcft.launcher.jobs.runs import default_run_dir
from hpcft.launcher.node_paths import check_node_paths
from hpcft.launcher.resolve_path import absolute_path
from hpcft.launcher.sharding import fsdp_runs_as_zero, sharding_files

_HASH_LIMIT = 64 * 1024 * 1024  # hash input files up to this size; larger ones are recorded by size and mtime


@functools.cache  # one environment per process: it caches the compiled templates (a sweep renders 1,000 times)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_read_template),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(
        q=lambda v: shlex.quote(str(v)),
        sbatch_value=sbatch_value,
        toml_str=toml_str,
        toml_key=toml_key,
        comment=comment_text,
    )
    return env


def _read_template(name: str) -> str:
    package, _, filename = name.partition("/")
    return (resources.files(f"hpcft.{package}") / filename).read_text()


def _file_fingerprint(path: Path) -> dict[str, Any]:
    try:
        stat = path.stat()
        entry: dict[str, Any] = {"path": str(path), "bytes": stat.st_size}
        if stat.st_size <= _HASH_LIMIT:
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entry["mtime"] = int(stat.st_mtime)
    except OSError as exc:
        raise ConfigError(f"cannot read dataset file {path} ({exc.strerror or exc}); check its permissions") from None
    return entry


def input_fingerprints(cfg: TrainConfig) -> list[dict[str, Any]]:
    """Hashes of the local dataset files the run reads (what was rendered from what)."""
    files: list[Path] = []
    for ds in list(cfg.datasets) + list(cfg.test_datasets or []):
        candidates = [ds.path] + ([ds.data_files] if isinstance(ds.data_files, str) else list(ds.data_files or []))
        for item in candidates:
            path = Path(item)
            if path.is_file():
                files.append(path)
            elif path.is_dir():
                files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
    return [_file_fingerprint(p) for p in dict.fromkeys(files)]


def render_files(job: Job, run_dir: Path, array: str | None = None, plan: JobPlan | None = None) -> dict[str, str]:
    """Render every file of the run directory into memory: {relative name: text}. `plan` is the job's plan in
    run_dir when the caller has built it already."""
    cfg, launch = job.cfg, job.cfg.launch
    plan = plan or make_plan(job, run_dir, array=array)
    context = {
        "version": __version__,
        "config_path": str(job.config_path),
        "profile": job.profile,
        "launch": launch,
        "run_dir": str(run_dir),
        "paths": RunPaths(run_dir),
        "plan": plan,
        # The preprocessing job's own resources, defaulting to the training job's partition and account.
        "preprocess_options": [
            (key, value)
            for key, value in (
                ("partition", launch.preprocess_partition or launch.partition),
                ("account", launch.preprocess_account or launch.account),
                ("qos", launch.preprocess_qos),
                ("mem", launch.preprocess_mem),
            )
            if value
        ],
    }
    jenv = _environment()
    files = {
        "job.sbatch": jenv.get_template("templates/job.sbatch.j2").render(context),
        "preprocess.sbatch": jenv.get_template("templates/preprocess.sbatch.j2").render(context),
    }
    files.update(plan.runtime.run_files(lambda name: jenv.get_template(name).render(context)))
    files.update(job.sharding if job.sharding is not None else sharding_files(cfg, str(job.config_path)))
    files["train.yaml"] = train_yaml_text(cfg, run_dir / "deepspeed.json", job)
    return files


def train_yaml_text(cfg: TrainConfig, deepspeed_path: Path, job: Job) -> str:
    data = cfg.training_dict()
    header = (
        f"# Resolved by hpcft {__version__} from {comment_text(job.config_path)} "
        f"(profile '{comment_text(job.profile.name)}').\n"
        "# This is what the trainer reads; edit the source config and re-render instead.\n"
    )
    if runs_plain_ddp(cfg):
        header += (
            "# lisa_n_layers/relora/optimizer: muon: plain DDP, no DeepSpeed (see core/features/training_loop.py).\n"
        )
    elif not cfg.uses_fsdp:
        data["deepspeed"] = str(deepspeed_path)
    elif fsdp_runs_as_zero(cfg):
        header += f"# {cpu_translation_note(cfg)}: see deepspeed.json.\n"
    else:
        header += (
            f"# fsdp: PyTorch FSDP{fsdp_version(cfg)} through accelerate, no DeepSpeed; fsdp.json shows the "
            "settings the Trainer receives.\n"
        )
    # libyaml's dumper when PyYAML has it: the same text, 10x faster (a 1,000-point sweep writes 1,000 of these).
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return header + yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True)


def manifest(job: Job, run_dir: Path, command_line: list[str] | None) -> dict[str, Any]:
    return {
        "hpcft_version": __version__,
        "rendered_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(run_dir),
        "profile": job.profile.name,
        "runtime": job.profile.runtime,
        "config": {"path": str(job.config_path), "sha256": job.config_sha256},
        "overrides": job.overrides,
        "inputs": input_fingerprints(job.cfg),
        "command_line": command_line if command_line is not None else sys.argv,
        "job_name": job.cfg.launch.job_name,
        "output_dir": job.cfg.output_dir,
        "launch": job.cfg.launch.model_dump(mode="json", exclude={"env"}) | {"env_keys": sorted(job_env(job))},
        "job_id": None,
    }


def render_run_dir(
    job: Job,
    out_dir: str | Path | None = None,
    command_line: list[str] | None = None,
    extra_files: dict[str, str] | None = None,
    array: str | None = None,
) -> Path:
    """Write the run directory for `job` and return its absolute path."""
    run_dir = target_run_dir(job, out_dir)
    check_node_paths(job, [str(run_dir)])
    plan = make_plan(job, run_dir, array=array)
    files = render_files(job, run_dir, plan=plan)
    files.update(extra_files or {})
    files[RunPaths(run_dir).manifest.name] = json.dumps(manifest(job, run_dir, command_line), indent=2) + "\n"
    write_atomically(run_dir, files, plan.create_dirs)
    return run_dir


def target_run_dir(job: Job, out_dir: str | Path | None) -> Path:
    """The run folder to write: -o DIR (absolute, not an existing file or a non-empty folder) or the default."""
    if not out_dir:
        return default_run_dir(job)
    run_dir = absolute_path(out_dir, "-o")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"-o {out_dir}: {run_dir} is a file, not a folder; give a new folder for the run")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} already exists and is not empty; choose another -o DIR")
    return run_dir


def write_atomically(run_dir: Path, files: dict[str, str], create_dirs: list[str] | None = None) -> None:
    """Write files into a temporary sibling folder, create the folders the job needs (output_dir, the cache),
    then rename it to run_dir: a failure anywhere leaves no run folder that looks complete."""
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {run_dir.parent}: {exc.strerror}; choose another -o DIR") from None
    tmp = run_dir.parent / f".{run_dir.name}.tmp-{os.getpid()}"
    try:
        for name, text in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        inside = RunPaths(tmp)
        inside.logs.mkdir(exist_ok=True)
        for script in (inside.job_script, inside.preprocess_script):
            if script.is_file():
                script.chmod(0o755)
        for folder in create_dirs or []:
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create {folder}: {exc.strerror}; choose a folder you can write") from None
        if run_dir.exists():
            run_dir.rmdir()  # empty (checked by the caller)
        tmp.rename(run_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"cannot write run directory {run_dir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
