"""The launcher is light and self-contained: the wheel carries its data files, installs no torch, and the
CLI starts without importing torch/transformers/deepspeed."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "deepspeed", "datasets", "peft", "accelerate", "mlflow", "lm_eval")


def test_cli_imports_nothing_heavy():
    code = (
        "import sys; from hpcft.launcher.cli import build_parser; build_parser(); "
        "import hpcft.launcher.render, hpcft.launcher.config, hpcft.core.chat_templates; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_wheel_carries_data_and_installs_without_torch(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path, ROOT], check=True, capture_output=True
    )
    wheel = next(tmp_path.glob("hpcft-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for expected in [
        "hpcft/launcher/cli.py",
        "hpcft/trainer/__init__.py",
        "hpcft/templates/job.sbatch.j2",
        "hpcft/edf/environment.toml.j2",
        "hpcft/cluster_profiles/cscs.yaml",
        "hpcft/cluster_profiles/local.yaml",
        "hpcft/configs/examples/tiny-cpu.yaml",
        "hpcft/configs/deepspeed/zero3.json",
        "hpcft/templates/chat/llama3.jinja",
        "hpcft/core/axolotl_keys.txt",
        "hpcft/core/features/fsdp.py",
        "hpcft/launcher/runtimes/pyxis.py",
    ]:
        assert expected in names, expected
    assert not any(n.startswith(("launcher/", "trainer/", "hpcft/__init__.py")) for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", wheel], check=True, capture_output=True)
    installed = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
    assert not any(line.lower().startswith(f"{m}==") for m in HEAVY for line in installed.splitlines())
    # Run from a folder outside the checkout so that only the installed package can be found.
    shown = subprocess.run(
        [env_dir / "bin" / "hpcft", "profiles", "show", "cscs"], capture_output=True, text=True, cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    assert "com.hooks.aws_ofi_nccl.enabled" in shown.stdout
    # The axolotl key snapshot is read through the package, not the checkout.
    reference = subprocess.run([env_dir / "bin" / "hpcft", "reference"], capture_output=True, text=True, cwd=tmp_path)
    assert reference.returncode == 0 and "| `flash_attn_rms_norm` | accepted with a warning |" in reference.stdout


def test_the_launcher_version_is_pyprojects():
    tomllib = pytest.importorskip("tomllib")

    from hpcft.launcher import __version__

    pyproject = tomllib.loads((Path(ROOT) / "pyproject.toml").read_text())
    assert __version__ == pyproject["project"]["version"]


def test_the_cli_offers_the_backends_submit_knows():
    from hpcft.launcher.cli import build_parser
    from hpcft.launcher.jobs.submit import BACKENDS

    submit = build_parser()._subparsers._group_actions[0].choices["submit"]
    assert next(a for a in submit._actions if a.dest == "backend").choices == BACKENDS
