"""The MLflow keys on the login node: whether a config logs to MLflow, a tracking URI without credentials, and a
file store's folder (absolute, so the nodes write where the user reads). No mlflow import here.

Credentials reach the job through the environment only (MLFLOW_TRACKING_USERNAME/PASSWORD or
MLFLOW_TRACKING_TOKEN, in the profile's secret_env): a URI holding them would be written into train.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig

MLFLOW_SECRET_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def mlflow_enabled(cfg: TrainConfig) -> bool:
    """As axolotl: `use_mlflow: true` or an experiment name; `use_mlflow: false` wins. Beyond axolotl, a tracking
    URI alone switches it on too (axolotl would set the variable and log nowhere)."""
    if cfg.use_mlflow is False:
        return False
    return bool(cfg.use_mlflow or cfg.mlflow_tracking_uri or cfg.mlflow_experiment_name)


def check_mlflow_uri(uri: str | None) -> None:
    """Raise ValueError (one line, the key and the fix) for a tracking URI that carries credentials."""
    if not uri or is_file_store(uri):
        return
    parts = urlsplit(uri)
    if parts.username or parts.password or "token=" in parts.query.lower():
        shown = parts._replace(netloc=parts.hostname or "", query="").geturl()
        raise ValueError(
            f"mlflow_tracking_uri: credentials in the URI would be written into the run's files; set "
            f"mlflow_tracking_uri: {shown} and export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
            "MLFLOW_TRACKING_TOKEN) before submitting: the job receives them from your environment"
        )


def is_file_store(uri: str) -> bool:
    """A folder rather than a server: `file:...` or a plain path (MLflow reads a path as a file store too)."""
    if uri.startswith("file:"):
        return True
    # `databricks` and `databricks://profile` are MLflow's names for a Databricks workspace, not folders.
    return "://" not in uri and not uri.startswith("databricks") and ":" not in uri.split("/")[0]


def file_store_path(uri: str | None) -> Path | None:
    """The folder of a file store, or None for a server."""
    if not uri or not is_file_store(uri):
        return None
    if uri.startswith("file:"):
        rest = uri[len("file:") :]
        # file:///abs, file:/abs and file:relative all name a folder; a host part (file://host/) is not supported.
        rest = rest[2:] if rest.startswith("//") else rest
        return Path(rest)
    return Path(uri)


def absolute_tracking_uri(uri: str, base: Path) -> str:
    """A file store's folder taken from the config file's folder (the job runs elsewhere); servers unchanged."""
    path = file_store_path(uri)
    if path is None:
        return uri
    folder = Path(os.path.expandvars(str(path))).expanduser()
    return "file://" + str(folder if folder.is_absolute() else (base / folder).resolve())
