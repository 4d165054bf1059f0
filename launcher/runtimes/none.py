"""runtime: none: torchrun on the node itself, no container (the local test cluster, a site's own Python)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hpcft.core.errors import ConfigError

if TYPE_CHECKING:
    from hpcft.launcher.config import Job
    from hpcft.launcher.profiles import Profile


class NoContainer:
    name = "none"
    image_format = None
    variables_note = ""
    python_in_container = False

    def check_mounts(self, job: Job, own: list[str]) -> None:
        return None  # nothing is mounted: every path is the node's own

    def exports(
        self, protocol_exports: list[tuple[str, str]], env: list[tuple[str, str]], trainer_variables: tuple[str, ...]
    ) -> list[tuple[str, str]]:
        return protocol_exports + env

    def secret_lines(self, profile: Profile) -> list[str]:
        return []  # srun passes the whole environment on

    def container(self, job: Job, run_dir: Path, mounts: list[str], env: dict[str, str]) -> tuple[list[str], list[str]]:
        return [], []

    def node_lines(self) -> list[str]:
        return []

    def session_setup(self, lines: list[str], in_container: bool) -> list[str]:
        return lines

    def run_files(self, render: Callable[[str], str]) -> dict[str, str]:
        return {}

    def check_image_file(self, path: Path, where: str, how: str) -> Path:
        raise ConfigError(f"{where}: the profile runs without a container, so no image is used")


NONE = NoContainer()
