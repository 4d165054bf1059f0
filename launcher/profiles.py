"""Cluster profiles: what differs between clusters (runtime, partitions, GPUs, network env, mounts).

Shipped profiles live in `cluster_profiles/`; users add or override them in `$HPCFT_PROFILE_PATH`
(colon-separated folders) or `~/.config/hpcft/profiles/`. A profile may `extends:` another one.
"""

from __future__ import annotations

import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpcft.core.errors import ConfigError
from hpcft.core.features.mlflow_tracking import MLFLOW_SECRET_ENV
from hpcft.core.quoting import MAX_RDZV_PORT_BASE, check_env_name
from hpcft.core.schema import LaunchConfig
from hpcft.core.validation import as_list, format_validation_error
from hpcft.launcher.mounts import unique_mounts
from hpcft.launcher.secret_values import env_secret_problem, setup_secret_problem

DEFAULT_SECRET_ENV = [
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "WANDB_API_KEY",
    "SWANLAB_API_KEY",
    *MLFLOW_SECRET_ENV,
]


class EdfOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    writable: bool = True
    annotations: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None


class Profile(BaseModel):
    """A merged cluster profile."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    runtime: Literal["none", "edf", "pyxis", "apptainer"] = "none"
    # The Python that runs torchrun on the nodes. "auto" means the interpreter running hpcft (local clusters).
    python: str = "python"
    gres: bool = True  # request GPUs with --gres=gpu:N (else --gpus-per-node=N)
    launch: dict[str, Any] = Field(default_factory=dict)
    """Defaults for the config's `launch:` keys (checked against the same schema when the profile is loaded)."""
    env: dict[str, str] = Field(default_factory=dict)
    edf: EdfOptions = Field(default_factory=EdfOptions)
    apptainer_args: list[str] = Field(default_factory=list)
    secret_env: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_ENV))
    """Variables passed to the job from your environment, never written; always includes DEFAULT_SECRET_ENV."""
    secret_file: str | None = None  # a 0600 file of KEY=VALUE lines, sourced on the node, never copied
    setup: list[str] = Field(default_factory=list)  # shell lines run before srun (e.g. module load)
    rdzv_port_base: int = Field(29500, ge=1024, le=MAX_RDZV_PORT_BASE)
    """First rendezvous port: job.sbatch adds the job id modulo 10000, so at most 55536 (ports end at 65535)."""
    # What `hpcft plan` and `hpcft doctor` compare against (all optional).
    gpu_name: str | None = None
    gpu_memory_gib: float | None = Field(None, gt=0)
    """Memory of one GPU (GH200 96, H100 80, A100 40 or 80): `hpcft plan` checks the job fits in it."""
    node_memory_gib: float | None = Field(None, gt=0)
    """CPU memory of one node that a job may use (for offloaded optimizer states)."""
    tokens_per_s_per_gpu: dict[float, float] = Field(default_factory=dict)
    """Training tokens/s per GPU by model size in billions of parameters (full fine-tuning, bf16, no gradient
    checkpointing); `hpcft plan` interpolates between entries for its time estimate."""
    allreduce_busbw_gbs: float | None = Field(None, gt=0)
    """Expected all-reduce bus bandwidth across nodes at large messages, GB/s: `hpcft doctor` flags slower nodes."""
    node_paths: list[str] | None = None
    """File systems the compute nodes see (e.g. [/capstor, /iopsstor, /users]); every path the job reads or
    writes must lie on one. None: not checked."""
    node_local_paths: list[str] = Field(default_factory=lambda: ["/tmp", "/dev/shm"])
    """File systems each node has its own copy of: a job path there gets a warning."""
    drop_mounts: list[str] = Field(default_factory=list)
    """Mounts inherited through `extends:` that this profile removes (e.g. [/users])."""
    cache_dir: str | None = None
    """A folder on a shared file system for the Hugging Face cache (`~` and `$VARS` expand on the login node):
    created, mounted into the container and used as HF_HOME unless `env` sets HF_HOME."""

    @field_validator("launch")
    @classmethod
    def _launch_keys_are_launch_options(cls, launch: dict[str, Any]) -> dict[str, Any]:
        # Checked here so that a typo is blamed on the profile, not on the user's config.
        for key in ("mounts", "sbatch_args", "srun_args"):
            if key in launch:
                launch[key] = as_list(launch[key], f"launch.{key}")
        unknown = sorted(set(launch) - set(LaunchConfig.model_fields))
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(LaunchConfig.model_fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown key 'launch.{unknown[0]}'{hint}")
        try:
            LaunchConfig.model_validate(launch)
        except ValidationError as exc:
            raise ValueError(format_validation_error(exc, "launch").removeprefix("launch: ")) from None
        return launch

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            check_env_name(name)  # the same rule as launch.env's names: one function
        return env

    @model_validator(mode="after")
    def _no_secret_values(self) -> Profile:
        # The profile's env is written into job.sbatch and the EDF, its setup lines into job.sbatch.
        for name in self.env:
            problem = env_secret_problem(name, self.secret_env)
            if problem:
                raise ValueError(f"env.{name}: {problem}")
        for line in self.setup:
            problem = setup_secret_problem(line, self.secret_env)
            if problem:
                raise ValueError(f"setup: {problem}")
        return self

    @field_validator("secret_env")
    @classmethod
    def _always_the_default_secrets(cls, names: list[str]) -> list[str]:
        # A profile adds its site's token names; it cannot drop HF_TOKEN & co. from the protected set by accident.
        return list(dict.fromkeys([*DEFAULT_SECRET_ENV, *names]))


def profile_dirs() -> list[Path]:
    """User folders first (they override shipped profiles), in the order they are searched."""
    dirs = [Path(p).expanduser() for p in os.environ.get("HPCFT_PROFILE_PATH", "").split(os.pathsep) if p]
    config_home = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    dirs.append(config_home / "hpcft" / "profiles")
    return dirs


def _shipped() -> dict[str, Any]:
    root = resources.files("hpcft.cluster_profiles")
    return {p.name[: -len(".yaml")]: p for p in root.iterdir() if p.name.endswith(".yaml")}


def available_profiles() -> dict[str, str]:
    """Profile name -> where it comes from (the first match wins)."""
    found: dict[str, str] = {}
    for folder in profile_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found.setdefault(path.stem, str(path))
    for name, res in sorted(_shipped().items()):
        found.setdefault(name, f"(shipped) {res}")
    return found


def _read_raw(name: str) -> tuple[dict[str, Any], str]:
    for folder in profile_dirs():
        path = folder / f"{name}.yaml"
        if path.is_file():
            return _parse_yaml(_read_text(path), str(path)), str(path)
        if path.exists() or path.is_symlink():
            raise ConfigError(
                f"{path} is {'a folder' if path.is_dir() else 'not a readable file'}, not a profile; "
                f"make it a YAML file or remove it (profile '{name}' is looked up there first)"
            )
    shipped = _shipped()
    if name in shipped:
        return _parse_yaml(shipped[name].read_text(), f"cluster_profiles/{name}.yaml"), name
    known = ", ".join(sorted(available_profiles()))
    raise ConfigError(
        f"unknown profile '{name}'; known profiles: {known}. Add your own as ~/.config/hpcft/profiles/{name}.yaml"
    )


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a profile must be a YAML mapping of keys to values")
    _keys_are_names(data, where, "")
    return data


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the profile ({getattr(exc, 'strerror', None) or exc})") from None


def _keys_are_names(data: Any, where: str, inside: str) -> None:
    """`~: x` or `1: x` in a profile: YAML reads the key as null or a number, which no profile key is."""
    if isinstance(data, dict):
        for key, value in data.items():
            # Numbers are keys of tokens_per_s_per_gpu; null (`~`) and top-level non-names are no profile's keys.
            if key is None or (not inside and not isinstance(key, str)):
                place = f" (in '{inside}')" if inside else ""
                raise ConfigError(f"{where}: {key!r}{place} is not a key name; quote it if it is meant as text")
            _keys_are_names(value, where, f"{inside}.{key}" if inside else str(key))
    elif isinstance(data, list):
        for item in data:
            _keys_are_names(item, where, inside)


def load_profile(name: str) -> Profile:
    """Read a profile, apply its `extends:` chain, and validate the merged result."""
    chain: list[dict[str, Any]] = []
    seen: list[str] = []
    current: str | None = name
    while current is not None:
        if current in seen:
            raise ConfigError(f"profile '{name}': extends loop {' -> '.join(seen + [current])}")
        seen.append(current)
        raw, _ = _read_raw(current)
        chain.append(raw)
        parent = raw.get("extends")
        # A user profile may extend the shipped profile of the same name (override one key of `cscs`).
        if parent == current:
            shipped = _shipped()
            if current not in shipped:
                raise ConfigError(f"profile '{current}' extends itself but no shipped profile has that name")
            chain.append(_parse_yaml(shipped[current].read_text(), current))
            parent = chain[-1].get("extends")
        current = parent
    data: dict[str, Any] = {}
    for layer in reversed(chain):
        data = merge_mappings(data, layer)
    # Lists replace each other in a merge, but a profile that extends another adds mounts, it does not drop them.
    mounts = [m for c in reversed(chain) for m in _as_mount_list((c.get("launch") or {}).get("mounts"))]
    dropped = {d.rstrip("/") for d in data.get("drop_mounts") or []}
    mounts = [m for m in mounts if m.rstrip("/") not in dropped and m.split(":")[0].rstrip("/") not in dropped]
    if mounts or dropped:
        data.setdefault("launch", {})["mounts"] = unique_mounts(mounts)
    data.pop("extends", None)
    data["name"] = name
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"profile '{name}'")) from None


def merge_mappings(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """OmegaConf.merge's rule for plain YAML data: mappings merge key by key, anything else (lists too) is
    replaced; interpolations stay as written. Kept here so that loading a profile does not import OmegaConf."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_mappings(merged[key], value)
        else:
            merged[key] = value
    return merged


def _as_mount_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def profile_as_yaml(profile: Profile) -> str:
    return yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False)
