"""What may reach a shell (job.sbatch), an #SBATCH line, a TOML file (the EDF) or a Slurm command line: the one
place that quotes values and validates names, job ids and ports before anything is written or run."""

from __future__ import annotations

import json
import re
from typing import Any

from hpcft.core.errors import ConfigError

_ENV_REF_OR_CHAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*|.", re.S)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A Slurm job id as hpcft stores and passes it: 1234, or 1234_5 for one task of a job array.
JOB_ID = re.compile(r"[0-9]{1,12}(_[0-9]{1,9})?")
MAX_PORT = 65535
# job.sbatch derives the rendezvous port from the job id: rdzv_port_base + SLURM_JOB_ID % RDZV_PORT_SPREAD.
RDZV_PORT_SPREAD = 10000
MAX_RDZV_PORT_BASE = MAX_PORT - (RDZV_PORT_SPREAD - 1)


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


def comment_text(value: Any) -> str:
    """Text inside a `#` comment of a script or YAML/TOML file: one line whatever it holds. A file name with a
    newline would otherwise end the comment, and the next line would run (and sbatch stops reading #SBATCH)."""
    text = str(value)
    if re.search(r"[\x00-\x1f\x7f]", text):
        return json.dumps(text, ensure_ascii=False)  # escaped, visibly: "two\nlines"
    return text


def check_env_name(name: Any) -> str:
    """An environment variable name as `export NAME=...`, an EDF [env] key and APPTAINERENV_NAME all need it:
    the same rule for the config's launch.env and a profile's env."""
    if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
        raise ValueError(
            f"{str(name)!r} is not a valid environment variable name (letters, digits and _, not starting with a digit)"
        )
    return name


def check_job_id(value: Any, where: str) -> str:
    """A job id read from a manifest, the submissions index or the command line, before it reaches scancel,
    squeue, sacct or scontrol: digits, or digits_digits for an array task. Anything else (`--me`, `-u x`, `1,2`)
    would be read by Slurm as options or a list, so it is refused here, in one place."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not JOB_ID.fullmatch(text):
        raise ConfigError(
            f"{where}: {_short(value)} is not a Slurm job id (digits, or 123_4 for an array task); "
            "nothing was sent to Slurm"
        )
    return text


def check_path_component(value: str, what: str) -> str:
    """A name that becomes one folder (launch.job_name under runs_dir): no separators, not `.` or `..`."""
    if "/" in value or value.strip() in (".", "..") or "\x00" in value:
        raise ValueError(f"{value!r} cannot be {what}: it names a folder under runs_dir, so no '/', '.' or '..'")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
