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
    path = run_dir / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{run_dir} is not an hpcft run directory (no manifest.json); "
            "give a run directory written by `hpcft render`/`hpcft submit`, or a job id"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: unreadable manifest ({exc}); re-render the run") from None


def update_manifest(run_dir: Path, **values: Any) -> dict[str, Any]:
    data = read_manifest(run_dir)
    data.update(values)
    tmp = run_dir / f".manifest.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(run_dir / MANIFEST)  # atomic: a reader sees the old or the new manifest
    return data
