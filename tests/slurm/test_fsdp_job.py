"""axolotl's FSDP + QLoRA example config (examples/llama-3/qlora-fsdp-70b.yaml, its keys unchanged; the 70B model
swapped for the tiny random Llama and tatsu-lab/alpaca for local alpaca rows) on the local two-node cluster through
`hpcft submit --follow`. CPU nodes cannot run FSDP through accelerate, so the job runs the equivalent ZeRO-3 and
the rendered train.yaml, the submit warnings and the job log say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# The training keys of axolotl's examples/llama-3/qlora-fsdp-70b.yaml as it stands (wandb_* and other blank keys
# left out); TINY below swaps only what cannot exist here and shortens the run.
QLORA_FSDP_70B = """\
base_model: casperhansen/llama-3-70b-fp16
model_type: LlamaForCausalLM
tokenizer_type: AutoTokenizer
load_in_8bit: false
load_in_4bit: true
datasets:
  - path: tatsu-lab/alpaca
    type: alpaca
dataset_prepared_path: last_run_prepared
val_set_size: 0.05
output_dir: ./outputs/out/qlora-llama3-70b
adapter: qlora
sequence_len: 512
sample_packing: false
lora_r: 8
lora_alpha: 16
lora_dropout: 0.05
lora_target_linear: true
gradient_accumulation_steps: 4
micro_batch_size: 1
num_epochs: 4
optimizer: adamw_torch_fused
lr_scheduler: cosine
learning_rate: 0.00001
bf16: auto
tf32: false
gradient_checkpointing: true
gradient_checkpointing_kwargs:
  use_reentrant: true
logging_steps: 1
attn_implementation: flash_attention_2
warmup_ratio: 0.1
evals_per_epoch: 4
saves_per_epoch: 1
weight_decay: 0.0
fsdp:
  - full_shard
  - auto_wrap
fsdp_config:
  fsdp_limit_all_gathers: true
  fsdp_sync_module_states: true
  fsdp_offload_params: true
  fsdp_use_orig_params: false
  fsdp_cpu_ram_efficient_loading: true
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_sharding_strategy: FULL_SHARD
special_tokens:
  pad_token: <|end_of_text|>
"""


def test_axolotl_qlora_fsdp_example_runs_on_two_nodes_as_zero3(tiny_cpu, real_workspace, run_cli):
    model = tiny_cpu.parent / "tiny-assets" / "model"
    rows = [
        {"instruction": f"What is {a} plus {b}?", "input": "", "output": f"{a} plus {b} is {a + b}."}
        for a in range(8)
        for b in range(8)
    ]
    data = real_workspace / "alpaca.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = real_workspace / "qlora-fsdp-70b.yaml"
    config.write_text(QLORA_FSDP_70B)
    tiny = [
        f"base_model={model}",
        f"datasets.0.path={data}",
        "special_tokens=null",
        "sequence_len=128",
        "gradient_accumulation_steps=1",
        "micro_batch_size=2",
        "max_steps=4",
        "evals_per_epoch=null",
        "val_set_size=0",
        "saves_per_epoch=null",
        "save_steps=2",
        "launch.nodes=2",
        "launch.time=00:10:00",
    ]
    result = run_cli("submit", "--profile", "local", config, "--follow", *tiny)
    assert result.code == 0, result.out[-4000:] + result.err[-2000:]
    assert "runs as the equivalent DeepSpeed ZeRO-3" in result.err  # the submit warning
    assert "[hpcft WARNING] fsdp: accelerate runs FSDP only on GPUs" in result.out  # the job's own log
    assert "with 14 4-bit linear layers" in result.out
    run_dir = next((real_workspace / "runs").rglob("manifest.json")).parent
    assert "runs as the equivalent DeepSpeed ZeRO-3 (preset zero3)" in (run_dir / "train.yaml").read_text()
    assert json.loads((run_dir / "deepspeed.json").read_text())["zero_optimization"]["stage"] == 3
    output_dir = Path(yaml.safe_load((run_dir / "train.yaml").read_text())["output_dir"])
    steps = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if "loss" in m] == [1, 2, 3, 4]
    assert sorted(p.name for p in (output_dir / "checkpoint-2" / "global_step2").glob("*optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    assert (output_dir / "adapter_model.safetensors").stat().st_size > 0
