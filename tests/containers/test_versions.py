"""The image recipes cannot drift from pyproject.toml: every pinned version of the `train` and `gpu` extras is the
one the Dockerfile and the Apptainer definition install, and every file they copy exists."""

from __future__ import annotations

import fnmatch
import re
import shutil
import sys

import pytest

from hpcft.launcher.runtimes.image import (
    APPTAINER_DEF,
    DOCKERFILE,
    INSTALL_SCRIPT,
    build_arg_name,
    def_arguments,
    dockerfile_args,
    read_checkout,
    version_drift,
)

from .conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _pyproject_pins() -> dict[str, str]:
    # Read independently of hpcft.launcher.runtimes.image, so a bug in its parser cannot hide a drift.
    pins = {}
    for extra in ("train", "gpu"):
        for requirement in PYPROJECT["project"]["optional-dependencies"][extra]:
            name, sep, version = requirement.partition("==")
            if sep:
                pins[name.strip()] = version.strip()
    return pins


def test_every_pin_is_what_the_recipes_install():
    pins = _pyproject_pins()
    assert {
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "deepspeed",
        "datasets",
        "bitsandbytes",
        "flash-attn",
    } <= set(pins)
    dockerfile = dockerfile_args((REPO / DOCKERFILE).read_text())
    definition = def_arguments((REPO / APPTAINER_DEF).read_text())
    for name, version in pins.items():
        arg = build_arg_name(name)
        assert dockerfile[arg] == version, f"{DOCKERFILE}: {arg}={dockerfile[arg]}, pyproject.toml: {name}=={version}"
        assert definition[arg] == version, f"{APPTAINER_DEF}: {arg}={definition[arg]}, pyproject: {name}=={version}"
    assert dockerfile["HPCFT_VERSION"] == definition["HPCFT_VERSION"] == PYPROJECT["project"]["version"]
    assert version_drift(read_checkout(REPO)) == []


def test_both_recipes_start_from_the_same_multi_arch_ngc_image():
    dockerfile = (REPO / DOCKERFILE).read_text()
    definition = (REPO / APPTAINER_DEF).read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/pytorch:\$\{NGC_TAG\}$", dockerfile, re.M)
    assert re.search(r"^From: nvcr\.io/nvidia/pytorch:\{\{ NGC_TAG \}\}$", definition, re.M)
    tag = dockerfile_args(dockerfile)["NGC_TAG"]
    assert tag == def_arguments(definition)["NGC_TAG"]
    assert re.fullmatch(r"\d\d\.\d\d-py3", tag)


@pytest.fixture
def checkout_copy(tmp_path):
    """A copy of the files version_drift reads, to break on purpose."""
    for rel in ("pyproject.toml", DOCKERFILE, APPTAINER_DEF, INSTALL_SCRIPT):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    return tmp_path


def test_a_changed_pin_is_reported_for_both_recipes(checkout_copy):
    pyproject = checkout_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"transformers==', '"transformers==9.9.9+x', 1))
    drift = version_drift(read_checkout(checkout_copy))
    assert any(str(DOCKERFILE) in p and "TRANSFORMERS_VERSION" in p for p in drift), drift
    assert any(str(APPTAINER_DEF) in p and "TRANSFORMERS_VERSION" in p for p in drift), drift


def test_a_new_pin_without_a_build_arg_is_reported(checkout_copy):
    pyproject = checkout_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"tokenizers",', '"tokenizers==0.99.0",', 1))
    drift = version_drift(read_checkout(checkout_copy))
    assert f"{DOCKERFILE}: TOKENIZERS_VERSION is None, pyproject.toml says '0.99.0'" in drift
    assert any("does not install tokenizers at ${TOKENIZERS_VERSION}" in p for p in drift)


def test_an_install_step_that_ignores_the_pin_is_reported(checkout_copy):
    script = checkout_copy / INSTALL_SCRIPT
    script.write_text(script.read_text().replace('"peft==${PEFT_VERSION}"', '"peft==0.1.0"'))
    assert version_drift(read_checkout(checkout_copy)) == [
        f"{INSTALL_SCRIPT}: does not install peft at ${{PEFT_VERSION}}"
    ]


def test_a_stale_build_arg_is_reported(checkout_copy):
    dockerfile = checkout_copy / DOCKERFILE
    stale = dockerfile.read_text().replace("ARG PEFT_VERSION", "ARG XFORMERS_VERSION=0.1\nARG PEFT_VERSION")
    dockerfile.write_text(stale)
    assert version_drift(read_checkout(checkout_copy)) == [
        f"{DOCKERFILE}: XFORMERS_VERSION pins a package that pyproject.toml's extras do not pin"
    ]


def _package_dirs() -> set[str]:
    return set(PYPROJECT["tool"]["setuptools"]["package-dir"].values())


def test_the_dockerfile_copies_every_package_and_nothing_missing():
    copies = re.findall(r"^COPY\s+(.+)\s+\S+$", (REPO / DOCKERFILE).read_text(), re.M)
    sources = {word for line in copies for word in line.split()}
    for source in sources:
        assert (REPO / source).exists(), f"{DOCKERFILE} copies {source}, which is not in the repository"
    assert _package_dirs() | {"pyproject.toml", PYPROJECT["project"]["readme"]} <= sources


def test_the_definition_copies_every_package_and_nothing_missing():
    text = (REPO / APPTAINER_DEF).read_text()
    files = re.search(r"^%files\s*$(.*?)^%", text, re.M | re.S).group(1)
    lines = files.replace("{{ SRC }}/", "").splitlines()
    sources = {line.split()[0] for line in lines if line.strip()}
    for source in sources:
        assert (REPO / source).exists(), f"{APPTAINER_DEF} copies {source}, which is not in the repository"
    assert _package_dirs() | {"pyproject.toml", PYPROJECT["project"]["readme"]} <= sources


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, as far as the image needs them: the last pattern matching the path or one of its
    parent folders decides; `!` re-includes; `**/name` matches at any depth."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]

    def matches(candidate: str, glob: str) -> bool:
        if glob.startswith("**/"):
            return fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], glob[3:])
        return fnmatch.fnmatchcase(candidate, glob)

    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if any(matches(c, pattern.removeprefix("!")) for c in candidates):
            ignored = not negate
    return ignored


def test_the_build_context_keeps_what_the_dockerfile_copies():
    lines = (REPO / "containers" / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copies = re.findall(r"^COPY\s+(.+)\s+\S+$", (REPO / DOCKERFILE).read_text(), re.M)
    for source in {word for line in copies for word in line.split()}:
        assert not _ignored(source, patterns), f"Dockerfile.dockerignore drops {source}, which the Dockerfile copies"
    for local in (".venv", "runs", "outputs", "tests", "launcher/__pycache__", "containers/Dockerfile"):
        assert _ignored(local, patterns), local
