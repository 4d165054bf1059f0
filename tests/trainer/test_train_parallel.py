"""The parallelism sizes in the trainer: the objects handed to accelerate and transformers, and real runs on 2 and 4
CPU processes (gloo): DeepSpeed AutoTP (tensor_parallel_size) and DeepSpeed Ulysses (context_parallel_size) train
the same losses, HSDP (dp_shard_size) under ZeRO-3 trains the losses of full sharding; accelerator_config reaches
transformers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM, TrainingArguments

from hpcft.trainer.data.packing import make_collator
from hpcft.trainer.loop.args import Precision, training_argument_values
from hpcft.trainer.loop.parallelism import parallelism_arguments
from hpcft.trainer.reporting.metrics import METRICS_FILE

RUN = {"sequence_len": 128, "micro_batch_size": 2, "max_steps": 2, "logging_steps": 1, "save_strategy": "no"}


def test_deepspeed_context_parallelism_is_ulysses_through_accelerate(train_config):
    config = parallelism_arguments(train_config(context_parallel_size=2), world=4, deepspeed=True)["parallelism_config"]
    assert (config.sp_backend, config.sp_size, config.data_parallel_size) == ("deepspeed", 2, 2)
    assert config.sp_handler.sp_attn_implementation == "sdpa" and config.sp_handler.sp_seq_length_is_variable
    # Tensor x context parallelism under DeepSpeed: Ulysses over both (AutoTP and Ulysses do not compose).
    both = parallelism_arguments(train_config(context_parallel_size=2, tensor_parallel_size=2), 8, deepspeed=True)
    assert both["parallelism_config"].sp_size == 4
    # AutoTP and hpZ live in deepspeed.json: nothing for accelerate.
    assert parallelism_arguments(train_config(tensor_parallel_size=2), world=2, deepspeed=True) == {}


def test_fsdp2_gets_the_whole_mesh(train_config):
    cfg = train_config(dp_shard_size=2, context_parallel_size=2, fsdp_version=2, fsdp_config={})
    config = parallelism_arguments(cfg, world=4, deepspeed=False)["parallelism_config"]
    assert (config.dp_replicate_size, config.dp_shard_size, config.tp_size, config.cp_size) == (1, 2, 1, 2)
    hsdp = train_config(dp_shard_size=4, dp_replicate_size=2, fsdp_version=2, fsdp_config={})
    config = parallelism_arguments(hsdp, world=8, deepspeed=False)["parallelism_config"]
    assert (config.dp_replicate_size, config.dp_shard_size) == (2, 4)
    # Expert ranks alone join the shard group: plain FSDP.
    experts = train_config(expert_parallel_size=2, fsdp_version=2, fsdp_config={})
    assert parallelism_arguments(experts, world=4, deepspeed=False) == {}


def test_context_parallel_rows_are_padded_to_one_width(train_config, tiny_tokenizer):
    collate = make_collator(train_config(context_parallel_size=4, sequence_len=64), tiny_tokenizer)
    batch = collate([{"input_ids": [1, 2, 3, 4, 5], "labels": [1, 2, 3, 4, 5]}])
    assert batch["input_ids"].shape[1] == 64


def test_accelerator_config_reaches_transformers(train_config):
    # examples/falcon-e/falcon-e-3b-ft.yaml: accumulate with gradients synced on every micro-batch.
    cfg = train_config(accelerator_config={"gradient_accumulation_kwargs": {"sync_each_batch": True}})
    values = training_argument_values(cfg, Precision(), None, num_train_rows=10, has_eval=False, world_size=1)
    args = TrainingArguments(**values)
    assert args.accelerator_config.gradient_accumulation_kwargs == {"sync_each_batch": True}


def torchrun(cfg, path: Path, nproc: int) -> str:
    """Train `cfg` on `nproc` CPU processes; returns the ranks' output."""
    path.write_text(yaml.safe_dump(cfg.training_dict()))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    command += ["-m", "hpcft.trainer", "train", str(path)]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-5000:]
    return result.stdout + result.stderr


def losses(output_dir: str) -> list[float]:
    lines = (Path(output_dir) / METRICS_FILE).read_text().splitlines()
    return [row["loss"] for row in map(json.loads, lines) if "loss" in row]


@pytest.mark.slow
def test_tensor_and_context_parallel_runs_split_the_work_and_agree(train_config, pretrain_dataset, tmp_path):
    # Both keep one data-parallel rank on 2 processes, so both train on the same batches: the same losses from
    # weights split by layer (AutoTP) and from sequences split by position (Ulysses all-to-all).
    tp = train_config([pretrain_dataset], **RUN, deepspeed="zero2", tensor_parallel_size=2)
    tp_run = torchrun(tp, tmp_path / "tp.yaml", nproc=2)
    assert "parallelism: tp 2 over 2 processes; 15 linear layers split 2 ways" in tp_run
    assert "self_attn.q_proj: (32, 64) on this rank" in tp_run  # half of the 64 x 64 projection
    cp = train_config(
        [pretrain_dataset], **RUN, deepspeed="zero3", context_parallel_size=2, output_dir=str(tmp_path / "cp")
    )
    cp_run = torchrun(cp, tmp_path / "cp.yaml", nproc=2)
    assert "parallelism: cp 2 over 2 processes" in cp_run
    assert losses(cp.output_dir) == pytest.approx(losses(tp.output_dir), rel=1e-5)
    assert len(losses(tp.output_dir)) == 2
    # The final save gathers the split weights: a whole model loads.
    model = AutoModelForCausalLM.from_pretrained(tp.output_dir)
    assert tuple(model.model.layers[0].self_attn.q_proj.weight.shape) == (64, 64)


@pytest.mark.slow
def test_hsdp_under_zero3_trains_the_losses_of_full_sharding(train_config, pretrain_dataset, tmp_path):
    full = train_config([pretrain_dataset], **RUN, deepspeed="zero3", output_dir=str(tmp_path / "full"))
    torchrun(full, tmp_path / "full.yaml", nproc=4)
    hsdp = train_config([pretrain_dataset], **RUN, deepspeed="zero3", dp_shard_size=2)
    run = torchrun(hsdp, tmp_path / "hsdp.yaml", nproc=4)
    assert "parallelism: dp_replicate 2 x dp_shard 2 over 4 processes; 21 weights also keep a shard per group" in run
    assert losses(hsdp.output_dir) == pytest.approx(losses(full.output_dir), rel=1e-5)
