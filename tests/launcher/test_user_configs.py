"""The corpus of users' own axolotl configs (bench/user_configs/, sources in SOURCES.tsv): each still validates, or
is refused with the reason recorded in EXPECTED.tsv, so a regression (or an improvement) shows by name.

After a deliberate change, rerun `python bench/user_configs.py --write-expected --no-record` and review the diff.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "bench" / "user_configs"
with (CORPUS / "EXPECTED.tsv").open(newline="") as f:
    EXPECTED = {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


def _bench():
    """bench/user_configs.py as a module (bench/ is not a package)."""
    if "user_configs" not in sys.modules:
        sys.path.insert(0, str(ROOT / "bench"))
        spec = importlib.util.spec_from_file_location("user_configs", ROOT / "bench" / "user_configs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["user_configs"]


def test_corpus_is_complete_and_sourced():
    files = {p.name for p in _bench().corpus_files()}
    with (CORPUS / "SOURCES.tsv").open(newline="") as f:
        sources = {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}
    assert len(files) >= 60
    assert files == set(sources) == set(EXPECTED)
    assert all(len(row["commit"]) == 40 and "/" in row["repo"] for row in sources.values())
    # Not copies of axolotl's own examples: each differs from the closest one in more than 5% of its lines.
    assert all(float(row["closest_axolotl_example_similarity"]) < 0.95 for row in sources.values())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_users_config_gets_its_recorded_outcome(name, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    outcome = _bench().hpcft_outcome(CORPUS / name, tmp_path)
    assert outcome.result != "traceback", outcome.detail
    assert (outcome.result, outcome.detail) == (EXPECTED[name]["result"], EXPECTED[name]["detail"])
