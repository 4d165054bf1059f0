"""runtime: edf (the CSCS Container Engine): srun --environment=<run dir>/environment.toml; the image, mounts and
the job's variables are in the EDF (edf/environment.toml.j2), not on the srun line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hpcft.launcher.runtimes.base import SQUASHFS, check_mount_separators, check_squashfs

if TYPE_CHECKING:
    from hpcft.launcher.config import Job
    from hpcft.launcher.profiles import Profile


class ContainerEngine:
    name = "edf"
    image_format = SQUASHFS
    variables_note = ""
    python_in_container = True

    def check_mounts(self, job: Job, own: list[str]) -> None:
        check_mount_separators(job, own)

    def exports(
        self, protocol_exports: list[tuple[str, str]], env: list[tuple[str, str]], trainer_variables: tuple[str, ...]
    ) -> list[tuple[str, str]]:
        return protocol_exports  # the EDF's [env] table carries the job's variables

    def secret_lines(self, profile: Profile) -> list[str]:
        return []  # the Container Engine passes the host's environment on

    def container(self, job: Job, run_dir: Path, mounts: list[str], env: dict[str, str]) -> tuple[list[str], list[str]]:
        return [f"--environment={run_dir}/environment.toml"], []

    def node_lines(self) -> list[str]:
        return []

    def session_setup(self, lines: list[str], in_container: bool) -> list[str]:
        return lines

    def run_files(self, render: Callable[[str], str]) -> dict[str, str]:
        return {"environment.toml": render("edf/environment.toml.j2")}

    def check_image_file(self, path: Path, where: str, how: str) -> Path:
        return check_squashfs(self.name, path, where, how)


EDF = ContainerEngine()
