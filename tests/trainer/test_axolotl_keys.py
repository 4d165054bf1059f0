"""axolotl keys with their axolotl meaning: DoRA/rsLoRA, unfrozen_parameters, rope_scaling, NEFTune, torch_compile,
early stopping and the loss watchdog, dataset shards, axolotl's deepspeed_configs paths, and hub_model_id (an
unreachable Hub ends the run with one error and the trained model kept)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainerControl, TrainerState

from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig
from hpcft.launcher.config import axolotl_deepspeed_preset, load_job
from hpcft.trainer.data.data_sources import load_raw_dataset
from hpcft.trainer.loop.args import Precision, training_arguments
from hpcft.trainer.loop.stopping import LossWatchdogCallback
from hpcft.trainer.model.freeze import freeze_except
from hpcft.trainer.model.loading import load_model, load_tokenizer
from hpcft.trainer.reporting.metrics import METRICS_FILE

LORA = {"adapter": "lora", "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"]}


def test_dora_and_rslora_reach_peft(train_config):
    cfg = train_config(**LORA, peft_use_dora=True, peft_use_rslora=True)
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    peft_config = model.peft_config["default"]
    assert peft_config.use_dora and peft_config.use_rslora
    assert any("lora_magnitude_vector" in n for n, _ in model.named_parameters())


def test_unfrozen_parameters_train_only_what_they_match(tiny_model):
    patterns = ["^lm_head.weight$", "model.layers.1.mlp.+", "^model.embed_tokens.weight$[:10]"]
    trainable = freeze_except(tiny_model, patterns)
    names = {n for n, p in tiny_model.named_parameters() if p.requires_grad}
    assert names == {
        "lm_head.weight",
        "model.embed_tokens.weight",
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
    }
    ids = torch.arange(3, 40).unsqueeze(0)
    tiny_model(input_ids=ids, labels=ids).loss.backward()
    embed = tiny_model.get_input_embeddings().weight.grad
    assert embed[3:10].abs().sum() > 0 and embed[10:].abs().sum() == 0  # only rows 0..9 of the embeddings train
    assert trainable < sum(p.numel() for p in tiny_model.parameters())
    # `.` is a literal dot: "model.layers.1" does not match "model_layers_1"
    with pytest.raises(ConfigError, match="match no parameter"):
        freeze_except(tiny_model, ["model_layers_1"])


def test_rope_scaling_overrides_only_what_it_names(train_config, tiny_model):
    cfg = train_config(rope_scaling={"type": "linear", "factor": 4.0})
    model = load_model(cfg, load_tokenizer(cfg), Precision()).eval()
    assert model.config.rope_parameters == {"rope_theta": 10000.0, "rope_type": "linear", "factor": 4.0}
    ids = torch.arange(3, 60).unsqueeze(0)
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, tiny_model(ids).logits, atol=1e-4)


def test_training_arguments_for_neftune_compile_and_early_stopping(train_config):
    cfg = train_config(
        neftune_noise_alpha=5,
        torch_compile=True,
        torch_compile_mode="max-autotune",
        early_stopping_patience=2,
        val_set_size=0.1,
    )
    args = training_arguments(cfg, Precision(), None, num_train_rows=100, has_eval=True, world_size=1)
    assert args.neftune_noise_alpha == 5
    assert args.torch_compile and args.torch_compile_mode == "max-autotune"
    assert args.metric_for_best_model == "eval_loss" and args.greater_is_better is False
    auto = training_arguments(train_config(torch_compile="auto"), Precision(), None, 100, False, 1)
    assert not auto.torch_compile  # auto compiles on CUDA GPUs only


def test_early_stopping_needs_evaluation_data(train_config):
    with pytest.raises(ValueError, match="early_stopping_patience needs evaluation data"):
        train_config(early_stopping_patience=3)


def test_loss_watchdog_stops_after_patience_logged_steps_in_a_row():
    watchdog, state, control = LossWatchdogCallback(threshold=5.0, patience=2), TrainerState(), TrainerControl()
    for loss, stops in [(6.0, False), (4.0, False), (6.0, False), (7.0, True)]:
        watchdog.on_log(None, state, control, logs={"loss": loss})
        assert control.should_training_stop is stops


def test_shards_keep_one_disjoint_part_of_the_shuffled_rows(chat_dataset):
    parts = [load_raw_dataset(DatasetConfig(**chat_dataset, shards=4, shards_idx=i), seed=7) for i in range(4)]
    assert [len(p) for p in parts] == [50, 50, 50, 50]
    every_row = load_raw_dataset(DatasetConfig(**chat_dataset))
    # together the shards are every row once
    assert sorted(json.dumps(r, sort_keys=True) for p in parts for r in p) == sorted(
        json.dumps(r, sort_keys=True) for r in every_row
    )
    with pytest.raises(ConfigError, match="shards_idx 4 is not below shards"):
        load_raw_dataset(DatasetConfig(**chat_dataset, shards=4, shards_idx=4))


@pytest.mark.parametrize(
    ("path", "preset"),
    [
        ("deepspeed_configs/zero1.json", "zero1"),
        ("deepspeed_configs/zero2_torch_compile.json", "zero2"),
        ("../axolotl/deepspeed_configs/zero3_bf16.json", "zero3"),
        ("deepspeed_configs/zero3_bf16_cpuoffload_params.json", "zero3_offload"),
        ("deepspeed_configs/zero3_bf16_cpuoffload_all.json", "zero3_offload"),
        ("my/zero3.json", None),
    ],
)
def test_axolotl_deepspeed_files_map_to_presets(path, preset):
    assert axolotl_deepspeed_preset(path) == preset


def test_an_axolotl_deepspeed_file_next_to_the_config_wins(tmp_path, tiny_model_dir, chat_dataset):
    config = tmp_path / "cfg.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "datasets": [chat_dataset],
                "output_dir": str(tmp_path / "out"),
                "deepspeed": "deepspeed_configs/zero3_bf16.json",
            }
        )
    )
    job = load_job(config, "local")
    assert job.cfg.deepspeed == "zero3"
    assert any("is not next to the config; using hpcft's preset zero3" in w for w in job.warnings)
    (tmp_path / "deepspeed_configs").mkdir()
    (tmp_path / "deepspeed_configs" / "zero3_bf16.json").write_text('{"zero_optimization": {"stage": 3}}')
    job = load_job(config, "local")
    assert job.cfg.deepspeed == str(tmp_path / "deepspeed_configs" / "zero3_bf16.json")


def test_run_with_watchdog_shards_unfrozen_layers_and_an_unreachable_hub(
    train_config, tmp_path, chat_dataset, tiny_model_dir
):
    """One real run: the loss watchdog stops it at step 2 (every loss is above 0), it trained on half the rows with
    NEFTune noise and only layer 1, saved the model, then the push to an unreachable Hub fails with one error."""
    from transformers import AutoModelForCausalLM

    cfg = train_config(
        datasets=[{**chat_dataset, "shards": 2}],
        sequence_len=128,
        sample_packing=True,
        micro_batch_size=2,
        max_steps=10,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        loss_watchdog_threshold=0.0,
        loss_watchdog_patience=2,
        neftune_noise_alpha=5.0,
        unfrozen_parameters=["model.layers.1.+"],
        hub_model_id="someone/tiny",
    )
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg.training_dict()))
    run = subprocess.run(
        [sys.executable, "-m", "hpcft.trainer", "train", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "2", "HF_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert run.returncode == 1, run.stderr[-3000:]
    steps = [json.loads(line) for line in (Path(cfg.output_dir) / METRICS_FILE).read_text().splitlines()]
    assert [m["step"] for m in steps if "loss" in m] == [1, 2]
    assert "loss_watchdog: loss" in run.stderr and "stopping at step 2" in run.stderr
    assert ": 100 rows ->" in run.stdout  # one of two shards of the 200 conversations
    assert run.stderr.count("hpcft: error:") == 1
    assert "Hugging Face Hub is unreachable" in run.stderr and f"kept in {cfg.output_dir}" in run.stderr
    trained = AutoModelForCausalLM.from_pretrained(cfg.output_dir).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert torch.equal(trained["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])
    assert not torch.equal(trained["model.layers.1.mlp.up_proj.weight"], base["model.layers.1.mlp.up_proj.weight"])


def test_model_config_overrides_batch_size_and_old_spellings(train_config):
    cfg = train_config(
        model_config={"rms_norm_eps": 1e-3, "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
        batch_size=8,
        micro_batch_size=2,
        revision_of_model="main",
    )
    assert cfg.gradient_accumulation_steps == 4 and cfg.model_revision == "main"
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    assert model.config.rms_norm_eps == 1e-3
    assert model.config.rope_parameters == {"rope_theta": 10000.0, "rope_type": "dynamic", "factor": 2.0}
    with pytest.raises(ValueError, match="batch_size 8 disagrees"):
        train_config(batch_size=8, micro_batch_size=2, gradient_accumulation_steps=2)


def test_gradient_checkpointing_offload_routes_saved_activations_through_the_offload_hooks(train_config):
    ids = torch.arange(3, 60).unsqueeze(0)
    grads = []
    for mode in (True, "offload"):
        cfg = train_config(gradient_checkpointing=mode)
        model = load_model(cfg, load_tokenizer(cfg), Precision())
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert model.activation_offload.packed > 0  # autograd's saved tensors went through the hooks (CPU: not moved)
    assert not model.activation_offload._contexts  # left after every forward
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad)


def test_min_sample_len_drops_shorter_samples(train_config, chat_dataset, tiny_tokenizer):
    from hpcft.trainer.data.formats import TOO_SHORT, tokenize_dataset

    cfg = train_config(min_sample_len=40)
    raw = load_raw_dataset(cfg.datasets[0])
    kept, counts = tokenize_dataset(raw, cfg.datasets[0], cfg, tiny_tokenizer, "datasets[0]")
    assert counts[TOO_SHORT] > 0 and len(kept) == len(raw) - counts[TOO_SHORT] - counts["dropped_no_trainable"]
    assert min(len(ids) for ids in kept["input_ids"]) >= 40
