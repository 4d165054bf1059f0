"""Objectives are objects chosen from the config: prepare and build_trainer ask the objective, they do not branch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hpcft.core.schema import TrainConfig
from hpcft.trainer.objectives import OBJECTIVES, objective_for

ROOT = Path(__file__).resolve().parents[2]
BASE = {"base_model": "m", "datasets": [{"path": "d.jsonl", "type": "alpaca"}], "output_dir": "o"}


@pytest.mark.parametrize(
    ("keys", "name"),
    [
        ({}, "sft"),
        ({"rl": "dpo", "datasets": [{"path": "d.jsonl", "type": "chatml.intel"}]}, "preference"),
        ({"reward_model": True, "datasets": [{"path": "d.jsonl", "type": "bradley_terry.chat_template"}]}, "reward"),
        ({"diffusion": {}, "plugins": ["axolotl.integrations.diffusion.DiffusionPlugin"]}, "diffusion"),
        ({"processor_type": "AutoProcessor", "datasets": [{"path": "d.jsonl", "type": "chat_template"}]}, "multimodal"),
    ],
)
def test_the_config_picks_its_objective(keys, name):
    assert objective_for(TrainConfig.model_validate({**BASE, **keys})).name == name


def test_every_objective_is_registered_once():
    assert sorted(OBJECTIVES) == ["diffusion", "multimodal", "preference", "reward", "sft"]


@pytest.mark.parametrize(
    ("module", "function"), [("data/prepare.py", "_tokenize_group"), ("train.py", "build_trainer")]
)
def test_prepare_and_build_trainer_do_not_branch_on_the_objective(module, function):
    tree = ast.parse((ROOT / "trainer" / module).read_text())
    body = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    keys = {"rl", "reward_model", "process_reward_model", "diffusion", "processor_type"}
    tested = [
        node.attr
        for test in ast.walk(body)
        if isinstance(test, (ast.If, ast.IfExp))
        for node in ast.walk(test.test)
        if isinstance(node, ast.Attribute) and node.attr in keys
    ]
    assert tested == []
