"""Turn raw config mappings and pydantic errors into one clear line each: the key, what is wrong, how to fix."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from hpcft.launcher.errors import ConfigError
from hpcft.launcher.schema import (
    PLUGINS_WITHOUT_EFFECT,
    UNSUPPORTED_AXOLOTL_KEYS,
    UNSUPPORTED_DATASET_KEYS,
    WARN_ONLY_KEYS,
    DatasetConfig,
    LaunchConfig,
    TrainConfig,
)


def _known_keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        if field.alias:
            keys.add(field.alias)
    return keys


def _is_unset(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {} or value == ""


def _suggest(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def check_keys(raw: dict[str, Any], where: str) -> list[str]:
    """Check every key of a raw training config; return warnings, raise ValueError on the first bad key."""
    warnings: list[str] = []
    _check_mapping(raw, _known_keys(TrainConfig), UNSUPPORTED_AXOLOTL_KEYS, where, "", warnings)
    for list_key in ("datasets", "test_datasets"):
        entries = raw.get(list_key)
        if isinstance(entries, list):
            for i, entry in enumerate(entries):
                if isinstance(entry, dict):
                    _check_mapping(entry, _known_keys(DatasetConfig), UNSUPPORTED_DATASET_KEYS, where,
                                   f"{list_key}[{i}].", warnings)
    for plugin in raw.get("plugins") or []:
        if plugin in PLUGINS_WITHOUT_EFFECT:
            warnings.append(f"{where}: plugin '{plugin}' has no effect in hpcft ({PLUGINS_WITHOUT_EFFECT[plugin]})")
    if isinstance(raw.get("launch"), dict):
        _check_mapping(raw["launch"], _known_keys(LaunchConfig), set(), where, "launch.", warnings)
    return warnings


def _check_mapping(raw: dict[str, Any], known: set[str], unsupported: set[str], where: str, prefix: str,
                   warnings: list[str]) -> None:
    for key in list(raw):
        if key in known:
            continue
        value = raw[key]
        if key in unsupported:
            if _is_unset(value):
                del raw[key]
                continue
            raise ValueError(f"{where}: '{prefix}{key}' is an axolotl option that hpcft does not support yet; "
                             "remove it (or set it to null)")
        if not prefix and key in WARN_ONLY_KEYS:
            if not _is_unset(value):
                warnings.append(f"{where}: '{key}' has no effect in hpcft ({WARN_ONLY_KEYS[key]})")
            del raw[key]
            continue
        raise ValueError(f"{where}: unknown key '{prefix}{key}'{_suggest(key, known)}")


def as_list(value: Any, key: str) -> list[Any]:
    """A list option given as one string (`mounts: /data`) is a one-element list, not its characters."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"key '{key}' must be a list (e.g. [{value!r}]), not {type(value).__name__}")


def format_validation_error(exc: ValidationError, where: str) -> str:
    """The first pydantic error as one line naming the key."""
    err = exc.errors()[0]
    loc = ""
    for part in err["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if err["type"] == "missing":
        return f"{where}: required key '{loc}' is missing"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key '{loc}'"
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) or not loc else f" (got {value!r})"
    key = f"key '{loc}': " if loc else ""
    return f"{where}: {key}{msg}{shown}"
