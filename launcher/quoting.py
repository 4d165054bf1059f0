"""Quoting values for the files hpcft writes: the shell (job.sbatch), #SBATCH lines and TOML (the EDF)."""

from __future__ import annotations

import json
import re
from typing import Any

from hpcft.core.errors import ConfigError

_ENV_REF_OR_CHAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*|.", re.S)


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
