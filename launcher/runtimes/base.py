"""What every container runtime provides (the ContainerRuntime protocol), the image formats they run, and the
checks the container runtimes share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hpcft.core.errors import ConfigError

if TYPE_CHECKING:
    from hpcft.launcher.config import Job
    from hpcft.launcher.profiles import Profile


@dataclass(frozen=True)
class ImageFormat:
    """A kind of image file: what `hpcft image build/import --runtime <tool>` writes, and how to recognise it."""

    tool: str  # the tool that writes it, and the --runtime name `hpcft image build` knows it by
    suffix: str
    folder: str  # the default folder under $SCRATCH
    magic: bytes
    magic_at_start: bool  # squashfs starts with its magic; a SIF header holds it after a launch script line


SQUASHFS = ImageFormat(tool="enroot", suffix=".sqsh", folder="ce-images", magic=b"hsqs", magic_at_start=True)
SIF = ImageFormat(tool="apptainer", suffix=".sif", folder="images", magic=b"SIF_MAGIC", magic_at_start=False)
IMAGE_FORMATS = {image.tool: image for image in (SQUASHFS, SIF)}


def is_format(image: ImageFormat, head: bytes) -> bool:
    """Whether the first bytes of a file are an image of this format."""
    return head.startswith(image.magic) if image.magic_at_start else image.magic in head


class ContainerRuntime(Protocol):
    """How a job's step runs on the nodes in one runtime; JobPlan, render, submitit, interactive and the image
    check ask it rather than comparing runtime names."""

    name: str  # the profile's `runtime`
    image_format: ImageFormat | None  # what it runs (None: no container)
    variables_note: str  # how the job's variables reach the container, for job.sbatch's comment
    # In submitit's tasks the Python is the image's (edf, pyxis: srun enters the container) or this one's.
    python_in_container: bool

    def check_mounts(self, job: Job, own: list[str]) -> None:
        """Refuse paths the runtime's mount syntax cannot carry."""

    def exports(
        self, protocol_exports: list[tuple[str, str]], env: list[tuple[str, str]], trainer_variables: tuple[str, ...]
    ) -> list[tuple[str, str]]:
        """The variables job.sbatch exports before srun: the protocol's, then the job's `env` (already quoted)."""

    def secret_lines(self, profile: Profile) -> list[str]:
        """Shell lines that pass the profile's secret variables into the container, by name, never by value."""

    def container(self, job: Job, run_dir: Path, mounts: list[str], env: dict[str, str]) -> tuple[list[str], list[str]]:
        """(srun options, words run before the Python) that put the step inside the container."""

    def node_lines(self) -> list[str]:
        """Shell lines every node's task runs before exec-ing torchrun."""

    def session_setup(self, lines: list[str], in_container: bool) -> list[str]:
        """An interactive shell's setup lines, from the batch job's, for a shell inside the container or not."""

    def run_files(self, render: Callable[[str], str]) -> dict[str, str]:
        """Extra files of the run directory (the EDF); `render` renders a template with the job's context."""

    def check_image_file(self, path: Path, where: str, how: str) -> Path:
        """Refuse an existing, readable image file (or folder) this runtime cannot run; returns its path. `how`
        says how to build one."""


def check_mount_separators(job: Job, own: list[str]) -> None:
    """Container runtimes separate mounts with ',' and a source from its destination with ':'."""
    for path in own:
        if ":" in path or "," in path:
            raise ConfigError(
                f"{path} contains ':' or ',', which the container runtime reads as separators in "
                "its mount list; rename the folder (or launch.job_name / launch.runs_dir)"
            )
    for mount in job.cfg.launch.mounts:
        if "," in mount or mount.count(":") > 1:
            raise ConfigError(
                f"launch.mounts: '{mount}' must be /path or /source:/destination, without ',' or a second ':'"
            )


def read_image_head(path: Path, where: str, how: str) -> bytes:
    """The first bytes of an image file, where both formats keep their magic."""
    if not path.is_file():  # a FIFO or a device would block the read below, or never end
        raise ConfigError(f"{where}: image {path} is not a regular file (a pipe or a device?); {how}")
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read image file {path} ({exc.strerror or exc})") from None
    if not head:
        raise ConfigError(f"{where}: image file {path} is empty (an interrupted import?); {how}")
    return head


def check_squashfs(runtime: str, path: Path, where: str, how: str) -> Path:
    """edf and pyxis run enroot's .sqsh files, not folders or SIF images."""
    if path.is_dir():
        raise ConfigError(
            f"{where}: image {path} is a folder; the {runtime} runtime needs the .sqsh file that `enroot import` writes"
        )
    head = read_image_head(path, where, how)
    if not is_format(SQUASHFS, head):
        kind = "a SIF image (that is for apptainer)" if is_format(SIF, head) else "not a squashfs image"
        raise ConfigError(
            f"{where}: image file {path} is {kind}; the {runtime} runtime needs the .sqsh file that "
            "`enroot import -x mount -o FILE.sqsh podman://IMAGE` writes"
        )
    return path
