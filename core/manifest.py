"""The run directory's manifest.json: what was rendered from what, and the job ids once submitted.
Read and updated by the launcher (submit, logs, status) and by the trainer (an elastic restart's count)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hpcft.core.errors import ConfigError
from hpcft.core.protocol import MANIFEST


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run folder's manifest.json as a mapping; anything else (missing, binary, a list) is one clear error."""
    path = run_dir / MANIFEST
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{run_dir} is not an hpcft run directory (no manifest.json); "
            "give a run directory written by `hpcft render`/`hpcft submit`, or a job id"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable manifest ({exc}); re-render the run") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not an hpcft manifest (a JSON {type(data).__name__}, not an object); re-render")
    for key, kinds, shape in _MANIFEST_FIELDS:
        value = data.get(key)
        bad = value is not None and not isinstance(value, kinds)
        if isinstance(value, list):
            bad = bad or not all(isinstance(item, dict) for item in value)
        if key == "sweep" and isinstance(value, dict):
            points = value.get("points")
            bad = not isinstance(points, list) or not all(isinstance(p, dict) for p in points)
        if bad:
            raise ConfigError(f"{path}: '{key}' must be {shape}, not {_shown(value)}; the manifest was edited or cut")
    return data


# The manifest's fields hpcft reads back (logs, status, plot, cancel, the trainer's attempts), and their shapes;
# job ids are checked where they are read (manifest_job_id), with the message Slurm arguments get.
_MANIFEST_FIELDS: list[tuple[str, type | tuple[type, ...], str]] = [
    ("job_name", str, "a name"),
    ("output_dir", str, "a folder"),
    ("run_dir", str, "a folder"),
    ("launch", dict, "a mapping"),
    ("preprocess", dict, "a mapping"),
    ("sweep", dict, "a mapping with a list of points"),
    ("attempts", list, "a list of mappings"),
]


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def update_manifest(run_dir: Path, **values: Any) -> dict[str, Any]:
    data = read_manifest(run_dir)
    data.update(values)
    tmp = run_dir / f".manifest.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(run_dir / MANIFEST)  # atomic: a reader sees the old or the new manifest
    return data
