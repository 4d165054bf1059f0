"""The three arrows between hpcft's packages: the trainer imports only core (never the launcher), core imports
nothing else of hpcft, the launcher imports core (and never the trainer). Checked twice: statically, over every
import statement (function-level ones included, so a lazy import cannot hide an arrow), and at run time, on what
a compute node actually loads to read a train.yaml and start the trainer."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"core": "hpcft.core", "launcher": "hpcft.launcher", "trainer": "hpcft.trainer"}
# What each package may import of hpcft (besides itself).
ALLOWED = {
    "hpcft.core": (),
    "hpcft.launcher": ("hpcft.core", "hpcft.templates", "hpcft.cluster_profiles", "hpcft.edf", "hpcft.configs"),
    "hpcft.trainer": ("hpcft.core", "hpcft.templates", "hpcft.configs"),
}


def hpcft_imports(path: Path) -> list[tuple[int, str]]:
    """Every hpcft module a file imports, anywhere in it, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("hpcft")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("hpcft"):
            found.append((node.lineno, node.module))
            # `from hpcft import launcher` names a package, not a module of hpcft.
            if node.module == "hpcft":
                found += [(node.lineno, f"hpcft.{alias.name}") for alias in node.names]
    return found


def arrows_broken(folder: str) -> list[str]:
    own = PACKAGES[folder]
    allowed = (own, *ALLOWED[own])
    broken = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in hpcft_imports(path):
            if module != "hpcft" and not any(module == a or module.startswith(a + ".") for a in allowed):
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return broken


@pytest.mark.parametrize("folder", sorted(PACKAGES))
def test_each_package_imports_only_what_its_arrow_allows(folder):
    assert arrows_broken(folder) == []


def test_the_scan_sees_function_level_imports(tmp_path):
    # The check above would pass vacuously if the scan missed imports inside functions.
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from hpcft.launcher.config import load_job\n    import hpcft.trainer.train\n")
    assert [m for _, m in hpcft_imports(sample)] == ["hpcft.launcher.config", "hpcft.trainer.train"]


NODE_START = """
import json, sys
from hpcft.core.yaml_config import load_train_yaml
cfg = load_train_yaml(sys.argv[1])
after_yaml = sorted(m for m in sys.modules if m.startswith(("hpcft.launcher", "torch", "transformers")))
import hpcft.trainer.__main__, hpcft.trainer.train, hpcft.trainer.data.prepare, hpcft.trainer.merge_lora
after_trainer = sorted(m for m in sys.modules if m.startswith("hpcft.launcher"))
print(json.dumps({"model": cfg.base_model, "after_yaml": after_yaml, "after_trainer": after_trainer}))
"""


def test_a_node_loads_no_launcher_module(tmp_path):
    """Reading train.yaml is torch-free and launcher-free; starting the trainer loads no launcher module either."""
    train_yaml = tmp_path / "train.yaml"
    train_yaml.write_text("base_model: tiny\ndatasets:\n  - path: data.jsonl\n    type: alpaca\noutput_dir: out\n")
    run = subprocess.run([sys.executable, "-c", NODE_START, str(train_yaml)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.splitlines()[-1])
    assert seen == {"model": "tiny", "after_yaml": [], "after_trainer": []}


def test_folders_stay_small_and_say_what_they_hold():
    """No package holds more than 20 modules, and each opens with what lives there and what it may import."""
    for folder in ("core", "launcher", "trainer"):
        for init in (ROOT / folder).rglob("__init__.py"):
            modules = [p for p in init.parent.glob("*.py") if p.name != "__init__.py"]
            assert len(modules) <= 20, f"{init.parent.relative_to(ROOT)} holds {len(modules)} modules"
            doc = ast.get_docstring(ast.parse(init.read_text())) or ""
            assert "import" in doc, f"{init.relative_to(ROOT)}: say what lives here and what it may import"
