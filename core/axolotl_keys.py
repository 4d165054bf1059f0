"""Every key of axolotl's config schema, in exactly one class: implemented, accepted with a warning, or refused.

*Implemented* is whatever our schema (`TrainConfig`, `DatasetConfig`) has a field for: it is derived, never
listed. *Accepted with a warning* are keys that only tune axolotl's own speed/memory kernels or bookkeeping;
the warning says what hpcft does instead. *Refused* keys change what is trained in a way hpcft does not
implement yet; setting one is an error naming it and saying what to do. The key list itself is a snapshot of
axolotl's schema (`axolotl_keys.txt`, written by scripts/axolotl_key_snapshot.py), so "unknown key" is only said
of keys axolotl does not have either. tests/launcher/test_axolotl_keys.py checks that every snapshot key is in
exactly one class.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

_REMOVE = "remove it (or set it to null)"

# --- accepted with a warning: the value names what hpcft does instead -------------------------------------------

_KERNELS = "hpcft runs the model's own PyTorch modules (same results, without axolotl's fused kernels)"
_ATTENTION = "hpcft uses PyTorch sdpa attention, or flash-attention 2 with flash_attention: true (same results)"
_PACKING = "hpcft packs samples with its own best-fit packer"
_LOADER = "hpcft's data loader settings are fixed"
_DDP = "hpcft trains with DeepSpeed, which does not use it"
_BOOKKEEPING = "axolotl sets it internally; hpcft computes what it needs itself"

WARN_ONLY_KEYS: dict[str, str] = {
    # Fused kernels: speed and memory only.
    **dict.fromkeys(
        (
            "flash_attn_rms_norm",
            "flash_attn_fuse_qkv",
            "flash_attn_fuse_mlp",
            "flash_attn_cross_entropy",
            "flash_attn_d512",
            "fused_attn_kernel",
            "lora_qkv_kernel",
            "lora_o_kernel",
            "lora_mlp_kernel",
            "lora_embedding_kernel",
            "use_scattermoe",
            "use_sonicmoe",
            "moe_grouped_backend",
            "moe_bnb_fast",
            "moe_dequant_chunk_size",
            "experts_implementation",
            "expert_backend",
            "use_dsv4_kernels",
            "use_glm_dsa_kernels",
            "dsv4_fp4_grouped_mode",
            "dsv4_fp8_lora_kernel",
            "dsv4_shared_mlp_lora_kernel",
            "dsv4_fp8_nonexpert_mode",
            "dsv4_bf16_all",
            "gemma4_fp8_nonexpert",
            "gemma4_nf4_nonexpert",
            "llama4_linearized_experts",
            "tiled_mlp",
            "tiled_mlp_num_shards",
            "tiled_mlp_use_original_mlp",
            "large_head_attention",
        ),
        _KERNELS,
    ),
    **dict.fromkeys(
        ("liger_rms_norm_gated", "liger_use_token_scaling"),
        "hpcft runs the model's own PyTorch modules instead of Liger kernels (same results)",
    ),
    **dict.fromkeys(
        ("cut_cross_entropy", "chunked_cross_entropy", "chunked_cross_entropy_num_chunks"),
        "hpcft computes the standard cross-entropy (same loss, more memory)",
    ),
    **dict.fromkeys(
        (
            "xformers_attention",
            "sage_attention",
            "flex_attention",
            "flex_attn_compile_kwargs",
            "eager_attention",
            "sdpa_varlen",
            "flash_optimum",
            "gemma4_hybrid_attn_impl",
        ),
        _ATTENTION,
    ),
    **dict.fromkeys(
        (
            "sample_packing_eff_est",
            "sample_packing_bin_size",
            "sample_packing_group_size",
            "sample_packing_mp_start_method",
            "multipack_real_batches",
            "batch_flattening",
            "pretrain_multipack_attn",
            "pretrain_multipack_buffer_size",
        ),
        _PACKING,
    ),
    "relora_cpu_offload": "hpcft merges ReLoRA's adapter on the device its weights are on (same results)",
    **dict.fromkeys(
        ("swanlab_log_completions", "swanlab_completion_log_interval", "swanlab_completion_max_buffer"),
        "hpcft logs the training metrics to SwanLab, not tables of preference-tuning completions",
    ),
    **dict.fromkeys(
        ("dataloader_num_workers", "dataloader_pin_memory", "dataloader_prefetch_factor", "dataset_keep_in_memory"),
        _LOADER,
    ),
    **dict.fromkeys(("ddp", "ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_broadcast_buffers"), _DDP),
    # Tuning of axolotl's ring-flash-attn and DeepEP: hpcft's context and expert parallelism use other libraries.
    **dict.fromkeys(
        ("heads_k_stride", "ring_attn_func"),
        "hpcft's context parallelism is DeepSpeed Ulysses or torch's ring attention, which choose their own "
        "schedule (same results)",
    ),
    **dict.fromkeys(
        (
            "expert_parallel_backend",
            "expert_parallel_num_nvl_bytes",
            "expert_parallel_num_rdma_bytes",
            "expert_parallel_token_capacity",
            "expert_parallel_fallback_on_unsupported",
        ),
        "hpcft shards the experts with the other weights instead of DeepEP's token dispatch (no buffers to size, no "
        "per-expert token cap)",
    ),
    **dict.fromkeys(
        ("ray_run_name", "resources_per_worker"),
        "hpcft starts the training processes with Slurm and torchrun, not Ray; launch: sets their resources",
    ),
    **dict.fromkeys(
        (
            "total_num_tokens",
            "total_supervised_tokens",
            "is_preprocess",
            "axolotl_config_path",
            "world_size",
            "local_rank",
            "device",
            "experimental_skip_move_to_device",
        ),
        _BOOKKEEPING,
    ),
    "torch_compile_options": "hpcft runs the model eagerly (same results, without compilation)",
    "deepcompile": "hpcft runs DeepSpeed without compilation (same results)",
    "qlora_sharded_model_loading": "hpcft loads 4-bit weights with bitsandbytes directly",
    "gpu_memory_limit": "DeepSpeed places the model on the GPUs",
    "ple_cpu_offload": "DeepSpeed places the model on the GPUs",  # axolotl 0.19, after the snapshot
    "max_memory": "DeepSpeed places the model on the GPUs",
    "device_map": "DeepSpeed places the model on the GPUs",
    "gc_steps": "Python's garbage collector runs as usual",
    "gc_collect_steps": "Python's garbage collector runs as usual",
    "torch_empty_cache_steps": "PyTorch's caching allocator runs as usual",
    "include_tokens_per_second": "hpcft logs tokens per second in metrics.jsonl",
    "include_tkps": "hpcft logs tokens per second in metrics.jsonl",
    "eval_table_size": "hpcft logs no prediction tables",
    "eval_table_max_new_tokens": "hpcft logs no prediction tables",
    "strict": "hpcft always validates strictly",
    "debug": "use hpcft validate and hpcft logs instead",
    "save_safetensors": "hpcft always saves safetensors",
    "tokenizer_legacy": "the tokenizer's own setting is used",
    "tokenizer_save_jinja_files": "the tokenizer is saved the transformers way",
    "hf_use_auth_token": "hpcft reads HF_TOKEN from your environment",
    "use_wandb": "Weights & Biases logging is on when wandb_project is set",
    "peft_autocast_adapter_dtype": "PEFT's default (adapter weights in fp32) is used",
    **dict.fromkeys(
        ("merge_lora", "merge_method", "lora_on_cpu"),
        "it sets up axolotl's merge-lora command; training is unchanged, and hpcft merges with "
        "`python -m hpcft.trainer merge-lora train.yaml` (the base is loaded unquantised on the CPU)",
    ),
}

# Values axolotl accepts for keys hpcft implements with fewer choices: when our schema rejects one of these, the
# error names it as an axolotl option rather than a mistake.
AXOLOTL_VALUES: dict[str, frozenset[str]] = {
    "gradient_checkpointing": frozenset({"offload", "offload_disk"}),
    # transformers' scheduler names and axolotl's own (lr_scheduler is a free string in axolotl's schema)
    "lr_scheduler": frozenset(
        {
            "cosine_with_restarts",
            "polynomial",
            "inverse_sqrt",
            "reduce_lr_on_plateau",
            "cosine_with_min_lr",
            "cosine_warmup_with_min_lr",
            "warmup_stable_decay",
            "one_cycle",
            "rex",
            "log_sweep",
        }
    ),
    "attn_implementation": frozenset({"fp8"}),
}

# attn_implementation values axolotl accepts that only pick another kernel for the same attention.
ATTENTION_KERNELS_WITHOUT_EFFECT = ("xformers", "sage", "flex_attention", "flash_attention_3")

# Plugins that only change speed/memory, never results: accepted with a warning.
PLUGINS_WITHOUT_EFFECT: dict[str, str] = {
    "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin": (
        "it only saves memory in the loss; hpcft computes the standard cross-entropy"
    ),
    "axolotl.integrations.kernels.KernelsPlugin": _KERNELS,
}

# --- refused by name: the value says what to do instead --------------------------------------------------------

_RL = (
    "hpcft's preference tuning (rl: dpo, ipo, orpo, kto, simpo; docs/preference-tuning.md) does not implement "
    "it; remove it (the generation-based methods grpo, gdpo and ebft are not supported yet)"
)
_MULTIMODAL = (
    "hpcft masks multimodal labels from the chat template's turns (docs/multimodal.md), without role markers; remove it"
)
_QUANT = (
    "hpcft quantises with bitsandbytes only (load_in_4bit with adapter: qlora, or load_in_8bit; qat: for "
    "quantization-aware training); remove it"
)
_OPTIM = "hpcft's optimizer and schedule do not implement it; remove it"
_EVAL = "hpcft evaluates the loss on val_set_size or test_datasets only; remove it"
_TRACKING = (
    "hpcft logs to metrics.jsonl, Weights & Biases (wandb_project), MLflow (mlflow_tracking_uri), SwanLab or "
    "TensorBoard (use_tensorboard); remove it"
)
_DATA = "hpcft's data pipeline does not implement it yet; remove it"
_MODEL = "hpcft loads the model unchanged; remove it"
_PEFT = "hpcft's LoRA does not implement it yet; remove it"
_TRAINING = "hpcft's trainer does not implement it yet; remove it"
_HUB = "hpcft saves the model to output_dir; upload it from there (e.g. huggingface-cli upload), and remove it"
_DTYPE = "choose the precision with bf16 / fp16 instead; remove it"
_PLUGIN_ARGS = "its plugin is not supported by hpcft; remove it"

REFUSED_KEYS: dict[str, str] = {
    **dict.fromkeys(
        (
            "dpo_padding_free",
            "dpo_use_liger_kernel",
            "max_prompt_len",
            "vllm",
            "ebft",
            "nemo_gym_auto_clone",
            "nemo_gym_auto_start",
            "nemo_gym_config_paths",
            "nemo_gym_datasets",
            "nemo_gym_dir",
            "nemo_gym_enabled",
            "nemo_gym_head_port",
            "nemo_gym_max_turns",
            "nemo_gym_model_name",
            "nemo_gym_multi_turn",
            "nemo_gym_run_timeout",
            "nemo_gym_server_timeout",
            "nemo_gym_verify_timeout",
        ),
        _RL,
    ),
    "role_boundaries": _MULTIMODAL,
    **dict.fromkeys(
        (
            "quantization",
            "nonexpert_quantization",
        ),
        _QUANT,
    ),
    **dict.fromkeys(
        (
            "lr_groups",
            "embedding_lr",
            "embedding_lr_scale",
            "dion_lr",
            "dion_momentum",
            "dion_rank_fraction",
            "dion_rank_multiple_of",
            "optim_target_modules",
            "grokfast_alpha",
            "grokfast_lamb",
            "lr_div_factor",
            "adam_beta3",
            "adam_epsilon2",
            "qgalore_cos_threshold",
            "qgalore_gamma_proj",
            "qgalore_proj_bits",
            "qgalore_proj_group_size",
            "qgalore_proj_quant",
            "qgalore_proj_type",
            "qgalore_queue_size",
            "qgalore_rank",
            "qgalore_scale",
            "qgalore_update_proj_gap",
            "spectrum_model_name",
            "spectrum_top_fraction",
        ),
        _OPTIM,
    ),
    **dict.fromkeys(
        (
            "generate_samples",
            "generation_do_sample",
            "generation_max_new_tokens",
            "generation_prompt_ratio",
            "generation_temperature",
            "generation_top_k",
            "generation_top_p",
            "num_generation_samples",
            "gradio_max_new_tokens",
            "gradio_server_name",
            "gradio_server_port",
            "gradio_share",
            "gradio_temperature",
            "gradio_title",
            "eval_sequence_len",
        ),
        _EVAL,
    ),
    **dict.fromkeys(
        (
            "use_comet",
            "comet_api_key",
            "comet_experiment_config",
            "comet_experiment_key",
            "comet_mode",
            "comet_online",
            "comet_project_name",
            "comet_workspace",
            "use_trackio",
            "trackio_project_name",
            "trackio_run_name",
            "trackio_space_id",
            "profiler_steps",
            "profiler_steps_start",
        ),
        _TRACKING,
    ),
    **dict.fromkeys(
        (
            "preprocess_iterable",
            "push_dataset_to_hub",
            "dataset_shard_num",
            "dataset_shard_idx",
            "num_dataset_shards_to_save",
            "excess_length_strategy",
            "pretraining_sample_concatenation",
            "use_pose",
            "pose_max_context_len",
            "pose_num_chunks",
            "pose_split_on_token_ids",
            "shuffle_before_merging_datasets",
            "default_system_message",
            "pad_to_multiple_of",
            "dataloader_drop_last",
            "chat_template_kwargs",
            "synthetic_dataset",
        ),
        _DATA,
    ),
    **dict.fromkeys(
        (
            "model_kwargs",
            "overrides_of_model_kwargs",
            "shrink_embeddings",
            "mean_resizing_embeddings",
            "added_tokens_overrides",
            "fix_untrained_tokens",
            "embeddings_skip_upcast",
            "fp32_norms",
            "fp32_norm_classes",
            "scaling_softmax",
            "scaling_softmax_bias",
            "scaling_softmax_factor",
            "s2_attention",
            "xpos_rope",
            "landmark_attention",
            "dense_mixer",
            "mora",
            "hatchery",
            "trainer_cls",
        ),
        _MODEL,
    ),
    **dict.fromkeys(
        ("lora_out_dir",),
        _PEFT,
    ),
    **dict.fromkeys(
        (
            "layer_offloading",
            "dynamic_checkpoint",
            "selective_checkpointing",
            "auto_find_batch_size",
            "save_first_step",
            "torchdistx_path",
            "log_sweep_min_lr",
            "log_sweep_max_lr",
            "train_on_split",
            "special_tokens_to_add",
            "model_config_type",
            "kd_trainer",
            "kd_alpha",
            "kd_beta",
            "kd_ce_alpha",
            "kd_normalize_topk",
            "kd_online_server",
            "kd_online_server_base_url",
            "kd_online_timeout",
            "kd_online_topk",
            "kd_temperature",
            "kd_temperature_min",
        ),
        _TRAINING,
    ),
    # axolotl's deprecated keys it refuses itself (DeprecatedParameters): the message says what replaced them.
    **dict.fromkeys(
        ("dpo_norm_loss", "dpo_use_logits_to_keep", "dpo_generate_during_eval"),
        "axolotl no longer supports it either (TRL 0.29 removed it); remove it",
    ),
    "rpo_alpha": "axolotl no longer supports it either (TRL 0.29 replaced it by a list of loss types, "
    "dpo_loss_type with dpo_loss_weights); remove it",
    "hub_revision": _HUB,
    # axolotl 0.19, after the snapshot: torchao's Float8 recipe options.
    "fp8_config": "hpcft's fp8: true runs its own FP8 recipe (docs/low-precision.md), without these options; remove it",
    "relora_steps": "the old name of jagged_restart_steps: rename it",
    "relora_warmup_steps": "the old name of jagged_restart_warmup_steps: rename it",
    **dict.fromkeys(
        ("swanlab_api_key", "swanlab_lark_secret", "swanlab_lark_webhook_url"),
        "a secret does not belong in a config that is copied into the run folder: export SWANLAB_API_KEY "
        "before submitting (the job receives it from your environment); remove it",
    ),
    "float32": _DTYPE,
    "gptq_groupsize": _QUANT,
    "gptq_model_v1": _QUANT,
}

# Keys in each entry of `datasets:` / `test_datasets:`.
WARN_ONLY_DATASET_KEYS: dict[str, str] = {
    "trust_remote_code": "the datasets library no longer runs loading scripts; hpcft loads data files only",
}
REFUSED_DATASET_KEYS: dict[str, str] = {
    **dict.fromkeys(
        (
            "preprocess_shards",
            "input_transform",
            "conversation",
            "message_field_training",
            "message_field_training_detail",
            "field_tools",
            "logprobs_field",
            "input_format",
        ),
        _DATA,
    ),
    **dict.fromkeys(("field_human", "field_model"), _RL),
    **dict.fromkeys(
        ("length", "sequence_length", "min_input_id", "max_input_id", "seed", "temperature"),
        "synthetic datasets are not supported; give a data file instead",
    ),
}


@dataclass(frozen=True)
class AxolotlKeySpace:
    """The snapshot of axolotl's schema: which commit, its top-level and dataset keys, its plugins."""

    commit: str
    top: frozenset[str]
    dataset: frozenset[str]
    plugins: frozenset[str]
    plugin_of: dict[str, str]  # plugin argument key -> the plugin that adds it
    chat_templates: frozenset[str]  # names axolotl accepts for chat_template
    optimizers: frozenset[str]  # axolotl's own optimizers (outside transformers)
    rl_methods: frozenset[str]
    dataset_types: frozenset[str]  # prompt strategies and legacy handlers a dataset `type:` may name


@cache
def axolotl_key_space() -> AxolotlKeySpace:
    """Read the snapshot shipped with the package."""
    text = files("hpcft.core").joinpath("axolotl_keys.txt").read_text()
    commit = ""
    sections: dict[str, set[str]] = {
        name: set() for name in ("top", "dataset", "plugin", "chat_template", "optimizer", "rl", "dataset_type")
    }
    plugin_of: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# axolotl config key space at commit "):
            commit = line.rsplit(" ", 1)[1]
        if not line or line.startswith("#"):
            continue
        section, key, *plugin = line.split()
        sections[section].add(key)
        if plugin:
            plugin_of[key] = plugin[0]
    return AxolotlKeySpace(
        commit,
        frozenset(sections["top"]),
        frozenset(sections["dataset"]),
        frozenset(sections["plugin"]),
        plugin_of,
        frozenset(sections["chat_template"]),
        frozenset(sections["optimizer"]),
        frozenset(sections["rl"]),
        frozenset(sections["dataset_type"]),
    )


def refusal_message(key: str, value: object, prefix: str = "") -> str:
    """One line: the axolotl option hpcft does not support yet, and what to do."""
    refused = REFUSED_DATASET_KEYS if prefix else REFUSED_KEYS
    hint = refused.get(key, _REMOVE)
    plugin = axolotl_key_space().plugin_of.get(key)
    if plugin and key not in refused:
        hint = _PLUGIN_ARGS
    return f"'{prefix}{key}' is an axolotl option hpcft does not support yet; {hint}"


def dataset_type_message(value: str, supported: Iterable[str]) -> str:
    """Why a dataset `type:` is not accepted: an axolotl type hpcft lacks, a custom module, or a typo."""
    names = ", ".join(sorted(supported))
    if value.split(".")[0].split(":")[0] in axolotl_key_space().dataset_types:
        return (
            f"'type: {value}' is an axolotl option hpcft does not support yet; convert the data to one of "
            f"{names} (or no type for pretokenized rows)"
        )
    if "." in value:
        return (
            f"'type: {value}' (a custom prompt-strategy module) is an axolotl option hpcft does not support "
            f"yet; convert the data to one of {names}"
        )
    close = difflib.get_close_matches(value, sorted(supported), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown dataset type '{value}'{hint} (supported: {names}, or no type for pretokenized rows)"


def plugin_refusal_message(plugin: str) -> str:
    if plugin in axolotl_key_space().plugins:
        return (
            f"'plugins: {plugin}' is an axolotl option hpcft does not support yet; remove it from plugins "
            "(and its keys)"
        )
    return (
        f"unknown plugin '{plugin}' in plugins; hpcft accepts only "
        f"{', '.join(sorted(PLUGINS_WITHOUT_EFFECT))} (with a warning)"
    )
