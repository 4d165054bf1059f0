"""What is inside a local image file: is hpcft (and what its trainer imports) installed in it? Read from the file
listing of the image's squashfs (`unsquashfs -l`), for .sqsh files and the squashfs partition of a .sif, so that
an image without hpcft (the tutorial's axolotl.sqsh) is refused before a job dies with `No module named hpcft`."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_SQUASHFS_MAGIC = b"hsqs"
# What `python -m hpcft.trainer` imports on the nodes (as folder names in site-packages).
TRAINER_PACKAGES = ("torch", "transformers", "peft", "accelerate", "deepspeed", "datasets")
_SITE = r"/(?:site|dist)-packages/"
_HPCFT_DIST = re.compile(_SITE + r"hpcft-([^/]+)\.dist-info/?$")
_SIF_SCAN_LIMIT = 256 * 1024 * 1024  # a SIF's squashfs partition starts after its header and small partitions


@dataclass
class ImageContents:
    """What the listing shows; `unknown` says why nothing could be told (then the other fields are empty)."""

    hpcft_version: str | None = None  # from hpcft-<version>.dist-info; "" when installed without metadata
    missing: list[str] = field(default_factory=list)  # trainer packages not found
    unknown: str | None = None


def squashfs_offset(path: Path) -> int | None:
    """Where the squashfs starts: 0 for a .sqsh, inside a SIF after its header (4 KiB-aligned); None if none."""
    with path.open("rb") as handle:
        if handle.read(4) == _SQUASHFS_MAGIC:
            return 0
        offset = 4096
        while offset < _SIF_SCAN_LIMIT:
            handle.seek(offset)
            head = handle.read(4)
            if not head:
                return None
            if head == _SQUASHFS_MAGIC:
                return offset
            offset += 4096
    return None


def list_files(path: Path) -> tuple[list[str], str | None]:
    """The paths inside the image's squashfs, or ([], why not)."""
    if shutil.which("unsquashfs") is None:
        return [], "unsquashfs is not installed (Debian/Ubuntu: apt-get install squashfs-tools)"
    offset = squashfs_offset(path)
    if offset is None:
        return [], "no squashfs file system found in it"
    argv = ["unsquashfs", "-l", "-no-progress", *(["-o", str(offset)] if offset else []), str(path)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return [], "unsquashfs did not list it within 300 s"
    if done.returncode != 0:
        return [], f"unsquashfs could not read it ({(done.stderr or done.stdout).strip().splitlines()[-1:]})"
    return done.stdout.splitlines(), None


def inspect_image(path: Path) -> ImageContents:
    files, why_not = list_files(path)
    if why_not:
        return ImageContents(unknown=why_not)
    version = None
    has_trainer = False
    packages: set[str] = set()
    for line in files:
        match = _HPCFT_DIST.search(line)
        if match:
            version = match.group(1)
        # hpcft is a namespace package: its trainer module is what the nodes run (an editable install, whose
        # code lives outside the image, has the metadata but not this file).
        if re.search(_SITE + r"hpcft/trainer/__init__\.py$", line):
            has_trainer = True
        found = re.search(_SITE + r"([A-Za-z0-9_]+)/__init__\.py$", line)
        if found:
            packages.add(found.group(1))
    return ImageContents(
        hpcft_version=(version or "") if has_trainer else None,
        missing=[p for p in TRAINER_PACKAGES if p not in packages],
    )
