"""The one training-config schema, shared by the launcher (validates on the login node) and the trainer.

Keys keep axolotl's names and meaning. Keys axolotl has but hpcft does not implement are listed in
`UNSUPPORTED_AXOLOTL_KEYS` so that they fail by name instead of being silently ignored.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLURM_TIME_RE = re.compile(
    r"^(?:(?P<days>\d+)-(?P<dh>\d{1,2})(?::(?P<dm>\d{1,2})(?::(?P<ds>\d{1,2}))?)?"
    r"|(?P<h>\d+):(?P<m>\d{1,2}):(?P<s>\d{1,2})"
    r"|(?P<mm>\d+):(?P<ss>\d{1,2})"
    r"|(?P<minutes>\d+))$"
)


def slurm_time_to_seconds(value: str) -> int:
    """Parse a Slurm --time string (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) into seconds."""
    match = SLURM_TIME_RE.match(value.strip())
    if not match:
        raise ValueError(
            f"'{value}' is not a Slurm time; use HH:MM:SS, D-HH:MM:SS or minutes (e.g. 01:30:00 or 1-00:00:00)"
        )
    g = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    if "days" in g:
        return g["days"] * 86400 + g["dh"] * 3600 + g.get("dm", 0) * 60 + g.get("ds", 0)
    if "h" in g:
        return g["h"] * 3600 + g["m"] * 60 + g["s"]
    if "mm" in g:
        return g["mm"] * 60 + g["ss"]
    return g["minutes"] * 60


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DatasetConfig(_Strict):
    """One entry of `datasets:` (axolotl semantics)."""

    path: str
    type: str | None = None  # chat_template | completion | alpaca | None (pretokenized)
    ds_type: Literal["json", "jsonl", "parquet", "csv", "text", "arrow"] | None = None
    data_files: str | list[str] | None = None
    split: str = "train"
    name: str | None = None
    revision: str | None = None
    field: str | None = None  # completion: the text column (default "text")
    field_messages: str = "messages"
    message_property_mappings: dict[str, str] | None = None
    message_field_role: str | None = None  # legacy axolotl spelling of message_property_mappings.role
    message_field_content: str | None = None
    roles: dict[str, list[str]] | None = None
    roles_to_train: list[str] | None = None
    train_on_eos: Literal["turn", "last", "all", "none"] | None = None
    train_on_inputs: bool | None = None
    chat_template: str | None = None
    chat_template_jinja: str | None = None
    drop_system_message: bool | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value in ("sharegpt", "chat_template.default"):
            # axolotl removed sharegpt in favour of chat_template with mappings; keep users on one path.
            if value == "sharegpt":
                raise ValueError(
                    "type 'sharegpt' is not supported; use type: chat_template with field_messages: "
                    "conversations and message_property_mappings: {role: from, content: value}"
                )
            return "chat_template"
        if value not in SUPPORTED_DATASET_TYPES:
            raise ValueError(
                f"dataset type '{value}' is not supported yet; supported: "
                f"{', '.join(sorted(SUPPORTED_DATASET_TYPES))} (or no type for pretokenized data)"
            )
        return value

    def role_key(self) -> str:
        mapping = self.message_property_mappings or {}
        return mapping.get("role", self.message_field_role or "role")

    def content_key(self) -> str:
        mapping = self.message_property_mappings or {}
        return mapping.get("content", self.message_field_content or "content")


SUPPORTED_DATASET_TYPES = {"chat_template", "completion", "alpaca"}


class LaunchConfig(_Strict):
    """Job options: set by the profile, the config's `launch:` block and the command line (in that order)."""

    nodes: int = Field(1, ge=1)
    time: str = "01:00:00"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    reservation: str | None = None
    constraint: str | None = None
    job_name: str | None = None
    gpus_per_node: int = Field(0, ge=0)
    procs_per_node: int | None = Field(None, ge=1)  # torchrun --nproc_per_node; default: gpus_per_node or 1
    cpus_per_task: int | None = Field(None, ge=1)
    mem: str | None = None
    image: str | None = None
    mounts: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    sbatch_args: list[str] = Field(default_factory=list)
    srun_args: list[str] = Field(default_factory=list)
    runs_dir: str = "runs"
    # Reliability (issue: nothing lost). Seconds before the time limit at which the job checkpoints.
    signal_grace: int = Field(300, ge=10)
    requeue: bool = True
    max_requeues: int = Field(10, ge=0)
    hang_timeout: int = Field(1800, ge=1)  # seconds without a completed step before the watchdog ends the job

    @field_validator("time")
    @classmethod
    def _valid_time(cls, value: str) -> str:
        slurm_time_to_seconds(value)
        return value

    @field_validator("job_name")
    @classmethod
    def _valid_job_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or re.search(r'[\x00-\x1f"]', value)):
            raise ValueError(f"{value!r} cannot be a Slurm job name (no newlines, control characters or \")")
        return value

    @field_validator("mem")
    @classmethod
    def _valid_mem(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+[KMGT]?", str(value)):
            raise ValueError(f"'{value}' is not a Slurm memory size; use e.g. 460G, 64000M or 0 (all)")
        return value

    @field_validator("env")
    @classmethod
    def _valid_env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"'{name}' is not a valid environment variable name")
        return {k: str(v) for k, v in value.items()}

    @property
    def nproc_per_node(self) -> int:
        return self.procs_per_node or self.gpus_per_node or 1

    @property
    def time_seconds(self) -> int:
        return slurm_time_to_seconds(self.time)


class TrainConfig(_Strict):
    """The training config: axolotl keys, plus an optional `launch:` block."""

    # Model and tokenizer
    base_model: str
    base_model_config: str | None = None
    tokenizer_config: str | None = None
    tokenizer_type: str = "AutoTokenizer"
    model_type: str = Field("AutoModelForCausalLM", alias="type")
    model_revision: str | None = None
    trust_remote_code: bool = False
    tokenizer_use_fast: bool = True
    chat_template: str | None = None  # "tokenizer_default" | a name we ship | "jinja" (with chat_template_jinja)
    chat_template_jinja: str | None = None

    # Data
    datasets: list[DatasetConfig] = Field(min_length=1)
    test_datasets: list[DatasetConfig] | None = None
    dataset_prepared_path: str | None = None
    dataset_processes: int | None = Field(None, ge=1)
    shuffle_merged_datasets: bool = True
    val_set_size: float = Field(0.0, ge=0.0, alias="eval_set_size")
    sequence_len: int = Field(2048, ge=1)
    sample_packing: bool = False
    eval_sample_packing: bool | None = None
    pad_to_sequence_len: bool = False
    group_by_length: bool = False
    train_on_inputs: bool = False

    # Adapters and quantisation
    adapter: Literal["lora", "qlora"] | None = None
    lora_model_dir: str | None = None
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_target_modules: list[str] | str | None = None
    lora_target_linear: bool = False
    lora_modules_to_save: list[str] | None = None
    lora_fan_in_fan_out: bool = False
    load_in_4bit: bool = False
    load_in_8bit: bool = False

    # Precision and kernels
    bf16: bool | Literal["auto", "full"] = "auto"
    fp16: bool = False
    tf32: bool = False
    flash_attention: bool = False
    sdp_attention: bool = False
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None
    gradient_checkpointing: bool = False
    gradient_checkpointing_kwargs: dict[str, Any] | None = None

    # Optimisation
    gradient_accumulation_steps: int = Field(1, ge=1)
    micro_batch_size: int = Field(1, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    num_epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    optimizer: str = "adamw_torch"
    optim_args: dict[str, Any] | str | None = None
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float | None = Field(None, ge=0.0, le=1.0)
    warmup_steps: int | None = Field(None, ge=0)
    weight_decay: float = Field(0.0, ge=0.0)
    adam_beta1: float | None = None
    adam_beta2: float | None = None
    adam_epsilon: float | None = None
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    lr_scheduler_kwargs: dict[str, Any] | None = None
    cosine_min_lr_ratio: float | None = Field(None, ge=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, ge=0.0)

    # Evaluation, checkpoints, logging
    evals_per_epoch: int | None = Field(None, ge=0)
    eval_steps: int | None = Field(None, ge=1)
    saves_per_epoch: int | None = Field(None, ge=0)
    save_steps: int | None = Field(None, ge=1)
    save_strategy: Literal["steps", "epoch", "no"] | None = None
    save_total_limit: int | None = Field(None, ge=1)
    logging_steps: int = Field(1, ge=1)
    resume_from_checkpoint: str | None = None
    auto_resume_from_checkpoints: bool = True
    output_dir: str = "./outputs"
    seed: int = 42

    # Tokens
    special_tokens: dict[str, str] | None = None
    tokens: list[str] | None = None

    # Tracking
    wandb_project: str | None = None
    wandb_entity: str | None = None
    wandb_name: str | None = None
    wandb_run_id: str | None = None
    wandb_mode: Literal["online", "offline", "disabled"] | None = None
    wandb_watch: str | None = None
    wandb_log_model: str | None = None
    use_tensorboard: bool = False

    # Distributed
    deepspeed: str | dict[str, Any] | None = None
    ddp_timeout: int = Field(1800, ge=1)
    plugins: list[str] | None = None

    launch: LaunchConfig = Field(default_factory=LaunchConfig)

    @field_validator("bf16", mode="before")
    @classmethod
    def _bf16(cls, value: Any) -> Any:
        return "auto" if value is None else value

    @field_validator("plugins")
    @classmethod
    def _plugins(cls, value: list[str] | None) -> list[str] | None:
        for plugin in value or []:
            if plugin not in PLUGINS_WITHOUT_EFFECT:
                raise ValueError(
                    f"axolotl plugin '{plugin}' is not supported by hpcft yet; remove it from plugins"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit and load_in_8bit are mutually exclusive; keep one")
        if self.adapter == "qlora" and not self.load_in_4bit:
            raise ValueError("adapter: qlora needs load_in_4bit: true (or use adapter: lora)")
        if self.load_in_4bit and self.adapter != "qlora":
            raise ValueError(
                "load_in_4bit: true needs adapter: qlora (4-bit weights cannot be trained in full or with "
                "plain lora); set adapter: qlora"
            )
        if self.load_in_8bit and self.adapter is None:
            raise ValueError("load_in_8bit: true needs adapter: lora (8-bit weights cannot be fully fine-tuned)")
        if self.fp16 and self.bf16 is True:
            raise ValueError("bf16 and fp16 are mutually exclusive; keep one")
        if self.warmup_ratio and self.warmup_steps:
            raise ValueError("warmup_ratio and warmup_steps are mutually exclusive; keep one")
        if self.saves_per_epoch and self.save_steps:
            raise ValueError("saves_per_epoch and save_steps are mutually exclusive; keep one")
        if self.evals_per_epoch and self.eval_steps:
            raise ValueError("evals_per_epoch and eval_steps are mutually exclusive; keep one")
        if self.adapter and not (self.lora_target_modules or self.lora_target_linear):
            raise ValueError(
                f"adapter: {self.adapter} needs lora_target_modules (e.g. [q_proj, v_proj]) or "
                "lora_target_linear: true"
            )
        if self.chat_template == "jinja" and not self.chat_template_jinja:
            raise ValueError("chat_template: jinja needs chat_template_jinja (the template text)")
        return self

    @property
    def attention(self) -> str:
        """The attention implementation asked for (flash_attention_2 | sdpa | eager)."""
        if self.attn_implementation:
            return self.attn_implementation
        return "flash_attention_2" if self.flash_attention else "sdpa"

    def training_dict(self) -> dict[str, Any]:
        """The config as the trainer reads it: axolotl spellings, defaults filled, no launch block."""
        return self.model_dump(mode="json", by_alias=False, exclude={"launch"}, exclude_none=True)


# Plugins that only change speed/memory, never results: accepted with a warning (see WARN_ONLY_KEYS).
PLUGINS_WITHOUT_EFFECT = {
    "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin": "it only saves memory in the loss; "
    "hpcft computes the standard cross-entropy",
}

# Axolotl keys that only tune speed or memory of axolotl's own kernels: accepted, a warning says they do nothing.
WARN_ONLY_KEYS = {
    "flash_attn_rms_norm": "hpcft uses the model's own RMSNorm",
    "flash_attn_fuse_qkv": "hpcft does not fuse QKV projections",
    "flash_attn_fuse_mlp": "hpcft does not fuse MLP projections",
    "flash_attn_cross_entropy": "hpcft uses the model's own loss",
    "ddp_find_unused_parameters": "DeepSpeed does not use it",
    "eval_table_size": "hpcft logs no prediction tables",
    "eval_table_max_new_tokens": "hpcft logs no prediction tables",
    "strict": "hpcft always validates strictly",
    "debug": "use hpcft validate and hpcft logs instead",
    "save_safetensors": "hpcft always saves safetensors",
    "tokenizer_legacy": "the tokenizer's own setting is used",
}

# Axolotl keys with a meaning hpcft does not implement yet: setting them is an error that names them.
UNSUPPORTED_AXOLOTL_KEYS = {
    "base_model_ignore_patterns", "resize_token_embeddings_to_32x", "is_falcon_derived_model",
    "is_llama_derived_model", "is_mistral_derived_model", "is_qwen_derived_model", "gptq", "gptq_groupsize",
    "gptq_model_v1", "bfloat16", "float16", "push_dataset_to_hub", "hub_model_id", "hub_strategy",
    "hf_use_auth_token", "dataset_shard_num", "dataset_shard_idx", "max_packed_sequence_len",
    "sample_packing_eff_est", "total_num_tokens", "lora_out_dir", "relora_steps", "relora_warmup_steps",
    "relora_cpu_offload", "torch_compile", "torch_compile_backend", "lr_quadratic_warmup",
    "early_stopping_patience", "lr_div_factor", "log_sweep_min_lr", "log_sweep_max_lr", "flash_optimum",
    "xformers_attention", "landmark_attention", "xpos_rope", "rope_scaling", "local_rank", "fsdp",
    "fsdp_config", "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "torchdistx_path", "pretraining_dataset",
    "rl", "dpo_beta", "trl", "reward_model", "process_reward_model", "chat_template_kwargs", "unfrozen_parameters",
    "peft_use_dora", "peft_use_rslora", "lora_on_cpu", "neftune_noise_alpha", "loss_watchdog_threshold",
    "sequence_parallel_degree", "context_parallel_size", "tensor_parallel_size", "curriculum_sampling",
    "multipack_real_batches", "batch_flattening", "s2_attention", "eager_attention", "model_config_type",
    "dataset_exact_deduplication", "special_tokens_to_add", "embeddings_skip_upcast", "lora_qkv_kernel",
    "lora_o_kernel", "lora_mlp_kernel", "liger_rope", "liger_rms_norm", "liger_glu_activation",
    "liger_fused_linear_cross_entropy", "deepcompile", "gc_steps", "train_on_split",
}
UNSUPPORTED_DATASET_KEYS = {"shards", "conversation", "preprocess_shards", "trust_remote_code", "field_system",
                            "field_instruction", "field_input", "field_output", "format", "no_input_format",
                            "system_prompt", "system_format", "message_field_training", "message_field_training_detail",
                            "field_tools", "logprobs_field"}
