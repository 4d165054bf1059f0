"""runtime: apptainer: `apptainer exec --nv --cleanenv IMAGE` before the Python. --cleanenv keeps the login node's
environment (PYTHONPATH, ...) out; what the job needs goes in explicitly as APPTAINERENV_<NAME> (which also wins
over the image's own ENV)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hpcft.core.errors import ConfigError
from hpcft.launcher.runtimes.base import SIF, SQUASHFS, check_mount_separators, is_format, read_image_head

if TYPE_CHECKING:
    from hpcft.launcher.config import Job
    from hpcft.launcher.profiles import Profile


class Apptainer:
    name = "apptainer"
    image_format = SIF
    variables_note = (
        "; Apptainer runs with --cleanenv, so what the\n"
        "# container needs goes in as APPTAINERENV_NAME (which also wins over the image's own ENV)"
    )
    python_in_container = False  # submitit's task starts outside; the container starts in its command

    def check_mounts(self, job: Job, own: list[str]) -> None:
        check_mount_separators(job, own)

    def exports(
        self, protocol_exports: list[tuple[str, str]], env: list[tuple[str, str]], trainer_variables: tuple[str, ...]
    ) -> list[tuple[str, str]]:
        passed = [(f"APPTAINERENV_{name}", f'"${{{name}}}"') for name in trainer_variables]
        return protocol_exports + passed + [(f"APPTAINERENV_{name}", value) for name, value in env]

    def secret_lines(self, profile: Profile) -> list[str]:
        # --cleanenv keeps the login node's environment out, secrets included: pass those by name, never by value.
        return [
            f'if [ -n "${{{name}:-}}" ]; then export APPTAINERENV_{name}="${name}"; fi' for name in profile.secret_env
        ]

    def container(self, job: Job, run_dir: Path, mounts: list[str], env: dict[str, str]) -> tuple[list[str], list[str]]:
        words = ["apptainer", "exec", "--nv", "--cleanenv", *job.profile.apptainer_args]
        if mounts:
            words += ["--bind", ",".join(mounts)]
        return [], [*words, "--pwd", str(run_dir), job.cfg.launch.image or ""]

    def node_lines(self) -> list[str]:
        # With --cleanenv only APPTAINERENV_ variables reach the container; Slurm sets the GPUs per step.
        return [
            'if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then '
            'export APPTAINERENV_CUDA_VISIBLE_DEVICES="$CUDA_VISIBLE_DEVICES"; fi'
        ]

    def session_setup(self, lines: list[str], in_container: bool) -> list[str]:
        # Inside the container the APPTAINERENV_ values are what it would have received: set under their own names.
        if not in_container:
            return lines
        return [line.replace("export APPTAINERENV_", "export ", 1) for line in lines]

    def run_files(self, render: Callable[[str], str]) -> dict[str, str]:
        return {}

    def check_image_file(self, path: Path, where: str, how: str) -> Path:
        if path.is_dir():  # a sandbox folder
            return path
        head = read_image_head(path, where, how)
        if not (is_format(SIF, head) or is_format(SQUASHFS, head)):
            raise ConfigError(
                f"{where}: image file {path} is neither a SIF nor a squashfs image; build it with "
                "`apptainer build FILE.sif containers/hpcft.def`"
            )
        return path


APPTAINER = Apptainer()
