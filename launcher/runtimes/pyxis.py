"""runtime: pyxis (enroot through Slurm's pyxis plugin): srun --container-image/--container-mounts/
--container-workdir. enroot mounts neither home nor anything else by default, so every path the job reads or
writes is mounted, and caches are put on a mounted path (the profile's `env`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hpcft.launcher.runtimes.base import SQUASHFS, check_mount_separators, check_squashfs

if TYPE_CHECKING:
    from hpcft.launcher.config import Job
    from hpcft.launcher.profiles import Profile


def enroot_image(image: str) -> str:
    """enroot (pyxis, the CSCS EDF) separates registry and path with '#': nvcr.io/nvidia/x:1 -> nvcr.io#nvidia/x:1."""
    image = image.removeprefix("docker://")
    if image.startswith(("/", "./", "~")) or "#" in image:
        return image
    host, sep, rest = image.partition("/")
    if sep and ("." in host or ":" in host or host == "localhost"):
        return f"{host}#{rest}"
    return image


class Pyxis:
    name = "pyxis"
    image_format = SQUASHFS
    variables_note = ""
    python_in_container = True

    def check_mounts(self, job: Job, own: list[str]) -> None:
        check_mount_separators(job, own)

    def exports(
        self, protocol_exports: list[tuple[str, str]], env: list[tuple[str, str]], trainer_variables: tuple[str, ...]
    ) -> list[tuple[str, str]]:
        return protocol_exports + env

    def secret_lines(self, profile: Profile) -> list[str]:
        return []  # pyxis passes the host's environment on

    def container(self, job: Job, run_dir: Path, mounts: list[str], env: dict[str, str]) -> tuple[list[str], list[str]]:
        # enroot's container is read-only unless asked; torch, Triton and pip write into it.
        args = [
            f"--container-image={enroot_image(job.cfg.launch.image or '')}",
            "--container-writable",
            f"--container-workdir={run_dir}",
        ]
        if mounts:
            args.append("--container-mounts=" + ",".join(m if ":" in m else f"{m}:{m}" for m in mounts))
        if env:
            # The image's ENV wins over the host's unless pyxis is told to pass the variable through.
            args.append("--container-env=" + ",".join(sorted(env)))
        return args, []

    def node_lines(self) -> list[str]:
        return []

    def session_setup(self, lines: list[str], in_container: bool) -> list[str]:
        return lines

    def run_files(self, render: Callable[[str], str]) -> dict[str, str]:
        return {}

    def check_image_file(self, path: Path, where: str, how: str) -> Path:
        return check_squashfs(self.name, path, where, how)


PYXIS = Pyxis()
