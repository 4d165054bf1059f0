"""cosine_constant_lr_ratio and optimizer: muon on the tiny model with the real transformers Trainer: the rate of
every step (in one process, across a resume, and under DeepSpeed ZeRO-2 on two processes), which parameters
Muon and AdamW get, a falling loss and a resumed Muon run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hpcft.trainer.loop.muon import MuonWithAdamW, split_parameters
from hpcft.trainer.loop.schedule_shape import ScheduleShapeCallback, cosine_then_constant

from .test_training_loop import RecordRates, make_trainer


def _cosine(progress: float, floor: float) -> float:
    return (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)) + floor


# lr 1e-3, 2 warmup steps, 10 steps, cosine_constant_lr_ratio 0.6 (the floor from step 6), cosine_min_lr_ratio 0.1.
PINNED_RATES = [0.0, 5e-4, 1e-3, 8.6819805e-4, 5.5e-4, 2.3180195e-4, 1e-4, 1e-4, 1e-4, 1e-4]
CONSTANT = {
    "lr_scheduler": "cosine",
    "learning_rate": 1e-3,
    "warmup_steps": 2,
    "max_steps": 10,
    "cosine_min_lr_ratio": 0.1,
    "cosine_constant_lr_ratio": 0.6,
    "micro_batch_size": 1,
    "optimizer": "sgd",
    "save_steps": 5,
}


def test_cosine_then_constant_is_axolotls_formula():
    factor = cosine_then_constant(warmup_steps=10, total_steps=100, constant_ratio=0.8, min_ratio=0.2)
    # axolotl: warmup, then cos over (step - 10) / (80 - 10), frozen from step 80 on.
    expected = [s / 10 for s in range(10)] + [_cosine((min(s, 80) - 10) / 70, 0.2) for s in range(10, 100)]
    assert [factor(s) for s in range(100)] == pytest.approx(expected)
    assert factor(80) == factor(99) == pytest.approx(0.2)
    # The floor inside the warmup (axolotl's progress would go negative): the floor right after the warmup.
    early = cosine_then_constant(warmup_steps=10, total_steps=100, constant_ratio=0.05, min_ratio=0.3)
    assert [early(s) for s in (5, 10, 50)] == pytest.approx([0.5, 0.3, 0.3])


def test_cosine_constant_lr_ratio_pins_the_rate_of_every_step_and_survives_a_resume(train_config):
    cfg = train_config(**CONSTANT)
    assert PINNED_RATES[3] == pytest.approx(1e-3 * _cosine(0.25, 0.1))
    rates = RecordRates()
    trainer = make_trainer(cfg, [ScheduleShapeCallback.from_config(cfg), rates])
    trainer.train()
    assert rates.rates == pytest.approx(PINNED_RATES, rel=1e-6, abs=1e-12)

    resumed = RecordRates()
    trainer = make_trainer(cfg, [ScheduleShapeCallback.from_config(cfg), resumed])
    trainer.train(resume_from_checkpoint=str(Path(cfg.output_dir) / "checkpoint-5"))
    assert resumed.rates == pytest.approx(PINNED_RATES[5:], rel=1e-6, abs=1e-12)


def test_cosine_constant_lr_ratio_zero_is_off_as_in_axolotl(train_config):
    # axolotl's llama-3 QAT/FP8 examples set 0 with cosine_min_lr_ratio 1.0: a flat rate after the warmup.
    cfg = train_config(**{**CONSTANT, "cosine_constant_lr_ratio": 0, "cosine_min_lr_ratio": 1.0})
    assert ScheduleShapeCallback.from_config(cfg) is None
    rates = RecordRates()
    make_trainer(cfg, [rates]).train()
    assert rates.rates == pytest.approx([0.0, 5e-4] + [1e-3] * 8)


def _muon_trainer(train_config, callbacks=(), **keys):
    from hpcft.trainer.loop.muon import muon_optimizer

    cfg = train_config(optimizer="muon", learning_rate=0.02, max_steps=12, micro_batch_size=2, **keys)
    trainer = make_trainer(cfg, list(callbacks))
    # As trainer/train.py builds it: the Trainer receives the Muon factory.
    trainer.optimizer_cls_and_kwargs = muon_optimizer(cfg, trainer.args)
    return cfg, trainer


def test_muon_trains_hidden_matrices_with_muon_and_the_rest_with_adamw(train_config):
    losses = []

    class Losses(RecordRates):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    cfg, trainer = _muon_trainer(train_config, [Losses()], logging_steps=1, save_steps=6)
    trainer.train()
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert isinstance(optimizer, MuonWithAdamW)
    assert isinstance(optimizer.muon, torch.optim.Muon) and isinstance(optimizer.adamw, torch.optim.AdamW)
    muon, adamw = split_parameters(trainer.model)
    muon_names, adamw_names = {n for n, _ in muon}, {n for n, _ in adamw}
    assert muon_names and all(p.ndim == 2 for _, p in muon)
    assert any(n.endswith("q_proj.weight") for n in muon_names) and any("mlp" in n for n in muon_names)
    assert not any("embed" in n or "lm_head" in n or "norm" in n for n in muon_names)
    assert any("embed_tokens" in n for n in adamw_names) and any("norm" in n for n in adamw_names)
    assert {id(p) for g in optimizer.muon.param_groups for p in g["params"]} == {id(p) for _, p in muon}
    # Both optimizers moved their parameters, under one schedule (the cosine's last rate on every group).
    assert [n for n, p in muon + adamw if not optimizer.state[p]] == []
    assert len({g["lr"] for g in optimizer.param_groups}) == 1
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.1, losses

    # A resume restores both optimizers' state from the checkpoint.
    saved = torch.load(Path(cfg.output_dir) / "checkpoint-6" / "optimizer.pt", weights_only=False)
    assert len(saved["inner"]) == 2 and saved["inner"][0]["state"]
    rates = RecordRates()
    _, resumed = _muon_trainer(train_config, [rates], logging_steps=1, save_steps=6)
    resumed.train(resume_from_checkpoint=str(Path(cfg.output_dir) / "checkpoint-6"))
    assert len(rates.rates) == 6


def test_muon_refuses_a_deepspeed_train_yaml(train_config):
    from transformers import TrainingArguments

    from hpcft.core.errors import ConfigError
    from hpcft.trainer.loop.muon import muon_optimizer

    cfg = train_config(optimizer="muon")
    args = TrainingArguments(output_dir=cfg.output_dir, fsdp="full_shard", use_cpu=True)
    with pytest.raises(ConfigError, match="optimizer: muon needs whole weight matrices"):
        muon_optimizer(cfg, args)


@pytest.mark.slow
def test_cosine_constant_lr_ratio_runs_under_deepspeed_on_two_processes(train_config, tmp_path):
    import json

    from .test_train_single import write_config
    from .test_train_zero3 import torchrun

    cfg = train_config(**{**CONSTANT, "optimizer": "adamw_torch", "deepspeed": "zero2", "logging_steps": 1})
    result = torchrun(write_config(cfg, tmp_path / "train.yaml"))
    assert result.returncode == 0, result.why
    assert "then constant" in result.log
    lines = [json.loads(x) for x in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    logged = [x["lr"] for x in lines if x.get("loss") is not None]
    # Each metrics line carries the rate its step ran with: the same as in one process without DeepSpeed.
    assert logged == pytest.approx(PINNED_RATES, rel=1e-6, abs=1e-12)


@pytest.mark.slow
def test_axolotl_muon_pretrain_example_trains_two_steps(tmp_path, monkeypatch):
    """axolotl's examples/qwen2/muon-pretrain-fsdp2.yaml (kept in tests/data/axolotl_style) through hpcft's trainer,
    its model swapped for a tiny Qwen2 and its streamed C4 for a local file, as the compatibility matrix
    (bench/axolotl_examples.py) runs it: Muon + AdamW on plain DDP, reinit_weights, pretraining_dataset."""
    import importlib.util
    import sys

    import yaml

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("axolotl_examples", root / "bench" / "axolotl_examples.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(bench)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = tmp_path / "qwen2-muon-pretrain-fsdp2.yaml"
    config.write_text((root / "tests" / "data" / "axolotl_style" / config.name).read_text())
    outcome = bench.validate_one(config, config.name)
    assert outcome.result == "accepted", outcome.detail
    result, detail = bench.train_one(outcome, tmp_path, {}, timeout=300)
    assert result == "trained" and detail.startswith("2 steps, loss "), detail
    run = tmp_path / "train" / "qwen2_muon_pretrain_fsdp2_yaml"
    trained = yaml.safe_load((run / "train.yaml").read_text())
    assert trained["optimizer"] == "muon" and "deepspeed" not in trained and not trained.get("fsdp_config")


def test_muon_decays_matrices_and_embeddings_but_not_norms(train_config):
    from transformers import TrainingArguments

    from hpcft.trainer.loop.args import Precision
    from hpcft.trainer.loop.muon import build_muon
    from hpcft.trainer.model.loading import load_model, load_tokenizer

    cfg = train_config(optimizer="muon", weight_decay=0.1)
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    optimizer = build_muon(model, TrainingArguments(output_dir=cfg.output_dir, weight_decay=0.1, learning_rate=0.02))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.1, 0.0]
    assert all(p.ndim == 2 for p in optimizer.param_groups[1]["params"])
    assert all(p.ndim == 1 for p in optimizer.param_groups[2]["params"])
    assert {g["lr"] for g in optimizer.param_groups} == {0.02}
