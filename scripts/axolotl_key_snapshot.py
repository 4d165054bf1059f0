"""Write the snapshot of axolotl's config key space that core/axolotl_keys.py classifies.

Reads an axolotl checkout's pydantic schema with `ast` (importing axolotl would need torch and its whole
dependency tree): every field of `AxolotlInputConfig` and its bases, every plugin's argument class, every field
of the dataset classes, the plugins' dotted names, and the values axolotl names for `chat_template`, its own
optimizers, `rl` and dataset `type`. Usage:

    python scripts/axolotl_key_snapshot.py /path/to/axolotl [--commit SHA] > launcher/axolotl_keys.txt
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

# Dataset entry classes of `datasets:` / `test_datasets:` (SFT, preference, reward, synthetic, pretraining).
DATASET_CLASSES = (
    "SFTDataset",
    "DPODataset",
    "KTODataset",
    "StepwiseSupervisedDataset",
    "SyntheticDataset",
    "PretrainingDataset",
)


def _classes(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """class name -> (base names, YAML keys): field names and their aliases (populate_by_name accepts both)."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
        keys: list[str] = []
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            name = item.target.id
            if name == "model_config" or "ClassVar" in ast.unparse(item.annotation):
                continue
            keys.append(name)
            if isinstance(item.value, ast.Call):
                for kw in item.value.keywords:
                    if kw.arg == "alias" and isinstance(kw.value, ast.Constant):
                        keys.append(kw.value.value)
                    if kw.arg == "validation_alias" and isinstance(kw.value, ast.Call):
                        keys += [a.value for a in kw.value.args if isinstance(a, ast.Constant)]
        found[node.name] = (bases, keys)
    return found


def _all_keys(name: str, classes: dict[str, tuple[list[str], list[str]]]) -> set[str]:
    if name not in classes:
        return set()
    bases, keys = classes[name]
    out = set(keys)
    for base in bases:
        out |= _all_keys(base, classes)
    return out


def _enum_values(path: Path, name: str) -> list[str]:
    """The string values of `class <name>(str, Enum)` in a schema module."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return [
                item.value.value
                for item in node.body
                if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant)
            ]
    raise SystemExit(f"{path}: no enum {name}")


def _dataset_types(src: Path) -> list[str]:
    """Dataset `type:` names: prompt-strategy modules, and the legacy handlers keyed by name in data/wrappers.py."""
    strategies = src / "prompt_strategies"
    names = {
        p.stem
        for p in strategies.iterdir()
        if (p.suffix == ".py" or p.is_dir())
        and not p.name.startswith("_")
        and p.stem not in ("base", "jinja_template_analyzer", "user_defined")
    }
    wrappers = src / "utils" / "data" / "wrappers.py"
    if wrappers.exists():
        for node in ast.parse(wrappers.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "DATASET_HANDLERS" for t in node.targets):
                names |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return sorted(names)


def _plugins(src: Path) -> dict[str, str | None]:
    """Plugin dotted name (as written under `plugins:`) -> its argument class name (or None)."""
    plugins: dict[str, str | None] = {}
    for path in sorted((src / "integrations").glob("*/*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not (isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "BasePlugin" for b in node.bases)):
                continue
            args_class = None
            for item in ast.walk(node):
                if isinstance(item, ast.FunctionDef) and item.name == "get_input_args":
                    for ret in ast.walk(item):
                        if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Constant):
                            args_class = str(ret.value.value).rsplit(".", 1)[1]
            # Users write the package path (axolotl.integrations.liger.LigerPlugin), not the module's file.
            plugins[f"axolotl.integrations.{path.parent.name}.{node.name}"] = args_class
    return plugins


def snapshot(root: Path, commit: str) -> str:
    src = root / "src" / "axolotl"
    classes: dict[str, tuple[list[str], list[str]]] = {}
    for path in sorted((src / "utils" / "schemas").glob("*.py")):
        classes.update(_classes(path))
    plugin_classes: dict[str, tuple[list[str], list[str]]] = {}
    for path in sorted((src / "integrations").glob("*/args.py")):
        plugin_classes.update(_classes(path))
    top = _all_keys("AxolotlInputConfig", classes)
    plugins = _plugins(src)
    plugin_keys: dict[str, str] = {}
    for plugin, args_class in plugins.items():
        for key in _all_keys(args_class or "", plugin_classes):
            plugin_keys.setdefault(key, plugin)
    dataset: set[str] = set()
    for name in DATASET_CLASSES:
        dataset |= _all_keys(name, classes)
    lines = [
        f"# axolotl config key space at commit {commit}",
        "# generated by scripts/axolotl_key_snapshot.py; do not edit by hand",
        "# <section> <key> [plugin that adds it]",
    ]
    lines += [f"top {key}" for key in sorted(top)]
    lines += [f"top {key} {plugin}" for key, plugin in sorted(plugin_keys.items()) if key not in top]
    lines += [f"dataset {key}" for key in sorted(dataset)]
    lines += [f"plugin {plugin}" for plugin in sorted(plugins)]
    enums = src / "utils" / "schemas" / "enums.py"
    lines += [f"chat_template {name}" for name in sorted(_enum_values(enums, "ChatTemplate"))]
    lines += [f"optimizer {name}" for name in sorted(_enum_values(enums, "CustomSupportedOptimizers"))]
    lines += [f"rl {name}" for name in sorted(_enum_values(enums, "RLType"))]
    lines += [f"dataset_type {name}" for name in _dataset_types(src)]
    return "\n".join(lines) + "\n"


def axolotl_commit(root: Path) -> str:
    """The checkout's commit, or "" when it is a plain copy without .git."""
    result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("axolotl", type=Path, help="an axolotl git checkout")
    parser.add_argument("--commit", help="the checkout's commit (default: git rev-parse HEAD in it)")
    args = parser.parse_args(argv)
    commit = args.commit or axolotl_commit(args.axolotl)
    if not commit:
        parser.error(f"{args.axolotl} is not a git checkout; name its commit with --commit")
    sys.stdout.write(snapshot(args.axolotl, commit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
