"""`hpcft image build --local`: what its two cached stages are keyed by, and its one-line refusals. (The build
itself runs in scripts/test.sh; tests/slurm/test_container_jobs.py runs jobs in what it wrote.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hpcft.core.errors import ConfigError
from hpcft.launcher.runtimes.image import read_checkout
from hpcft.launcher.runtimes.image_local import build_env, deps_key, find_torch_wheel, image_key

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    for name in ("pyproject.toml", "README.md", "containers", "launcher", "templates", "edf", "configs"):
        source = REPO / name
        shutil.copytree(source, root / name) if source.is_dir() else shutil.copy(source, root / name)
    for name in ("trainer", "cluster_profiles"):
        (root / name).mkdir()
        (root / name / "a.py").write_text("x = 1\n")
    return read_checkout(root)


def _keys(checkout, wheel="/w/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"):
    deps = deps_key(checkout, build_env(checkout, Path(wheel)))
    return deps, image_key(checkout, deps)


def test_hpcft_code_changes_the_image_but_not_the_dependency_stage(checkout):
    deps, image = _keys(checkout)
    assert _keys(checkout) == (deps, image)  # the same content, the same keys
    (checkout.root / "trainer" / "a.py").write_text("x = 2\n")
    changed = _keys(checkout)
    assert changed[0] == deps and changed[1] != image
    (checkout.root / "tests").mkdir()  # not copied into the image: no rebuild
    (checkout.root / "tests" / "t.py").write_text("")
    (checkout.root / "trainer" / "__pycache__").mkdir()
    (checkout.root / "trainer" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert _keys(checkout) == changed


def test_the_install_script_or_the_wheel_change_both_stages(checkout):
    deps, image = _keys(checkout)
    assert _keys(checkout, "/elsewhere/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")[0] == deps
    assert _keys(checkout, "/w/torch-2.13.0+cpu-cp311-cp311-manylinux_2_17_x86_64.whl")[0] != deps
    script = checkout.root / "containers" / "install-hpcft.sh"
    script.write_text(script.read_text() + "\n# changed\n")
    changed = _keys(checkout)
    assert changed[0] != deps and changed[1] != image


def test_the_cpu_image_leaves_out_the_gpu_extra_and_builds_the_shm_op(checkout):
    env = build_env(checkout, Path("/w/torch.whl"))
    assert env["HPCFT_EXTRAS"] == "train" and env["DS_BUILD_SHM_COMM"] == "1" and env["DS_ACCELERATOR"] == "cpu"
    assert env["TORCH_VERSION"] == checkout.pins["torch"] and env["HPCFT_VERSION"] == checkout.version


def test_a_missing_torch_wheel_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.delenv("HPCFT_TORCH_WHEEL", raising=False)
    with pytest.raises(ConfigError, match="HPCFT_TORCH_WHEEL"):
        find_torch_wheel("0.0.1")
    monkeypatch.setenv("HPCFT_TORCH_WHEEL", str(tmp_path / "nope.whl"))
    with pytest.raises(ConfigError, match="is not a file"):
        find_torch_wheel("2.13.0")


def test_local_has_no_dry_run(run_cli):
    result = run_cli("image", "build", "--local", "--dry-run", "--context", REPO)
    assert result.code == 2 and "--local builds an enroot .sqsh and has no --dry-run" in result.err
    assert "Traceback" not in result.err


def test_the_image_stage_of_the_build_script_keys_only_the_image(checkout):
    deps, image = _keys(checkout)
    script = checkout.root / "containers" / "build-local-image.sh"
    text = script.read_text()
    script.write_text(text.replace("cmd_image() {", "cmd_image() {\n    : image stage edited", 1))
    changed = _keys(checkout)
    assert changed[0] == deps and changed[1] != image
    script.write_text(text.replace("make_rootfs() {", "make_rootfs() {\n    : rootfs edited", 1))
    assert _keys(checkout)[0] != deps
