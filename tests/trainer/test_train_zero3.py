"""Two processes under torchrun with DeepSpeed ZeRO-3 on CPU (gloo): full fine-tune, LoRA and QLoRA runs,
gathered final weights, exact resume, merge-lora, the stop file and an injected crash on one rank; axolotl's FSDP
and FSDP+QLoRA configs, which run as ZeRO-3 on CPU (accelerate runs FSDP only on GPUs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hpcft.trainer.loop.checkpoints import find_latest_complete_checkpoint
from hpcft.trainer.reporting.metrics import METRICS_FILE

pytestmark = pytest.mark.slow

RUN = {
    "deepspeed": "zero3",
    "sequence_len": 128,
    "sample_packing": True,
    "micro_batch_size": 2,
    "max_steps": 20,
    "save_steps": 10,
    "logging_steps": 1,
}
# Resumed losses must match the uninterrupted run's to this relative tolerance (measured: bit-identical).
RESUME_RTOL = 1e-5


def write_config(cfg, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.training_dict()))
    return path


def read_metrics(output_dir: str | Path) -> list[dict]:
    return [json.loads(line) for line in (Path(output_dir) / METRICS_FILE).read_text().splitlines()]


def torchrun(config: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m hpcft.trainer train config` with DeepSpeed on CPU."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "hpcft.trainer",
        "train",
        str(config),
    ]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", **env}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    result.log = result.stdout + result.stderr  # type: ignore[attr-defined]
    # On failure show the ranks' own output, not torchrun's summary of who failed.
    result.why = result.stderr.rsplit("Traceback (most recent call last)", 1)[0][-5000:]  # type: ignore[attr-defined]
    return result


def resume_copy(cfg, train_config, step: int, tmp_path: Path, **keys):
    """A second run whose output_dir holds only checkpoint-<step> of the first: it auto-resumes from there."""
    resumed = train_config(**{**keys, "output_dir": str(tmp_path / "resumed")})
    Path(resumed.output_dir).mkdir()
    shutil.copytree(Path(cfg.output_dir) / f"checkpoint-{step}", Path(resumed.output_dir) / f"checkpoint-{step}")
    return resumed


def assert_loss_falls(metrics: list[dict], margin: float) -> None:
    losses = [m["loss"] for m in metrics if "loss" in m]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - margin, f"loss did not fall: first five {first:.4f}, last five {last:.4f}"


def assert_same_losses(full: list[dict], resumed: list[dict], steps: range) -> None:
    by_step = {m["step"]: m["loss"] for m in full if "loss" in m}
    got = [m for m in resumed if "loss" in m]
    assert [m["step"] for m in got] == list(steps)
    assert [m["loss"] for m in got] == pytest.approx([by_step[s] for s in steps], rel=RESUME_RTOL)


def test_zero3_full_finetune_gathers_weights_and_resumes_exactly(train_config, tmp_path, tiny_model_dir):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForCausalLM

    # an added token: the embeddings are resized while partitioned
    keys = {**RUN, "learning_rate": 1e-3, "val_set_size": 0.1, "eval_steps": 10, "tokens": ["<tool_call>"]}
    cfg = train_config(**keys)
    full = torchrun(write_config(cfg, tmp_path / "train.yaml"))
    assert full.returncode == 0, full.why
    metrics = read_metrics(cfg.output_dir)
    assert_loss_falls(metrics, margin=0.5)
    assert [m["step"] for m in metrics if "eval_loss" in m] == [10, 20]

    # The final save is whole weights that transformers loads, equal to the trained (sharded) ones.
    out = Path(cfg.output_dir)
    trained = AutoModelForCausalLM.from_pretrained(out).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    sharded = get_fp32_state_dict_from_zero_checkpoint(str(out / "checkpoint-20"))
    assert set(sharded) <= set(trained) and len(sharded) > 0
    for name, weight in sharded.items():
        assert trained[name].numel() > 0 and trained[name].shape == weight.shape
        torch.testing.assert_close(trained[name], weight.to(trained[name].dtype), rtol=0, atol=0)
    assert trained["model.embed_tokens.weight"].shape[0] == base["model.embed_tokens.weight"].shape[0] + 1
    assert trained["lm_head.weight"].shape[0] == base["lm_head.weight"].shape[0] + 1
    assert any(not torch.equal(trained[n], base[n]) for n in base if n != "lm_head.weight")  # training changed them
    assert (out / "tokenizer.json").is_file() and find_latest_complete_checkpoint(out) == out / "checkpoint-20"

    resumed = resume_copy(cfg, train_config, 10, tmp_path, **keys)
    again = torchrun(write_config(resumed, tmp_path / "resumed.yaml"))
    assert again.returncode == 0, again.why
    assert "resuming from" in again.log
    assert_same_losses(metrics, read_metrics(resumed.output_dir), range(11, 21))
    resumed_weights = AutoModelForCausalLM.from_pretrained(resumed.output_dir).state_dict()
    for name, weight in trained.items():
        torch.testing.assert_close(resumed_weights[name], weight, rtol=RESUME_RTOL, atol=1e-7)


def test_zero3_lora_saves_loadable_adapter_resumes_and_merges(train_config, tmp_path, tiny_model_dir):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    keys = {
        **RUN,
        "adapter": "lora",
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.1,
        "lora_target_linear": True,
        "learning_rate": 5e-3,
        "gradient_checkpointing": True,
        "gradient_accumulation_steps": 2,
    }
    cfg = train_config(**keys)
    config = write_config(cfg, tmp_path / "train.yaml")
    full = torchrun(config)
    assert full.returncode == 0, full.why
    metrics = read_metrics(cfg.output_dir)
    assert_loss_falls(metrics, margin=0.2)

    out = Path(cfg.output_dir)
    adapter = load_file(out / "adapter_model.safetensors")
    lora_b = [w for n, w in adapter.items() if "lora_B" in n]
    assert len(lora_b) == 14 and all(w.numel() > 0 for w in adapter.values())  # 7 linear layers x 2 blocks
    assert all(w.abs().sum() > 0 for w in lora_b)  # trained: lora_B starts at zero

    # dropout makes this check the per-rank RNG state restored from the checkpoint too
    resumed = resume_copy(cfg, train_config, 10, tmp_path, **keys)
    again = torchrun(write_config(resumed, tmp_path / "resumed.yaml"))
    assert again.returncode == 0, again.why
    assert_same_losses(metrics, read_metrics(resumed.output_dir), range(11, 21))
    resumed_adapter = load_file(Path(resumed.output_dir) / "adapter_model.safetensors")
    for name, weight in adapter.items():
        torch.testing.assert_close(resumed_adapter[name], weight, rtol=RESUME_RTOL, atol=1e-7)

    merge = subprocess.run(
        [sys.executable, "-m", "hpcft.trainer", "merge-lora", str(config)], capture_output=True, text=True, timeout=120
    )
    assert merge.returncode == 0, merge.stderr[-3000:]
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out).eval()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        expected, got, before = with_adapter(ids).logits, merged(ids).logits, plain(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, before, atol=1e-3)  # the adapter changed the model


def test_zero3_qlora_stop_file_crash_on_one_rank_and_resume(train_config, tmp_path):
    # unpacked rows here: padded batches with an attention mask
    keys = {
        **RUN,
        "adapter": "qlora",
        "load_in_4bit": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "sample_packing": False,
        "lora_target_linear": True,
        "learning_rate": 5e-3,
        "save_steps": 2,
        "save_total_limit": 1,
    }
    cfg = train_config(**keys)
    config = write_config(cfg, tmp_path / "train.yaml")
    out = Path(cfg.output_dir)

    stop_file = tmp_path / "STOP"
    stop_file.touch()
    stopped = torchrun(config, HPCFT_STOP_FILE=str(stop_file))
    assert stopped.returncode == 0, stopped.why
    assert "with 14 4-bit linear layers" in stopped.log  # really quantised under ZeRO-3 (7 per block)
    assert find_latest_complete_checkpoint(out) == out / "checkpoint-1"
    assert not (out / "adapter_model.safetensors").exists()

    crashed = torchrun(config, HPCFT_FAULT_CRASH_AT_STEP="3", HPCFT_FAULT_RANK="1")
    assert crashed.returncode != 0
    assert "injected crash on rank 1" in crashed.log and "injected crash on rank 0" not in crashed.log
    # save_total_limit: 1 kept the newest complete checkpoint (2) and dropped checkpoint-1
    assert find_latest_complete_checkpoint(out) == out / "checkpoint-2"
    assert not (out / "checkpoint-1").exists()

    finished = torchrun(config)
    assert finished.returncode == 0, finished.why
    metrics = read_metrics(out)
    # step 1 (stopped), 2 (then step 3 crashed before its log line), 3..20 resumed from checkpoint-2
    assert [m["step"] for m in metrics] == list(range(1, 21))
    assert_loss_falls(metrics, margin=0.2)
    assert (out / "adapter_model.safetensors").stat().st_size > 0


# axolotl's FSDP configs, as written in its examples (their settings are checked in test_train_fsdp.py).
# The FSDP block of axolotl's examples/llama-3/qlora-fsdp-70b.yaml (FSDP1, fsdp_-prefixed spellings).
AXOLOTL_FSDP1 = {
    "fsdp": ["full_shard", "auto_wrap"],
    "fsdp_config": {
        "fsdp_limit_all_gathers": True,
        "fsdp_sync_module_states": True,
        "fsdp_offload_params": True,
        "fsdp_use_orig_params": False,
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
        "fsdp_state_dict_type": "FULL_STATE_DICT",
        "fsdp_sharding_strategy": "FULL_SHARD",
    },
}
# The FSDP block of axolotl's examples/qwen3.5/27b-qlora-fsdp.yaml (FSDP2, plain spellings).
AXOLOTL_FSDP2 = {
    "fsdp_config": {
        "fsdp_version": 2,
        "offload_params": False,
        "cpu_ram_efficient_loading": False,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
        "state_dict_type": "FULL_STATE_DICT",
        "sharding_strategy": "FULL_SHARD",
        "reshard_after_forward": True,
        "activation_checkpointing": True,
    },
}
FSDP_RUN = {
    "sequence_len": 128,
    "sample_packing": True,
    "micro_batch_size": 2,
    "max_steps": 8,
    "save_steps": 4,
    "logging_steps": 1,
}


def assert_loss_fell(output_dir: str) -> None:
    losses = [m["loss"] for m in read_metrics(output_dir) if "loss" in m]
    assert len(losses) == FSDP_RUN["max_steps"] and sum(losses[-3:]) < sum(losses[:3]), losses


def assert_ran_as_zero3(log: str, output_dir: str, step: int) -> None:
    assert "runs as the equivalent DeepSpeed ZeRO-3" in log
    # Each rank wrote its own partition: sharded like FSDP's FULL_SHARD, not DDP with whole copies.
    shards = sorted(p.name for p in (Path(output_dir) / f"checkpoint-{step}" / f"global_step{step}").iterdir())
    assert [s for s in shards if s.endswith("optim_states.pt")] == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]


@pytest.mark.slow
def test_axolotl_fsdp_full_finetune_trains_sharded_on_two_cpu_processes(train_config, tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    cfg = train_config(**FSDP_RUN, **AXOLOTL_FSDP1, learning_rate=1e-3)
    run = torchrun(write_config(cfg, tmp_path / "train.yaml"))
    assert run.returncode == 0, run.why
    assert_ran_as_zero3(run.log, cfg.output_dir, 4)
    assert_loss_fell(cfg.output_dir)
    trained = AutoModelForCausalLM.from_pretrained(cfg.output_dir).state_dict()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert not torch.equal(trained["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"])


@pytest.mark.slow
def test_axolotl_fsdp_qlora_trains_sharded_on_two_cpu_processes(train_config, tmp_path):
    keys = {
        **FSDP_RUN,
        **AXOLOTL_FSDP2,
        "adapter": "qlora",
        "load_in_4bit": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_target_linear": True,
        "learning_rate": 5e-3,
    }
    cfg = train_config(**keys)
    run = torchrun(write_config(cfg, tmp_path / "train.yaml"))
    assert run.returncode == 0, run.why
    assert "with 14 4-bit linear layers" in run.log
    assert_ran_as_zero3(run.log, cfg.output_dir, 4)
    assert_loss_fell(cfg.output_dir)
    assert (Path(cfg.output_dir) / "adapter_model.safetensors").stat().st_size > 0
