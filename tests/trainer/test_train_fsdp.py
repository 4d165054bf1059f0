"""axolotl's FSDP keys: their translation into transformers' FSDP settings (checked by transformers' own parsing),
the ZeRO stage that runs them on CPU, and the refusals. The two-process CPU runs of axolotl's FSDP and FSDP+QLoRA
configs are in test_train_zero3.py (they run as ZeRO-3)."""

from __future__ import annotations

import pytest
from transformers import TrainingArguments

from hpcft.core.features.deepspeed_config import zero_stage
from hpcft.core.features.fsdp import transformers_fsdp_config, zero_preset_for_fsdp
from hpcft.core.schema import TrainConfig
from hpcft.trainer.loop.distributed import sharding_plan

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


def config(**keys) -> TrainConfig:
    return TrainConfig.model_validate({"base_model": "m", "datasets": [{"path": "d.jsonl"}], **keys})


def test_axolotl_fsdp1_block_reaches_accelerate_as_written():
    fsdp = transformers_fsdp_config(config(**AXOLOTL_FSDP1))
    args = TrainingArguments(output_dir="/tmp/unused", fsdp=True, fsdp_config=fsdp, report_to=[])
    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 1
    assert plugin["reshard_after_forward"] == "full_shard"
    assert plugin["cpu_offload"] is True
    assert plugin["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert plugin["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert plugin["state_dict_type"] == "FULL_STATE_DICT"
    assert plugin["cpu_ram_efficient_loading"] is True
    assert plugin["use_orig_params"] is False and plugin["sync_module_states"] is True
    assert plugin["limit_all_gathers"] is True


def test_axolotl_fsdp2_block_reaches_accelerate_as_written():
    cfg = config(**AXOLOTL_FSDP2)
    assert cfg.fsdp_version == 2  # fsdp_config.fsdp_version is the top-level setting too
    args = TrainingArguments(
        output_dir="/tmp/unused", fsdp=True, fsdp_config=transformers_fsdp_config(cfg), report_to=[]
    )
    plugin = args.fsdp_plugin_args
    assert plugin["fsdp_version"] == 2 and plugin["reshard_after_forward"] is True
    assert plugin["activation_checkpointing"] is True and "cpu_offload" not in plugin


@pytest.mark.parametrize(
    ("keys", "preset"),
    [
        ({"fsdp": ["full_shard", "auto_wrap"]}, "zero3"),
        ({"fsdp": "shard_grad_op auto_wrap"}, "zero2"),
        ({"fsdp_config": {"reshard_after_forward": False}, "fsdp_version": 2}, "zero2"),
        ({"fsdp_config": {"sharding_strategy": "no_shard"}}, "zero1"),
        ({"fsdp_config": {"fsdp_sharding_strategy": "HYBRID_SHARD"}}, "zero3"),
    ],
)
def test_cpu_translation_shards_like_the_fsdp_strategy(keys, preset):
    cfg = config(**keys)
    assert zero_preset_for_fsdp(cfg) == preset
    ds, fsdp = sharding_plan(cfg, cuda=False)
    assert fsdp is None and zero_stage(ds) == int(preset[-1])
    ds, fsdp = sharding_plan(cfg, cuda=True)
    assert ds is None and fsdp["version"] == (cfg.fsdp_version or 1)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"fsdp": ["full_shard"], "deepspeed": "zero3"}, "deepspeed and fsdp/fsdp_config cannot be used together"),
        ({"fsdp": ["full_shrad"]}, "fsdp: unknown option 'full_shrad'"),
        ({"fsdp_config": {"offload_parms": True}}, "offload_parms"),
        ({"fsdp_config": {"fsdp_version": 1}, "fsdp_version": 2}, "disagrees"),
        ({"fsdp_config": {"auto_wrap_policy": "SIZE_BASED_WRAP"}}, "min_num_params"),
        ({"fsdp_config": {"offload_params": True, "fsdp_offload_params": False}}, "given twice"),
    ],
)
def test_bad_fsdp_settings_are_refused_by_name(keys, message):
    with pytest.raises(ValueError, match=message):
        config(**keys)


def test_older_top_level_final_state_dict_type_moves_into_fsdp_config():
    cfg = config(fsdp=["full_shard"], fsdp_final_state_dict_type="SHARDED_STATE_DICT")
    assert cfg.fsdp_config.final_state_dict_type == "SHARDED_STATE_DICT" and cfg.fsdp_final_state_dict_type is None
    assert TrainConfig.model_validate(cfg.training_dict()) == cfg  # train.yaml reads back the same


def test_fsdp2_refuses_fsdp1_only_strategies():
    with pytest.raises(ValueError, match="fsdp_version: 2 shards FULL_SHARD or SHARD_GRAD_OP, not HYBRID_SHARD"):
        transformers_fsdp_config(config(fsdp_config={"sharding_strategy": "HYBRID_SHARD"}, fsdp_version=2))
