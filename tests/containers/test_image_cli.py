"""`hpcft image build|import|check`: the printed commands are exact, valid shell with the versions of
pyproject.toml; running stops at the first failure and says what is missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpcft.launcher.runtimes.image import DOCKERFILE, LUSTRE_STRIPE, Step, run_steps

from .conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def _commands(text: str) -> list[str]:
    """The printed commands, continuation lines joined."""
    return text.replace(" \\\n    ", " ").splitlines()


def test_enroot_build_prints_the_cscs_steps(run_image, monkeypatch, tmp_path):
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    result = run_image("build", "--runtime", "enroot", "--dry-run", "--context", REPO)
    assert result.code == 0, result.err
    subprocess.run(["bash", "-n"], input=result.out, text=True, check=True)  # valid shell, as printed
    images = tmp_path / "scratch" / "ce-images"
    mkdir, stripe, build, enroot = _commands(result.out)
    assert mkdir == f"mkdir -p {images}"
    assert stripe == f"lfs setstripe {' '.join(LUSTRE_STRIPE)} {images}"
    assert build.startswith(f"podman build -f {REPO / DOCKERFILE} ")
    assert build.endswith(f" -t hpcft:{VERSION} {REPO}")
    for requirement in PYPROJECT["project"]["optional-dependencies"]["train"] + ["flash-attn==2.8.3"]:
        name, sep, version = requirement.partition("==")
        if sep:
            arg = name.upper().replace("-", "_") + "_VERSION"
            assert f"--build-arg {arg}={version}" in build
    assert enroot == f"enroot import -x mount -o {images}/hpcft-{VERSION}.sqsh podman://hpcft:{VERSION}"
    assert not images.exists()  # a dry run changes nothing


def test_apptainer_build_prints_one_build_from_the_definition(run_image, tmp_path):
    sif = tmp_path / "img" / "hpcft.sif"
    result = run_image(
        "build",
        "--runtime",
        "apptainer",
        "--dry-run",
        "--context",
        REPO,
        "-o",
        sif,
        "--ngc-tag",
        "26.07-py3",
        "--jobs",
        "8",
    )
    assert result.code == 0, result.err
    subprocess.run(["bash", "-n"], input=result.out, text=True, check=True)
    build = _commands(result.out)[-1]
    assert build.startswith(f"apptainer build --build-arg SRC={REPO} --build-arg HPCFT_VERSION={VERSION} ")
    assert "--build-arg TORCH_VERSION=2.13.0" in build and "--build-arg MAX_JOBS=8" in build
    assert "--build-arg NGC_TAG=26.07-py3" in build
    assert build.endswith(f" {sif} {REPO}/containers/hpcft.def")


def test_import_from_docker_uses_the_docker_daemon(run_image, tmp_path):
    out = tmp_path / "hpcft.sqsh"
    result = run_image("import", "--engine", "docker", "--dry-run", "--context", REPO, "-o", out)
    assert result.code == 0, result.err
    assert _commands(result.out)[-1] == f"enroot import -x mount -o {out} dockerd://hpcft:{VERSION}"


def test_import_to_sif_goes_through_an_oci_archive(run_image, tmp_path):
    out = tmp_path / "hpcft.sif"
    result = run_image(
        "import", "--runtime", "apptainer", "--dry-run", "--context", REPO, "-o", out, "--tag", "hpcft:dev"
    )
    assert result.code == 0, result.err
    assert _commands(result.out)[2:] == [
        f"podman save --format oci-archive -o {tmp_path}/hpcft.oci.tar hpcft:dev",
        f"apptainer build {out} oci-archive://{tmp_path}/hpcft.oci.tar",
        f"rm -f {tmp_path}/hpcft.oci.tar",
    ]


def test_no_scratch_and_no_output_is_a_clear_error(run_image, monkeypatch):
    monkeypatch.delenv("SCRATCH", raising=False)
    result = run_image("build", "--dry-run", "--context", REPO)
    assert result.code == 2 and "$SCRATCH is not set" in result.err and "--output" in result.err


def test_build_outside_a_checkout_is_a_clear_error(run_image, tmp_path):
    result = run_image("build", "--dry-run", "--context", tmp_path, "-o", tmp_path / "x.sqsh")
    assert result.code == 2
    assert f"{tmp_path} is not an hpcft checkout" in result.err and "--context" in result.err


def test_build_refuses_recipes_that_drifted(run_image, tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "containers", checkout / "containers")
    text = (REPO / "pyproject.toml").read_text().replace('"peft==', '"peft==0.0.1+', 1)
    (checkout / "pyproject.toml").write_text(text)
    result = run_image("build", "--dry-run", "--context", checkout, "-o", tmp_path / "x.sqsh")
    assert result.code == 2
    assert "disagree with pyproject.toml" in result.err and "PEFT_VERSION" in result.err
    assert result.out == ""


def test_build_without_the_container_tools_says_where_to_run(run_image, monkeypatch, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = run_image("build", "--context", REPO, "-o", tmp_path / "out" / "hpcft.sqsh")
    assert result.code == 2
    assert "enroot, mkdir, podman not found on this machine" in result.err and "--dry-run" in result.err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_an_existing_image_file_is_not_overwritten(run_image, tmp_path):
    existing = tmp_path / "hpcft.sqsh"
    existing.write_bytes(b"hsqs")
    result = run_image("build", "--context", REPO, "-o", existing)
    assert result.code == 2 and f"{existing} already exists" in result.err
    assert existing.read_bytes() == b"hsqs"


def test_running_stops_at_the_first_failure_and_skips_missing_optional_tools(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # real coreutils; no `lfs` here
    first, last = tmp_path / "first", tmp_path / "last"
    steps = [
        Step(["touch", str(first)]),
        Step(["lfs", "setstripe", str(tmp_path)], optional=True),
        Step(["false"]),
        Step(["touch", str(last)]),
    ]
    assert shutil.which("lfs") is None
    assert run_steps(steps, dry_run=False) == 1
    assert first.exists() and not last.exists()
    err = capsys.readouterr().err
    assert f"+ touch {first}" in err and "skipping `lfs setstripe" in err and "`false" in err


@pytest.mark.parametrize("image", ["nvcr.io#nvidia/pytorch:25.01-py3", "docker://ubuntu:24.04"])
def test_check_does_not_check_registry_references(run_image, image):
    result = run_image("check", "--profile", "pyxis", "--image", image)
    assert result.code == 0, result.err
    assert "registry reference" in result.out


def test_check_reports_a_missing_file_for_the_profile(run_image, tmp_path):
    missing = tmp_path / "ce-images" / "hpcft.sqsh"
    result = run_image("check", "--profile", "cscs", "--image", missing)
    assert result.code == 2
    assert result.err.count("\n") == 1  # one line
    assert f"image file not found: {missing}" in result.err and "hpcft image build --runtime enroot" in result.err


def test_check_says_when_it_cannot_tell_what_is_inside(run_image, images):
    """A file with a squashfs superblock but no readable file system: the file checks pass, the listing fails."""
    result = run_image("check", "--profile", "cscs", "--image", images["sqsh"])
    assert result.code == 0, result.err
    assert "cannot tell whether hpcft is installed in it: unsquashfs could not read it" in result.err


SITE = "usr/local/lib/python3.12/site-packages"
TRAINER = ["torch", "transformers", "peft", "accelerate", "deepspeed", "datasets"]


def _squashfs(tmp_path: Path, name: str, files: list[str]) -> Path:
    """A real squashfs image (mksquashfs, from Debian's squashfs-tools) holding these files."""
    assert shutil.which("mksquashfs"), "mksquashfs is missing: scripts/setup.sh installs squashfs-tools"
    root = tmp_path / f"{name}-root"
    for file in files:
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).write_text("")
    image = tmp_path / f"{name}.sqsh"
    subprocess.run(["mksquashfs", str(root), str(image), "-quiet", "-no-progress"], check=True)
    return image


def _hpcft_files(version: str = VERSION, without: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{SITE}/hpcft/trainer/__init__.py",
        f"{SITE}/hpcft/launcher/__init__.py",
        f"{SITE}/hpcft-{version}.dist-info/METADATA",
        *(f"{SITE}/{package}/__init__.py" for package in TRAINER if package not in without),
    ]


def test_check_finds_hpcft_and_its_trainer_inside_a_squashfs(run_image, tmp_path):
    image = _squashfs(tmp_path, "hpcft", _hpcft_files())
    result = run_image("check", "--profile", "cscs", "--image", image)
    assert result.code == 0, result.err
    assert f"{image}: OK for the edf runtime of profile 'cscs': hpcft {VERSION} and" in result.out


def test_check_refuses_the_tutorials_axolotl_image(run_image, tmp_path):
    """It is a valid squashfs, so a file check passes; the job would then die with `No module named hpcft`."""
    image = _squashfs(
        tmp_path, "axolotl", [f"{SITE}/axolotl/__init__.py", *(f"{SITE}/{package}/__init__.py" for package in TRAINER)]
    )
    result = run_image("check", "--profile", "cscs", "--image", image)
    assert result.code == 2
    assert "has no hpcft installed (the job would fail with `No module named hpcft`)" in result.err
    assert result.err.count("\n") == 1


def test_check_names_missing_trainer_packages_and_reads_a_sif(run_image, tmp_path):
    image = _squashfs(tmp_path, "nodeepspeed", _hpcft_files(without=("deepspeed",)))
    result = run_image("check", "--profile", "pyxis", "--image", image)
    assert result.code == 2 and "has hpcft but not deepspeed" in result.err
    # A SIF keeps its file system as a squashfs partition after a header: found and listed the same way.
    sif = tmp_path / "hpcft.sif"
    squashfs = _squashfs(tmp_path, "inner", _hpcft_files(version="0.0.9")).read_bytes()
    header = b"#!/usr/bin/env run-singularity\n\x00SIF_MAGIC\x00"
    sif.write_bytes(header + bytes(8192 - len(header)) + squashfs)
    result = run_image("check", "--profile", "apptainer", "--image", sif)
    assert result.code == 0, result.err
    assert f"hpcft 0.0.9 (this login node has hpcft {VERSION})" in result.out


def test_check_reads_the_image_from_the_config(run_image, workspace, images):
    with open(workspace / "cfg.yaml", "a") as f:
        f.write(f"  image: {images['sif']}\n")
    result = run_image("check", "--profile", "apptainer", workspace / "cfg.yaml")
    assert result.code == 0, result.err
    result = run_image("check", "--profile", "pyxis", workspace / "cfg.yaml")
    assert result.code == 2 and "is a SIF image (that is for apptainer)" in result.err


def test_the_readme_shows_the_commands_hpcft_runs(run_image, monkeypatch):
    """containers/README.md's manual steps are the printed ones (build args aside: the recipes' defaults are the
    same versions, see test_versions.py)."""
    readme = (REPO / "containers" / "README.md").read_text()
    monkeypatch.setenv("SCRATCH", "/SCRATCH")
    printed = _commands(run_image("build", "--runtime", "enroot", "--dry-run", "--context", REPO).out)
    for command in printed[:2] + printed[3:]:  # mkdir, lfs setstripe, enroot import
        assert command.replace("/SCRATCH", "$SCRATCH").replace(VERSION, "$VERSION") in readme, command
    assert "podman build -f containers/Dockerfile -t hpcft:$VERSION ." in readme
    sif = REPO / f"hpcft-{VERSION}.sif"
    words = _commands(run_image("build", "--runtime", "apptainer", "--dry-run", "--context", REPO, "-o", sif).out)[-1]
    words = words.split()
    for i in reversed(range(len(words) - 1)):  # drop the version build args
        if words[i] == "--build-arg" and words[i + 1].split("=")[0].endswith("_VERSION"):
            del words[i : i + 2]
    manual = " ".join(words).replace(f"SRC={REPO}", 'SRC="$PWD"').replace(f"{REPO}/", "")
    assert manual.replace(VERSION, "$VERSION") in readme, manual


def test_check_without_a_container_or_without_an_image(run_image):
    result = run_image("check", "--profile", "local")
    assert result.code == 0 and "runs without a container" in result.out
    result = run_image("check", "--profile", "pyxis")
    assert result.code == 2 and "profile 'pyxis' names no image" in result.err and "--image" in result.err
