"""Which container image this process runs in, from the files the image carries (/etc/hpcft-image, written by
containers/install-hpcft.sh, and /etc/os-release): logged by each node at start, so a job's log shows where it
ran. None on a bare host or in an image built some other way."""

from __future__ import annotations

import os
import socket
from pathlib import Path

MARKER = Path("/etc/hpcft-image")
OS_RELEASE = Path("/etc/os-release")


def _key_values(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip().strip('"') for key, value in pairs}


def describe_image() -> str | None:
    """`image <id> (<os>, built <when>)`, or None when no hpcft image marker is here."""
    marker = _key_values(MARKER)
    if not marker.get("HPCFT_IMAGE_ID"):
        return None
    system = _key_values(OS_RELEASE).get("PRETTY_NAME", "unknown OS")
    return f"image {marker['HPCFT_IMAGE_ID']} ({system}, built {marker.get('HPCFT_IMAGE_BUILT', '?')})"


def log_image() -> None:
    """One line per node (its first local rank): where this node's processes run."""
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return
    where = describe_image() or "no hpcft image (bare host or another image)"
    print(f"hpcft: {socket.gethostname()} runs in {where}", flush=True)
