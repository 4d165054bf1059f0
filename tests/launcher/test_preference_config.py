"""Preference tuning configs on the login node: each method validates, rl: ipo warns, a bad row is named (tiny
configs, real files, the CLI in-process). The refusals are in the bad-input corpus (tests/data/bad_inputs/rl_*)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "examples"


@pytest.fixture
def preference_workspace(workspace: Path) -> Path:
    for name in ("preference.jsonl", "kto.jsonl"):
        shutil.copy(EXAMPLES / "data" / name, workspace / "data" / name)
    return workspace


def write(workspace: Path, text: str) -> Path:
    path = workspace / "pref.yaml"
    path.write_text("base_model: ./model\noutput_dir: ./out\nmicro_batch_size: 2\n" + text)
    return path


PAIRS = "datasets:\n  - path: ./data/preference.jsonl\n    type: chatml.intel\n"
UNPAIRED = "datasets:\n  - path: ./data/kto.jsonl\n    type: chatml.intel\n"


@pytest.mark.parametrize(
    ("method", "keys"),
    [
        (
            "dpo",
            "rl_beta: 0.1\ndpo_loss_type: [sigmoid, sft]\ndpo_loss_weights: [1.0, 0.5]\n"
            "dpo_label_smoothing: 0.1\nprecompute_ref_log_probs: true\ntrl:\n  beta: 0.2\n",
        ),
        ("orpo", "orpo_alpha: 0.1\nremove_unused_columns: false\n"),
        ("simpo", "rl_beta: 2.0\nsimpo_gamma: 0.5\ncpo_alpha: 0.0\n"),
        ("kto", "kto_desirable_weight: 1.0\nkto_undesirable_weight: 1.5\n"),
    ],
)
def test_each_method_validates(method, keys, preference_workspace, run_cli):
    data = UNPAIRED if method == "kto" else PAIRS
    result = run_cli(
        "validate",
        write(preference_workspace, f"rl: {method}\n{keys}{data}"),
        "--profile",
        "local",
        cwd=preference_workspace,
    )
    assert result.code == 0, result.err
    assert "Traceback" not in result.err


def test_rl_ipo_validates_with_a_deprecation_warning(preference_workspace, run_cli):
    result = run_cli(
        "validate", write(preference_workspace, f"rl: ipo\n{PAIRS}"), "--profile", "local", cwd=preference_workspace
    )
    assert result.code == 0, result.err
    assert "rl: ipo is deprecated" in result.err and "dpo_loss_type: [ipo]" in result.err


def test_a_missing_field_deep_in_a_file_is_named_by_file_row_and_field(preference_workspace, run_cli):
    rows = (preference_workspace / "data" / "preference.jsonl").read_text().splitlines()
    broken = json.loads(rows[40])
    del broken["rejected"]
    rows[40] = json.dumps(broken)
    (preference_workspace / "data" / "preference.jsonl").write_text("\n".join(rows) + "\n")
    result = run_cli(
        "validate", write(preference_workspace, f"rl: dpo\n{PAIRS}"), "--profile", "local", cwd=preference_workspace
    )
    assert result.code == 2
    assert "data/preference.jsonl: row 41: missing field 'rejected'" in result.err
    assert "question, chosen, rejected" in result.err  # what the type reads
