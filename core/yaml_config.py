"""Reading a YAML training config safely (size, depth and key checks before anything walks it), resolving its
interpolations (`${oc.env:SCRATCH}`, `$USER`), and the node's loader of a resolved train.yaml.

torch-free and launcher-free: the trainer reads train.yaml through load_train_yaml without loading any job code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from hpcft.core.errors import ConfigError
from hpcft.core.interpolation_size import check_interpolation_size
from hpcft.core.schema import TrainConfig
from hpcft.core.validation import check_keys, format_validation_error

if TYPE_CHECKING:
    from omegaconf.errors import OmegaConfBaseException

_ENV_REF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")

# A training config is a few KB; anything near these limits is a data file passed by mistake, or a YAML alias
# bomb whose expansion would exhaust memory.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_CONFIG_VALUES = 200_000
MAX_CONFIG_DEPTH = 50


def read_yaml_config(path: Path) -> dict[str, Any]:
    """Read the YAML file with OmegaConf (interpolations stay unresolved here)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {size / 2**20:.1f} MiB is too large for a training config (the limit is "
                f"{MAX_CONFIG_BYTES // 2**20} MiB); is this a data file? Put data under datasets: path:"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror}); check the file's permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save the config as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, even for PyYAML's
        raise ConfigError(f"{path}{line}: invalid YAML ({problem}); fix the syntax") from None
    except RecursionError:
        raise ConfigError(
            f"{path}: nested too deeply to be a training config (at most {MAX_CONFIG_DEPTH} levels)"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping of keys to values")
    _check_structure(data, path)
    return data


def _check_structure(data: Any, path: Path) -> None:
    """Refuse what no training config contains before anything walks it recursively: huge or deeply nested
    structures (YAML aliases share objects, so a few lines can describe billions of values: every visit counts)
    and keys that are not names (`1: 2`)."""
    budget = MAX_CONFIG_VALUES
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError(
                f"{path}: expands to more than {MAX_CONFIG_VALUES} values (YAML aliases repeated "
                "many times?); a training config is much smaller, write it out plainly"
            )
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{path}: nested too deeply to be a training config (at most {MAX_CONFIG_DEPTH} levels)")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    inside = f" (in '{where}')" if where else ""
                    raise ConfigError(
                        f"{path}: {key!r}{inside} is not a key name; config keys are names like "
                        "learning_rate (quote it if it is meant as text)"
                    )
                stack.append((item, depth + 1, f"{where}.{key}" if where else key))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))


def resolve_interpolations(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Resolve `${oc.env:SCRATCH}`-style interpolations, then shell-style `$USER` references in strings."""
    if not _has_interpolation(data):
        return _expand_env(data, where, "")  # OmegaConf (a tenth of a command's start-up) is not needed
    check_interpolation_size(data, where)  # a 1 KB string-interpolation bomb would expand to 100s of MB
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        resolved = OmegaConf.to_container(OmegaConf.create(data), resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{where}: {omegaconf_problem(exc)}") from None
    return _expand_env(resolved, where, "")


def _has_interpolation(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_interpolation(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_interpolation(v) for v in value)
    return isinstance(value, str) and "${" in value


def omegaconf_problem(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", "") or ""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"key '{key}': {first}" if key else first


def _expand_env(value: Any, where: str, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, where, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "$" in value:

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(
                    f"{where}: key '{key}': environment variable ${name} is not set; export it or write the path out"
                )
            return os.environ[name]

        return _ENV_REF.sub(sub, value)
    return value


def load_train_yaml(path: str | Path, strict: bool = False, warnings: list[str] | None = None) -> TrainConfig:
    """Read a rendered train.yaml on the node (already resolved: no profile, no interpolation left).

    warnings: where the key warnings go (`hpcft validate` without a profile prints them)."""
    path = Path(path)
    data = read_yaml_config(path)
    data = resolve_interpolations(data, str(path))
    try:
        found = check_keys(data, str(path), strict=strict)
        if warnings is not None:
            warnings.extend(found)
        return TrainConfig.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        if isinstance(exc, ValidationError):
            raise ConfigError(format_validation_error(exc, str(path))) from None
        raise ConfigError(str(exc)) from None
