"""`hpcft image build --local`: the CPU training image for the local test cluster, built without a registry by
containers/build-local-image.sh (debootstrap + the same install-hpcft.sh steps as containers/Dockerfile), cached
by the content of what goes into it so that a second build costs seconds."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hpcft.core.errors import ConfigError
from hpcft.launcher.runtimes.image import INSTALL_SCRIPT, Checkout, build_arg_name

BUILD_SCRIPT = Path("containers/build-local-image.sh")
CACHE_ENV = Path("containers/cache-env.sh")
# What the Dockerfile copies into the image (and so what the image's hash covers).
SOURCE_PATHS = (
    "pyproject.toml",
    "README.md",
    "core",
    "launcher",
    "trainer",
    "templates",
    "cluster_profiles",
    "edf",
    "configs",
)
DEFAULT_CACHE = "/var/tmp/hpcft-images"
LATEST_NAME = "hpcft-local.sqsh"
# A CPU image: no gpu extra; the op the CPU jobs use (DeepSpeed's shared-memory all-reduce) compiled in, not at
# first use. CPU Adam stays out: the local configs use torch's AdamW.
CPU_BUILD_ENV = {
    "HPCFT_EXTRAS": "train",
    "DS_ACCELERATOR": "cpu",
    "DS_BUILD_SHM_COMM": "1",
    "DS_BUILD_CPU_ADAM": "0",
    "MAX_JOBS": "2",
}


def cache_dir() -> Path:
    return Path(os.environ.get("HPCFT_IMAGE_CACHE", DEFAULT_CACHE))


def find_torch_wheel(version: str) -> Path:
    """The local CPU torch wheel for the image's Python (Debian 12: 3.11): $HPCFT_TORCH_WHEEL or pip's find-links."""
    named = os.environ.get("HPCFT_TORCH_WHEEL")
    if named:
        if not Path(named).is_file():
            raise ConfigError(f"HPCFT_TORCH_WHEEL={named} is not a file")
        return Path(named)
    folders = os.environ.get("PIP_FIND_LINKS", "").split() + ["/opt/wheels"]
    for folder in folders:
        found = sorted(Path(folder).glob(f"torch-{version}+cpu-cp311-cp311-*x86_64.whl"))
        if found:
            return found[-1]
    raise ConfigError(
        f"no CPU torch {version} wheel for Python 3.11 in {', '.join(folders)}; the local image installs torch "
        "from a wheel on disk (PyPI's is the CUDA build): set HPCFT_TORCH_WHEEL=/path/torch-...-cp311-...whl"
    )


def build_env(checkout: Checkout, wheel: Path) -> dict[str, str]:
    """What build-local-image.sh passes to install-hpcft.sh: the Dockerfile's version ARGs, the CPU switches."""
    versions = {"HPCFT_VERSION": checkout.version, **{build_arg_name(n): v for n, v in checkout.pins.items()}}
    return {**versions, **CPU_BUILD_ENV, "TORCH_WHEEL": str(wheel)}


def _hash_files(digest, root: Path, relative: str) -> None:
    path = root / relative
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if "__pycache__" in file.parts:
            continue
        digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")


# build-local-image.sh's image stage starts here: editing it rebuilds the image, not the dependencies.
IMAGE_STAGE_START = "cmd_image() {"


def deps_key(checkout: Checkout, env: dict[str, str]) -> str:
    """The dependency stage: install-hpcft.sh, build-local-image.sh's dependency part, the versions and switches,
    the torch wheel."""
    digest = hashlib.sha256()
    _hash_files(digest, checkout.root, str(INSTALL_SCRIPT))
    digest.update((checkout.root / BUILD_SCRIPT).read_text().split(IMAGE_STAGE_START)[0].encode())
    for name, value in sorted(env.items()):
        digest.update(f"{name}={Path(value).name if name == 'TORCH_WHEEL' else value}\n".encode())
    return digest.hexdigest()[:16]


def image_key(checkout: Checkout, deps: str) -> str:
    """The image: its dependency stage plus every file the recipe copies in."""
    digest = hashlib.sha256(deps.encode())
    for relative in (str(BUILD_SCRIPT), str(CACHE_ENV), *SOURCE_PATHS):
        _hash_files(digest, checkout.root, relative)
    return digest.hexdigest()[:16]


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    print(f"+ {' '.join(argv)}", file=sys.stderr, flush=True)
    code = subprocess.run(argv, env={**os.environ, **env}).returncode
    if code != 0:
        raise ConfigError(f"{what} failed (exit {code}); its output is above")


def _prune(folder: Path, keep: Path) -> None:
    """Older builds next to `keep` (its name up to the key, and what shares that key): a cache keyed by content
    grows with every change otherwise."""
    prefix, key = keep.name.split("-")[0], keep.name.rsplit("-", 1)[1].split(".")[0]
    for old in folder.glob(f"{prefix}-*"):
        if key not in old.name and old.name != LATEST_NAME:
            shutil.rmtree(old) if old.is_dir() else old.unlink()


def build_local_image(checkout: Checkout, output: Path | None = None) -> Path:
    """Build (or find in the cache) the local CPU image; returns the .sqsh, also linked as hpcft-local.sqsh."""
    if shutil.which("debootstrap") is None or shutil.which("mksquashfs") is None:
        raise ConfigError(
            "the local image needs debootstrap and mksquashfs: apt-get install debootstrap squashfs-tools "
            "(scripts/local-container-runtime.sh up installs them)"
        )
    if os.geteuid() != 0:
        raise ConfigError("the local image is built as root (debootstrap, chroot and mount need it)")
    env = build_env(checkout, find_torch_wheel(checkout.pins["torch"]))
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    script = str(checkout.root / BUILD_SCRIPT)
    deps = deps_key(checkout, env)
    deps_dir = cache / f"deps-{deps}"
    started = time.monotonic()
    if not (cache / f"deps-{deps}.done").is_file():
        _run([script, "deps", str(deps_dir)], env, "building the image's dependency stage")
        (cache / f"deps-{deps}.done").write_text(f"{time.monotonic() - started:.0f} s\n")
        _prune(cache, deps_dir)
    image = cache / f"hpcft-local-{image_key(checkout, deps)}.sqsh"
    if image.is_file():
        print(f"hpcft: {image} is up to date (cached by content)", file=sys.stderr)
    else:
        env["HPCFT_IMAGE_ID"] = image.stem.removeprefix("hpcft-local-")
        _run([script, "image", str(deps_dir), str(checkout.root), str(image)], env, "building the image")
        _prune(cache, image)
    latest = cache / LATEST_NAME
    tmp = cache / f".{LATEST_NAME}.{os.getpid()}"
    tmp.symlink_to(image.name)
    tmp.replace(latest)
    if output is not None and output.resolve() != image.resolve():
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, output)
        image = output
    print(f"hpcft: local image ready in {time.monotonic() - started:.0f} s: {image}", file=sys.stderr)
    return image
