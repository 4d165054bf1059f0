"""Each runtime's container invocation as rendered: cscs through the EDF, pyxis through --container-* options,
apptainer through `apptainer exec --nv --bind`. Mounts named by both the profile and the config appear once, and
the run directory and output_dir are always mounted. A missing image file is refused before submitting."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from hpcft.core.errors import ConfigError
from hpcft.launcher.config import load_job
from hpcft.launcher.runtimes.image import check_image

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROFILE_MOUNTS = ["/data", "/scratch/shared", "/opt/models:/models"]
# The same mounts again, one nested in another, one with a trailing slash, and output_dir spelled out.
CONFIG_MOUNTS = ["/data", "/scratch/shared/sub", "/opt/models:/models", "/data/"]


@pytest.fixture
def site(workspace, monkeypatch):
    """User profiles `site-<runtime>` that extend the shipped ones with mounts, and a config that repeats them."""
    folder = workspace / "profiles"
    folder.mkdir()
    for shipped in ("cscs", "pyxis", "apptainer"):
        (folder / f"site-{shipped}.yaml").write_text(f"extends: {shipped}\nlaunch:\n  mounts: {PROFILE_MOUNTS}\n")
    monkeypatch.setenv("HPCFT_PROFILE_PATH", f"{folder}{os.pathsep}{os.environ['HPCFT_PROFILE_PATH']}")
    with open(workspace / "cfg.yaml", "a") as f:
        f.write(f"  mounts: {CONFIG_MOUNTS + [str(workspace / 'out')]}\n")
    return workspace


def _render(run_cli, workspace, profile, image):
    run = workspace / f"run-{profile}"
    result = run_cli("render", "--profile", profile, workspace / "cfg.yaml", "-o", run, "--image", image, cwd=workspace)
    assert result.code == 0, result.err
    return run, (run / "job.sbatch").read_text()


def _srun_words(script: str) -> list[str]:
    """The words of the srun command line, up to `bash -c`."""
    command = script[script.index("\nsrun ") + 1 : script.index("bash -c '")]
    return shlex.split(command.replace("\\\n", " "))


def _assert_mounted_once(mounts: list[str], run: Path, workspace: Path, inherited: frozenset = frozenset()) -> None:
    """`inherited`: the shipped profile's own mounts, which a profile extending it adds to."""
    destinations = [(m.split(":")[1] if ":" in m else m).rstrip("/") for m in mounts]
    assert len(destinations) == len(set(destinations)), mounts
    # The run and output folders, and what the job reads: the model folder and the dataset files.
    used = {str(run), str(workspace / "out"), str(workspace / "model"), str(workspace / "data" / "chat.jsonl")}
    assert {"/data", "/scratch/shared", "/models"} | used | inherited == set(destinations)
    sources = {m.split(":")[0] for m in mounts}
    assert "/opt/models" in sources and "/scratch/shared/sub" not in sources  # nested in /scratch/shared


def test_cscs_runs_the_step_through_the_edf(run_cli, site):
    run, script = _render(run_cli, site, "site-cscs", "/capstor/scratch/cscs/alice/ce-images/hpcft-0.1.0.sqsh")
    words = _srun_words(script)
    assert f"--environment={run}/environment.toml" in words
    assert not [w for w in words if w.startswith("--container-")] and "apptainer" not in words
    edf = tomllib.loads((run / "environment.toml").read_text())
    assert edf["image"] == "/capstor/scratch/cscs/alice/ce-images/hpcft-0.1.0.sqsh"
    assert edf["workdir"] == str(run)
    # The shipped profile mounts /capstor and /iopsstor whole, not /users (CSCS advises against it).
    _assert_mounted_once(edf["mounts"], run, site, inherited=frozenset({"/capstor", "/iopsstor"}))


def test_cscs_keeps_a_registry_reference_with_a_hash(run_cli, site):
    run, _ = _render(run_cli, site, "site-cscs", "nvcr.io#nvidia/pytorch:26.07-py3")
    assert tomllib.loads((run / "environment.toml").read_text())["image"] == "nvcr.io#nvidia/pytorch:26.07-py3"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nvcr.io/nvidia/pytorch:26.07-py3", "nvcr.io#nvidia/pytorch:26.07-py3"),
        ("nvcr.io#nvidia/pytorch:26.07-py3", "nvcr.io#nvidia/pytorch:26.07-py3"),
        ("/scratch/images/hpcft-0.1.0.sqsh", "/scratch/images/hpcft-0.1.0.sqsh"),
    ],
)
def test_pyxis_passes_image_mounts_and_workdir_to_srun(run_cli, site, image, expected):
    run, script = _render(run_cli, site, "site-pyxis", image)
    words = _srun_words(script)
    options = dict(w.split("=", 1) for w in words if w.startswith("--container-") and "=" in w)
    assert options["--container-image"] == expected
    assert options["--container-workdir"] == str(run)
    mounts = options["--container-mounts"].split(",")
    assert all(m.count(":") == 1 for m in mounts)  # pyxis wants SRC:DST
    # enroot mounts nothing by default: the profile's Hugging Face cache folder is created and mounted too.
    cache = site / "home" / ".cache" / "huggingface"
    _assert_mounted_once(mounts, run, site, inherited=frozenset({str(cache)}))
    assert cache.is_dir() and "--container-writable" in words
    assert f'export HF_HOME="{cache}"' in script
    assert not (run / "environment.toml").exists()


def test_apptainer_execs_the_image_with_gpus_binds_and_env(run_cli, site):
    run, script = _render(run_cli, site, "site-apptainer", "/scratch/images/hpcft-0.1.0.sif")
    node_command = shlex.split(script[script.index("bash -c '") :].split("' &")[0] + "'")[2]
    words = shlex.split(node_command[node_command.index("exec apptainer ") + 5 :].replace("\\\n", " "))
    assert words[:4] == ["apptainer", "exec", "--nv", "--cleanenv"]  # no host environment leaks in
    assert words[words.index("--pwd") + 1] == str(run)
    assert words[words.index("--pwd") + 2] == "/scratch/images/hpcft-0.1.0.sif"  # the image, then its Python
    _assert_mounted_once(words[words.index("--bind") + 1].split(","), run, site)
    # --cleanenv: what the container needs goes in as APPTAINERENV_ (also winning over the image's ENV).
    assert re.search(r'^export APPTAINERENV_HF_HOME="\$\{HOME\}/\.cache/huggingface"$', script, re.M)
    assert re.search(r'^export APPTAINERENV_HPCFT_STOP_FILE="\$\{HPCFT_STOP_FILE\}"$', script, re.M)
    assert 'export APPTAINERENV_HF_TOKEN="$HF_TOKEN"' in script  # secrets by name, never by value


@pytest.mark.parametrize(
    ("profile", "suffix"), [("site-cscs", "sqsh"), ("site-pyxis", "sqsh"), ("site-apptainer", "sif")]
)
def test_a_rendered_job_with_a_missing_image_is_refused_before_submitting(run_cli, site, images, profile, suffix):
    missing = site / "ce-images" / f"hpcft-0.1.0.{suffix}"
    run, _ = _render(run_cli, site, profile, missing)  # rendering works anywhere, e.g. on a laptop
    job = load_job(site / "cfg.yaml", profile, cli_launch={"image": str(missing)})
    with pytest.raises(ConfigError, match=re.escape(f"image file not found: {missing}")):
        check_image(job)
    present = load_job(site / "cfg.yaml", profile, cli_launch={"image": str(images[suffix])})
    check_image(present)
