"""check_image(job): before a job is submitted, the local image file its profile runs must exist and be of the
kind the runtime runs; registry references are left to the nodes."""

from __future__ import annotations

import os
import re

import pytest

from hpcft.core.errors import ConfigError
from hpcft.launcher.config import load_job
from hpcft.launcher.runtimes.image import check_image, is_local_image


def _job(workspace, profile, image):
    return load_job(workspace / "cfg.yaml", profile, cli_launch={"image": str(image)} if image else {})


@pytest.mark.parametrize("profile", ["cscs", "pyxis", "apptainer"])
def test_a_missing_image_file_is_one_clear_line(workspace, profile, tmp_path):
    missing = tmp_path / "ce-images" / ("hpcft.sif" if profile == "apptainer" else "hpcft.sqsh")
    with pytest.raises(ConfigError) as exc:
        check_image(_job(workspace, profile, missing))
    message = str(exc.value)
    assert "\n" not in message
    assert f"image file not found: {missing}" in message
    runtime = "apptainer" if profile == "apptainer" else "enroot"
    assert f"hpcft image build --runtime {runtime}" in message and "launch.image" in message


def test_a_relative_image_path_is_resolved_from_the_current_folder(workspace, images, monkeypatch):
    monkeypatch.chdir(images["sqsh"].parent)
    check_image(_job(workspace, "cscs", "hpcft.sqsh"))
    monkeypatch.chdir(workspace)
    with pytest.raises(ConfigError, match=f"image file not found: {workspace}/hpcft.sqsh"):
        check_image(_job(workspace, "cscs", "hpcft.sqsh"))


@pytest.mark.parametrize(
    ("profile", "kind"),
    [("cscs", "sqsh"), ("pyxis", "sqsh"), ("apptainer", "sif"), ("apptainer", "sqsh"), ("apptainer", "sandbox")],
)
def test_an_image_of_the_right_kind_passes(workspace, images, profile, kind):
    check_image(_job(workspace, profile, images[kind]))


@pytest.mark.parametrize(
    ("profile", "kind", "says"),
    [
        ("cscs", "sif", "is a SIF image (that is for apptainer)"),
        ("pyxis", "tarball", "is not a squashfs image"),
        ("cscs", "sandbox", "is a folder"),
        ("cscs", "empty", "is empty (an interrupted import?)"),
        ("apptainer", "tarball", "is neither a SIF nor a squashfs image"),
    ],
)
def test_an_image_of_the_wrong_kind_is_refused(workspace, images, profile, kind, says):
    with pytest.raises(ConfigError, match=re.escape(f"launch.image (profile '{profile}')")) as exc:
        check_image(_job(workspace, profile, images[kind]))
    assert says in str(exc.value) and str(images[kind]) in str(exc.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_image_is_refused(workspace, images):
    images["sqsh"].chmod(0)
    with pytest.raises(ConfigError, match="is not readable by you"):
        check_image(_job(workspace, "cscs", images["sqsh"]))


@pytest.mark.parametrize(
    "image",
    [
        "nvcr.io#nvidia/pytorch:25.01-py3",
        "nvcr.io/nvidia/pytorch:25.01-py3",
        "library/ubuntu:24.04",
        "docker://nvcr.io/nvidia/pytorch:25.01-py3",
        "oras://ghcr.io/org/hpcft.sif",
    ],
)
def test_registry_references_are_not_checked(workspace, image):
    assert not is_local_image(image)
    check_image(_job(workspace, "pyxis", image))


def test_local_paths_are_recognised():
    for image in ["/capstor/x/hpcft.sqsh", "./hpcft.sqsh", "../img/x", "~/hpcft.sif", "hpcft.sqsh", "x.SIF"]:
        assert is_local_image(image), image


def test_a_container_profile_without_an_image_is_refused(workspace):
    with pytest.raises(ConfigError, match="no image is set"):
        check_image(_job(workspace, "pyxis", None))


def test_no_container_no_check(workspace):
    check_image(_job(workspace, "local", None))


@pytest.mark.parametrize("verb", ["submit", "interactive"])
def test_submit_and_interactive_refuse_a_missing_image_before_anything_runs(workspace, run_cli, tmp_path, verb):
    """The check is wired into the verbs: one line naming the file, exit 2, no run directory, no Slurm call
    (this machine's sbatch would accept the job; the refusal must come first)."""
    missing = tmp_path / "ce-images" / "hpcft.sqsh"
    runs = tmp_path / "runs"
    result = run_cli(
        verb, "--profile", "pyxis", workspace / "cfg.yaml", "--image", missing, "--out", runs / "r", cwd=workspace
    )
    assert result.code == 2, result.out + result.err
    assert f"image file not found: {missing}" in result.err
    assert not runs.exists()
