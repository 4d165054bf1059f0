"""The one rule for secrets: a secret never reaches a file. hpcft passes HF_TOKEN & co. from the submitting shell's
environment to the job by name (Slurm exports the environment; Apptainer by APPTAINERENV_NAME), so a value for a
secret written anywhere in a config or a profile (a launch.env or profile env entry, a key, --set, an
interpolation of the variable) would only end up in clear in job.sbatch, the EDF or train.yaml: it is refused."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

from hpcft.core.errors import ConfigError

# Names every profile protects (profiles.py adds its `secret_env`), and others whose meaning is plain.
WELL_KNOWN_SECRETS = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "WANDB_API_KEY",
    "SWANLAB_API_KEY",
    "COMET_API_KEY",
    "NEPTUNE_API_TOKEN",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "OPENAI_API_KEY",
    "GITHUB_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
_SECRET_LIKE = re.compile(r"(?:^|_)(?:TOKEN|KEY|SECRET|PASSWORD|PASSWD)$", re.IGNORECASE)
# A secret shorter than this could match ordinary text ("1", "true") by accident.
MIN_SECRET_CHARS = 8


def is_secret_name(name: str, extra: Iterable[str] = ()) -> bool:
    """An environment variable name that holds a secret: a well-known one, the profile's, or *_TOKEN/*_KEY/..."""
    upper = name.upper()
    return upper in WELL_KNOWN_SECRETS or name in set(extra) or bool(_SECRET_LIKE.search(upper))


def export_instead(name: str, lead: str = "") -> str:
    return (
        f"{lead or f'{name} is a secret'}: written here it would be copied in clear into the run folder's files. "
        f"Remove it and `export {name}=...` in the shell you submit from (the job receives it from your environment)"
    )


def env_secret_problem(name: str, extra: Iterable[str] = ()) -> str | None:
    """For an entry of launch.env or a profile's env: why it may not be there, or None."""
    return export_instead(name) if is_secret_name(name, extra) else None


def refuse_secrets(parts: list[tuple[Any, str]], secret_env: Iterable[str] = ()) -> None:
    """Refuse, with one line naming the key, a config or profile (`parts`: (data, where it comes from)) that holds
    a secret: an env entry or a key named like one, or the value of a secret variable of this environment
    (`${oc.env:HF_TOKEN}`, `$HF_TOKEN`, pasted)."""
    names = list(secret_env)
    known = {name.upper() for name in (*WELL_KNOWN_SECRETS, *names)}
    values = _environment_secrets(names)
    for data, where in parts:
        for key, name, value in _leaves(data, ""):
            in_env_map = ".env." in f".{key}" or key.startswith("env.")
            if (
                name
                and value not in (None, "", False)
                and ((in_env_map and is_secret_name(name, names)) or name.upper() in known)
            ):
                raise ConfigError(f"{where}: key '{key}': {export_instead(name.upper())}")
            if isinstance(value, str):
                for secret_name, secret in values.items():
                    if secret in value:
                        lead = f"it contains the value of the secret ${secret_name}"
                        raise ConfigError(f"{where}: key '{key}': {export_instead(secret_name, lead)}")


_SETUP_ASSIGNMENT = re.compile(r"(?:^|[\s;&|(])(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(?![\"']?\$)")


def setup_secret_problem(line: str, extra: Iterable[str] = ()) -> str | None:
    """A profile `setup:` line that assigns a secret a literal value (`export HF_TOKEN=hf_...`); `X=$Y` is fine."""
    for match in _SETUP_ASSIGNMENT.finditer(line):
        if is_secret_name(match.group(1), extra):
            return export_instead(match.group(1))
    return None


def _environment_secrets(names: list[str]) -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if len(value) >= MIN_SECRET_CHARS and is_secret_name(name, names)
    }


def _leaves(data: Any, key: str) -> Iterator[tuple[str, str | None, Any]]:
    """(dotted key, last key name, value) of every value, mappings and lists included (their keys too)."""
    if isinstance(data, dict):
        for k, v in data.items():
            path = f"{key}.{k}" if key else str(k)
            yield path, str(k), v
            yield from _leaves(v, path)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield f"{key}[{i}]", None, v
            yield from _leaves(v, f"{key}[{i}]")
