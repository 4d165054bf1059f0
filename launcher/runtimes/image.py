"""The training image: the commands that build it and import it for a runtime, with the versions filled in from
the checkout's pyproject.toml, and the check that the image file a job names exists before it is submitted.
The image formats and which runtime runs which are launcher/runtimes/'s; `--runtime` takes a profile's runtime
(edf, pyxis, apptainer) or the tool that writes its image (enroot, apptainer). (Over 300 lines: the build and
import steps of both formats are kept side by side; what is inside an image is read by image_contents.py.)"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hpcft.core.errors import ConfigError
from hpcft.launcher.runtimes import RUNTIMES, runtime_for
from hpcft.launcher.runtimes.base import IMAGE_FORMATS, SQUASHFS, ImageFormat

IMAGE_NAME = "hpcft"
DOCKERFILE = Path("containers/Dockerfile")
APPTAINER_DEF = Path("containers/hpcft.def")
INSTALL_SCRIPT = Path("containers/install-hpcft.sh")
EXTRAS = ("train", "gpu")
# `hpcft image --runtime`: the tools that write the two formats, then the profiles' runtimes that run them.
RUNTIME_CHOICES = (
    *IMAGE_FORMATS,
    *(name for name, r in RUNTIMES.items() if r.image_format and name not in IMAGE_FORMATS),
)
# CSCS's layout for a folder of container images: small files on one OST, large ones striped over all of them,
# so that every node of a job reading the image does not queue on one storage server (CSCS LLM tutorials).
LUSTRE_STRIPE = ("-E", "4M", "-c", "1", "-E", "64M", "-c", "4", "-E", "-1", "-c", "-1", "-S", "4M")
# Images pulled from a registry on the nodes; only local files can be checked before submitting.
_REGISTRY_PREFIXES = (
    "docker://",
    "oras://",
    "library://",
    "shub://",
    "https://",
    "http://",
    "dockerd://",
    "podman://",
    "docker-daemon://",
)
_LOCAL_SUFFIXES = (".sqsh", ".squashfs", ".sif", ".img")


@dataclass(frozen=True)
class Checkout:
    """An hpcft source checkout: what an image is built from."""

    root: Path
    version: str
    pins: dict[str, str]  # package -> exact version, from the `train` and `gpu` extras


@dataclass(frozen=True)
class Step:
    """One command of a build or import; an optional step is skipped when its tool is not installed."""

    argv: list[str]
    optional: bool = False


def build_arg_name(package: str) -> str:
    """The build argument that carries a package's version: flash-attn -> FLASH_ATTN_VERSION."""
    return re.sub(r"[-_.]+", "_", package).upper() + "_VERSION"


def pinned_versions(pyproject: dict) -> dict[str, str]:
    """The `name==version` requirements of the image's extras (unpinned ones follow from these)."""
    extras = pyproject.get("project", {}).get("optional-dependencies", {})
    pins: dict[str, str] = {}
    for extra in EXTRAS:
        for requirement in extras.get(extra, []):
            match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;,]+)\s*", requirement.split(";")[0])
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def read_checkout(root: str | Path = ".") -> Checkout:
    root = Path(root).expanduser().resolve()
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or not (root / DOCKERFILE).is_file():
        raise ConfigError(
            f"{root} is not an hpcft checkout (no pyproject.toml and {DOCKERFILE}); images are built "
            "from the source: run this in the repository root or pass --context DIR"
        )
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    data = tomllib.loads(pyproject.read_text())
    return Checkout(root=root, version=data["project"]["version"], pins=pinned_versions(data))


def dockerfile_args(text: str) -> dict[str, str]:
    """`ARG NAME=default` lines of a Dockerfile."""
    return {m.group(1): m.group(2).strip().strip('"') for m in re.finditer(r"^ARG\s+(\w+)=(.*)$", text, re.M)}


def def_arguments(text: str) -> dict[str, str]:
    """`NAME=default` lines of an Apptainer definition's %arguments section."""
    section = re.search(r"^%arguments\s*$(.*?)(?=^%\w+|\Z)", text, re.M | re.S)
    lines = section.group(1).splitlines() if section else []
    return dict(line.strip().split("=", 1) for line in lines if "=" in line and not line.strip().startswith("#"))


def version_drift(checkout: Checkout) -> list[str]:
    """Where the Dockerfile, the Apptainer definition or the install script disagree with pyproject.toml."""
    dockerfile = dockerfile_args((checkout.root / DOCKERFILE).read_text())
    definition_text = (checkout.root / APPTAINER_DEF).read_text()
    definition = def_arguments(definition_text)
    script = (checkout.root / INSTALL_SCRIPT).read_text()
    expected = {build_arg_name(name): version for name, version in checkout.pins.items()}
    expected["HPCFT_VERSION"] = checkout.version
    problems = []
    for where, found in ((DOCKERFILE, dockerfile), (APPTAINER_DEF, definition)):
        for arg, version in expected.items():
            if found.get(arg) != version:
                problems.append(f"{where}: {arg} is {found.get(arg)!r}, pyproject.toml says {version!r}")
        for arg in sorted(set(found) - set(expected)):
            if arg.endswith("_VERSION"):
                problems.append(f"{where}: {arg} pins a package that pyproject.toml's extras do not pin")
    for name in checkout.pins:
        arg = build_arg_name(name)
        # The script must install the pinned version (torch is checked against the NGC build by release number).
        used = f"${{{arg}}}" in script if name == "torch" else f"{name}==${{{arg}}}" in script
        if not used:
            problems.append(f"{INSTALL_SCRIPT}: does not install {name} at ${{{arg}}}")
        if f'export {arg}="{{{{ {arg} }}}}"' not in definition_text:
            problems.append(f"{APPTAINER_DEF}: %post does not export {arg} to the install script")
    if dockerfile.get("NGC_TAG") != definition.get("NGC_TAG"):
        problems.append(
            f"{DOCKERFILE} and {APPTAINER_DEF} start from different NGC tags "
            f"({dockerfile.get('NGC_TAG')} and {definition.get('NGC_TAG')})"
        )
    return problems


def _version_build_args(checkout: Checkout, flag: str) -> list[str]:
    values = {"HPCFT_VERSION": checkout.version, **{build_arg_name(n): v for n, v in checkout.pins.items()}}
    return [word for name, value in values.items() for word in (flag, f"{name}={value}")]


def image_format_for(runtime: str) -> ImageFormat:
    """The image format `--runtime` names: a tool (enroot, apptainer) or a profile's runtime (edf, pyxis, ...)."""
    image = IMAGE_FORMATS.get(runtime) or runtime_for(runtime).image_format
    if image is None:
        raise ConfigError(f"the {runtime} runtime runs no container image; choose one of {', '.join(RUNTIME_CHOICES)}")
    return image


def default_output(runtime: str, version: str) -> Path:
    scratch = os.environ.get("SCRATCH")
    if not scratch:
        raise ConfigError(
            "$SCRATCH is not set, so there is no default place for the image; pass --output PATH "
            "(a folder on a parallel file system that the compute nodes see)"
        )
    image = image_format_for(runtime)
    return Path(scratch) / image.folder / f"{IMAGE_NAME}-{version}{image.suffix}"


def _image_folder_steps(output: Path) -> list[Step]:
    return [
        Step(["mkdir", "-p", str(output.parent)]),
        Step(["lfs", "setstripe", *LUSTRE_STRIPE, str(output.parent)], optional=True),
    ]


def build_steps(
    checkout: Checkout,
    runtime: str,
    output: Path,
    engine: str = "podman",
    ngc_tag: str | None = None,
    jobs: int | None = None,
) -> list[Step]:
    """Build the image for `runtime` and leave it at `output` (.sqsh for enroot, .sif for apptainer)."""
    extra = {"NGC_TAG": ngc_tag, "MAX_JOBS": jobs}
    if image_format_for(runtime) is not SQUASHFS:
        args = ["apptainer", "build", "--build-arg", f"SRC={checkout.root}"]
        args += _version_build_args(checkout, "--build-arg")
        args += [w for k, v in extra.items() if v is not None for w in ("--build-arg", f"{k}={v}")]
        return [*_image_folder_steps(output), Step([*args, str(output), str(checkout.root / APPTAINER_DEF)])]
    tag = f"{IMAGE_NAME}:{checkout.version}"
    args = [engine, "build", "-f", str(checkout.root / DOCKERFILE), *_version_build_args(checkout, "--build-arg")]
    args += [w for k, v in extra.items() if v is not None for w in ("--build-arg", f"{k}={v}")]
    # The folder first: a typo in --output should fail before an hour of compiling, not after.
    return [
        *_image_folder_steps(output),
        Step([*args, "-t", tag, str(checkout.root)]),
        *import_steps(runtime, tag, output, engine, make_folder=False),
    ]


def import_steps(runtime: str, tag: str, output: Path, engine: str = "podman", make_folder: bool = True) -> list[Step]:
    """Turn the local image `tag` (built with podman or docker) into the file the runtime runs."""
    folder = _image_folder_steps(output) if make_folder else []
    if image_format_for(runtime) is SQUASHFS:
        # CSCS builds land in /dev/shm (podman's storage there), so this runs in the same job as the build.
        source = f"{'dockerd' if engine == 'docker' else 'podman'}://{tag}"
        return [*folder, Step(["enroot", "import", "-x", "mount", "-o", str(output), source])]
    archive = output.with_suffix(".oci.tar")
    return [
        *folder,
        Step([engine, "save", "--format", "oci-archive", "-o", str(archive), tag]),
        Step(["apptainer", "build", str(output), f"oci-archive://{archive}"]),
        Step(["rm", "-f", str(archive)]),
    ]


def format_command(argv: list[str]) -> str:
    """A command as a person would type it: quoted, long ones broken before each option."""
    words = [shlex.quote(w) for w in argv]
    if len(" ".join(words)) <= 100:
        return " ".join(words)
    lines = [" ".join(words[:2])]
    for word in words[2:]:
        if word.startswith("-") or len(lines) == 1:
            lines.append(word)
        else:
            lines[-1] += " " + word
    return " \\\n    ".join(lines)


def run_steps(steps: list[Step], dry_run: bool) -> int:
    """Print the commands (dry run) or run them one by one, stopping at the first failure."""
    if dry_run:
        for step in steps:
            print(format_command(step.argv))
        return 0
    missing = sorted({s.argv[0] for s in steps if not s.optional and shutil.which(s.argv[0]) is None})
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not found on this machine; run this where the container tools are "
            "(at CSCS: on a compute node, `srun -A ACCOUNT --pty bash`), or print the commands with "
            "--dry-run"
        )
    for step in steps:
        if step.optional and shutil.which(step.argv[0]) is None:
            print(
                f"hpcft: skipping `{shlex.join(step.argv)}` ({step.argv[0]} not found: not a Lustre system?)",
                file=sys.stderr,
            )
            continue
        print(f"+ {shlex.join(step.argv)}", file=sys.stderr, flush=True)
        code = subprocess.run(step.argv).returncode
        if code != 0:
            print(f"hpcft: error: `{shlex.join(step.argv[:2])}` failed (exit {code})", file=sys.stderr)
            return code
    return 0


def is_local_image(image: str) -> bool:
    """A file or folder on disk (checked before submitting), as opposed to a registry reference."""
    if image.startswith(_REGISTRY_PREFIXES) or "#" in image:
        return False
    return image.startswith(("/", "./", "../", "~", "$")) or image.lower().endswith(_LOCAL_SUFFIXES)


def check_image_file(image: str, runtime: str, where: str) -> Path:
    """The image file `image` must exist, be readable and be what `runtime` runs; returns its path."""
    expanded = os.path.expandvars(os.path.expanduser(image))
    if "$" in expanded:
        raise ConfigError(
            f"{where}: image path {image} uses an environment variable that is not set here; "
            "write the path out or export the variable"
        )
    path = Path(expanded).absolute()
    kind = runtime_for(runtime)
    tool = kind.image_format.tool if kind.image_format else runtime
    how = (
        f"build and import it first (`hpcft image build --runtime {tool}`, see containers/README.md) "
        "or fix launch.image"
    )
    if not path.exists():
        raise ConfigError(f"{where}: image file not found: {path}; {how}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{where}: image file {path} is not readable by you; fix its permissions or copy it")
    return kind.check_image_file(path, where, how)


def check_image(job) -> None:
    """Refuse to submit a job whose image is a local file that is missing or unusable (one clear line).

    Registry references (nvcr.io#nvidia/pytorch:25.01-py3) are pulled on the nodes and are not checked."""
    profile, image = job.profile, job.cfg.launch.image
    if runtime_for(profile.runtime).image_format is None:
        return
    if not image:
        raise ConfigError(
            f"profile '{profile.name}' runs in a container ({profile.runtime}) but no image is set; "
            "set launch.image in the config or the profile, or pass --image"
        )
    if is_local_image(image):
        check_image_file(image, profile.runtime, f"launch.image (profile '{profile.name}')")


# ---- command line: `hpcft image build|import|check` -------------------------------------------------------------


def cmd_image_build(args: argparse.Namespace) -> int:
    checkout = read_checkout(args.context)
    drift = version_drift(checkout)
    if drift:
        raise ConfigError("the image recipes disagree with pyproject.toml: " + "; ".join(drift))
    if args.local:
        from hpcft.launcher.runtimes.image_local import build_local_image

        if args.dry_run or args.runtime != "enroot":
            raise ConfigError("--local builds an enroot .sqsh and has no --dry-run; drop --runtime apptainer/--dry-run")
        image = build_local_image(checkout, Path(args.output).expanduser().absolute() if args.output else None)
        print(f"hpcft: image written to {image}; the local-pyxis profile runs it")
        return 0
    output = (
        Path(args.output).expanduser().absolute() if args.output else default_output(args.runtime, checkout.version)
    )
    if not args.dry_run and output.exists():
        raise ConfigError(f"{output} already exists; remove it or pass --output for a new file")
    steps = build_steps(checkout, args.runtime, output, engine=args.engine, ngc_tag=args.ngc_tag, jobs=args.jobs)
    code = run_steps(steps, args.dry_run)
    if code == 0 and not args.dry_run:
        print(f"hpcft: image written to {output}; point launch.image at it in your profile")
    return code


def cmd_image_import(args: argparse.Namespace) -> int:
    from hpcft.launcher import __version__

    context = Path(args.context)
    version = read_checkout(context).version if (context / "pyproject.toml").is_file() else __version__
    tag = args.tag or f"{IMAGE_NAME}:{version}"
    output = Path(args.output).expanduser().absolute() if args.output else default_output(args.runtime, version)
    if not args.dry_run and output.exists():
        raise ConfigError(f"{output} already exists; remove it or pass --output for a new file")
    return run_steps(import_steps(args.runtime, tag, output, args.engine), args.dry_run)


def _profile_and_image(args: argparse.Namespace):
    """The profile and image `hpcft image check` looks at: the config's job when one is given, else the profile."""
    from hpcft.core.yaml_config import resolve_interpolations
    from hpcft.launcher.config import load_job
    from hpcft.launcher.profiles import load_profile

    if args.config:
        job = load_job(args.config, args.profile, cli_launch={"image": args.image} if args.image else {})
        return job.profile, job.cfg.launch.image
    profile = load_profile(args.profile)
    raw = args.image or profile.launch.get("image")
    return profile, resolve_interpolations({"image": raw}, f"profile '{profile.name}'")["image"] if raw else None


def cmd_image_check(args: argparse.Namespace) -> int:
    profile, image = _profile_and_image(args)
    if runtime_for(profile.runtime).image_format is None:
        print(f"profile '{profile.name}' runs without a container; nothing to check")
        return 0
    if not image:
        raise ConfigError(
            f"profile '{profile.name}' names no image; set launch.image in the profile or the config, or pass --image"
        )
    if not is_local_image(image):
        print(f"{image}: a registry reference, pulled on the nodes (not checked here)")
        return 0
    path = check_image_file(image, profile.runtime, f"launch.image (profile '{profile.name}')")
    if path.is_dir():
        print(f"{path}: a sandbox folder for the {profile.runtime} runtime of profile '{profile.name}'")
        return 0
    return _report_contents(path, profile.runtime, profile.name)


def _report_contents(path: Path, runtime: str, profile_name: str) -> int:
    """Say whether hpcft and its trainer's packages are inside the image (or that it cannot be told)."""
    from hpcft.launcher import __version__
    from hpcft.launcher.runtimes.image_contents import inspect_image

    contents = inspect_image(path)
    if contents.unknown:
        print(
            f"{path}: a {runtime} image file, but hpcft cannot tell whether hpcft is installed in it: "
            f"{contents.unknown}",
            file=sys.stderr,
        )
        return 0
    if contents.hpcft_version is None:
        raise ConfigError(
            f"{path} has no hpcft installed (the job would fail with `No module named hpcft`); "
            "build hpcft's image with `hpcft image build` (containers/README.md) or install hpcft "
            "into this one"
        )
    if contents.missing:
        raise ConfigError(
            f"{path} has hpcft but not {', '.join(contents.missing)}, which its trainer imports; "
            "build hpcft's image with `hpcft image build`"
        )
    version = contents.hpcft_version or "unknown version"
    note = "" if contents.hpcft_version in ("", __version__) else f" (this login node has hpcft {__version__})"
    print(
        f"{path}: OK for the {runtime} runtime of profile '{profile_name}': hpcft {version}{note} and its "
        "trainer's packages are installed"
    )
    return 0


def add_image_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `hpcft image build|import|check` to the hpcft command line."""
    image = subparsers.add_parser(
        "image",
        help="build the training image, import it for the cluster, check it",
        description="Build the hpcft training image (containers/), import it as the file "
        "the cluster's runtime runs, or check the image a profile names.",
    )
    actions = image.add_subparsers(dest="image_action", metavar="ACTION", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--runtime",
            choices=RUNTIME_CHOICES,
            default="enroot",
            help="enroot (or edf, pyxis): a .sqsh for the CSCS Container Engine or pyxis (default); apptainer: a .sif",
        )
        parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
        parser.add_argument(
            "-o",
            "--output",
            help="image file to write (default $SCRATCH/ce-images/hpcft-VERSION"
            ".sqsh, or $SCRATCH/images/hpcft-VERSION.sif)",
        )
        parser.add_argument(
            "--engine", choices=("podman", "docker"), default="podman", help="the OCI image builder (default podman)"
        )
        parser.add_argument("--context", default=".", help="the hpcft checkout (default: the current folder)")

    build = actions.add_parser(
        "build",
        help="build the image and write the file the runtime runs",
        epilog="Example: hpcft image build --runtime enroot --dry-run",
    )
    common(build)
    build.add_argument("--ngc-tag", help="NGC PyTorch tag to start from (default: the Dockerfile's)")
    build.add_argument("--jobs", type=int, help="parallel compile jobs for flash-attn (default 16)")
    build.add_argument(
        "--local",
        action="store_true",
        help="the CPU image for the local test cluster, without a registry (debootstrap; cached by content "
        "in $HPCFT_IMAGE_CACHE, default /var/tmp/hpcft-images; needs root)",
    )
    build.set_defaults(func=cmd_image_build)

    imp = actions.add_parser("import", help="turn an image built with podman/docker into a .sqsh or .sif file")
    common(imp)
    imp.add_argument("--tag", help="the local image to import (default hpcft:VERSION)")
    imp.set_defaults(func=cmd_image_import)

    check = actions.add_parser(
        "check",
        help="check that the image a profile (and config) names exists",
        epilog="Example: hpcft image check --profile cscs cfg.yaml",
    )
    check.add_argument("config", nargs="?", help="training config whose launch.image to check")
    check.add_argument("--profile", "-p", required=True, help="cluster profile")
    check.add_argument("--image", help="check this image instead of the one the profile or config names")
    check.set_defaults(func=cmd_image_check)
