"""Render a validated job into a self-contained run directory a person can read and `sbatch` by hand.

Rendering never shells out and writes atomically: everything is rendered in memory, written to a hidden
temporary folder next to the target, and renamed into place, so a failure leaves no half-written run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from hpcft.launcher import __version__
from hpcft.launcher.config import Job
from hpcft.launcher.deepspeed_config import default_preset, resolve_deepspeed
from hpcft.launcher.errors import ConfigError
from hpcft.launcher.mounts import unique_mounts
from hpcft.launcher.schema import TrainConfig

_ENV_REF_OR_CHAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*|.", re.S)
_HASH_LIMIT = 64 * 1024 * 1024  # hash input files up to this size; larger ones are recorded by size and mtime


def shell_env_value(value: str) -> str:
    """Double-quote a value so `$VAR`/`${VAR}` expand on the node but `$(...)`, backticks and `;` stay text."""
    out = []
    for token in _ENV_REF_OR_CHAR.findall(value):
        if token.startswith("$") and len(token) > 1:
            out.append(token)
        elif token in ('"', "\\", "`", "$"):
            out.append("\\" + token)
        else:
            out.append(token)
    return '"' + "".join(out) + '"'


def sbatch_value(value: Any) -> str:
    """A value on an #SBATCH line: Slurm reads these itself, quoting with double quotes."""
    text = str(value)
    if "\n" in text or '"' in text:
        raise ConfigError(f"{text!r} cannot be used as a Slurm option value (no newlines or double quotes)")
    return f'"{text}"' if re.search(r"[\s#'$`;&|<>()\\]", text) else text


def toml_str(value: Any) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)


def toml_key(key: str) -> str:
    # Dotted bare keys, as the CSCS docs write annotations (com.hooks.aws_ofi_nccl.enabled = "true").
    return key if re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", key) else toml_str(key)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FunctionLoader(_read_template), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    env.filters.update(q=lambda v: shlex.quote(str(v)), sbatch_value=sbatch_value, toml_str=toml_str,
                       toml_key=toml_key)
    return env


def _read_template(name: str) -> str:
    package, _, filename = name.partition("/")
    return (resources.files(f"hpcft.{package}") / filename).read_text()


def enroot_image(image: str) -> str:
    """enroot (pyxis, the CSCS EDF) separates registry and path with '#': nvcr.io/nvidia/x:1 -> nvcr.io#nvidia/x:1."""
    image = image.removeprefix("docker://")
    if image.startswith(("/", "./", "~")) or "#" in image:
        return image
    host, sep, rest = image.partition("/")
    if sep and ("." in host or ":" in host or host == "localhost"):
        return f"{host}#{rest}"
    return image


def _python_for(profile_python: str) -> str:
    return sys.executable if profile_python == "auto" else profile_python


def _file_fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    entry: dict[str, Any] = {"path": str(path), "bytes": stat.st_size}
    if stat.st_size <= _HASH_LIMIT:
        entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    else:
        entry["mtime"] = int(stat.st_mtime)
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


def container_invocation(job: Job, run_dir: Path, mounts: list[str]) -> tuple[list[str], list[str]]:
    """(extra srun arguments, words placed before `bash -c`) that run the step inside the profile's container."""
    profile, launch = job.profile, job.cfg.launch
    if profile.runtime == "edf":
        return [f"--environment={run_dir}/environment.toml"], []
    if profile.runtime == "pyxis":
        args = [f"--container-image={enroot_image(launch.image or '')}", f"--container-workdir={run_dir}"]
        if mounts:
            args.append("--container-mounts=" + ",".join(m if ":" in m else f"{m}:{m}" for m in mounts))
        env = _job_env(job)
        if env:
            # The image's ENV wins over the host's unless pyxis is told to pass the variable through.
            args.append("--container-env=" + ",".join(sorted(env)))
        return args, []
    if profile.runtime == "apptainer":
        words = ["apptainer", "exec", "--nv", *profile.apptainer_args]
        if mounts:
            words += ["--bind", ",".join(mounts)]
        words += ["--pwd", str(run_dir), launch.image or ""]
        return [], words
    return [], []


def _job_env(job: Job) -> dict[str, str]:
    return {**job.profile.env, **job.cfg.launch.env}


def render_files(job: Job, run_dir: Path, array: str | None = None, log_name: str = "slurm-%j") -> dict[str, str]:
    """Render every file of the run directory into memory: {relative name: text}."""
    cfg, profile, launch = job.cfg, job.profile, job.cfg.launch
    if profile.runtime != "none" and not launch.image:
        raise ConfigError(f"profile '{profile.name}' runs in a container ({profile.runtime}) but no image is set; "
                          "set launch.image in the config or the profile, or pass --image")
    world_size = launch.nodes * launch.nproc_per_node
    mounts = unique_mounts([*launch.mounts, str(run_dir), cfg.output_dir])
    env = _job_env(job)
    # Apptainer images' own ENV wins over the host's, so values go in as APPTAINERENV_ (see the profile doc).
    if profile.runtime == "edf":
        env_exports: list[tuple[str, str]] = []
    elif profile.runtime == "apptainer":
        env_exports = [(f"APPTAINERENV_{k}", shell_env_value(v)) for k, v in env.items()]
    else:
        env_exports = [(k, shell_env_value(v)) for k, v in env.items()]
    srun_args, exec_words = container_invocation(job, run_dir, mounts)
    context = {
        "version": __version__, "config_path": str(job.config_path), "profile": profile, "launch": launch,
        "run_dir": str(run_dir), "python": _python_for(profile.python), "env_exports": env_exports, "env": env,
        "container_srun_args": srun_args, "container_exec": exec_words, "array": array, "log_name": log_name,
        "image": enroot_image(launch.image or ""), "mounts": mounts,
        "secret_file": str(Path(profile.secret_file).expanduser()) if profile.secret_file else None,
    }
    # The preprocessing job's own resources, defaulting to the training job's partition and account.
    context["preprocess_options"] = [(key, value) for key, value in (
        ("partition", launch.preprocess_partition or launch.partition),
        ("account", launch.preprocess_account or launch.account),
        ("qos", launch.preprocess_qos), ("mem", launch.preprocess_mem)) if value]
    jenv = _environment()
    files = {"job.sbatch": jenv.get_template("templates/job.sbatch.j2").render(context),
             "preprocess.sbatch": jenv.get_template("templates/preprocess.sbatch.j2").render(context)}
    if profile.runtime == "edf":
        files["environment.toml"] = jenv.get_template("edf/environment.toml.j2").render(context)
    ds = resolve_deepspeed(cfg.deepspeed or default_preset(cfg), cfg, world_size)
    files["deepspeed.json"] = json.dumps(ds, indent=2) + "\n"
    files["train.yaml"] = train_yaml_text(cfg, run_dir / "deepspeed.json", job)
    return files


def train_yaml_text(cfg: TrainConfig, deepspeed_path: Path, job: Job) -> str:
    data = cfg.training_dict()
    data["deepspeed"] = str(deepspeed_path)
    header = (f"# Resolved by hpcft {__version__} from {job.config_path} (profile '{job.profile.name}').\n"
              "# This is what the trainer reads; edit the source config and re-render instead.\n")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


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
        "launch": job.cfg.launch.model_dump(mode="json", exclude={"env"}) | {"env_keys": sorted(_job_env(job))},
        "job_id": None,
    }


def default_run_dir(job: Job) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(job.cfg.launch.runs_dir).expanduser() / str(job.cfg.launch.job_name)
    run_dir = (base / stamp).resolve()
    n = 1
    while run_dir.exists():  # two renders in the same second
        n += 1
        run_dir = (base / f"{stamp}-{n}").resolve()
    return run_dir


def finalize_job_name(job: Job) -> None:
    if not job.cfg.launch.job_name:
        job.cfg.launch.job_name = job.config_path.stem


def render_run_dir(job: Job, out_dir: str | Path | None = None, command_line: list[str] | None = None,
                   extra_files: dict[str, str] | None = None, array: str | None = None,
                   log_name: str = "slurm-%j") -> Path:
    """Write the run directory for `job` and return its absolute path."""
    finalize_job_name(job)
    run_dir = Path(out_dir).expanduser().resolve() if out_dir else default_run_dir(job)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} already exists and is not empty; choose another -o DIR")
    files = render_files(job, run_dir, array=array, log_name=log_name)
    files.update(extra_files or {})
    files["manifest.json"] = json.dumps(manifest(job, run_dir, command_line), indent=2) + "\n"
    write_atomically(run_dir, files)
    return run_dir


def write_atomically(run_dir: Path, files: dict[str, str]) -> None:
    """Write files into a temporary sibling folder, then rename it to run_dir."""
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
        (tmp / "logs").mkdir(exist_ok=True)
        for script in ("job.sbatch", "preprocess.sbatch"):
            if (tmp / script).is_file():
                (tmp / script).chmod(0o755)
        if run_dir.exists():
            run_dir.rmdir()  # empty (checked by the caller)
        tmp.rename(run_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"cannot write run directory {run_dir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
