"""The one training-config schema, shared by the launcher (validates on the login node) and the trainer.
(Long on purpose: one documented field per config key; docs/config-reference.md is generated from it.)

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
    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)


class DatasetConfig(_Strict):
    """One entry of `datasets:` (axolotl semantics)."""

    path: str
    """Local file/folder (relative to the config file), a `save_to_disk` folder, or a Hub dataset name."""
    type: str | None = None  # chat_template | completion | alpaca | None (pretokenized)
    """Prompt format: `chat_template`, `completion`, `alpaca`; leave unset for pretokenized rows (input_ids/labels)."""
    ds_type: Literal["json", "jsonl", "parquet", "csv", "text", "arrow"] | None = None
    """File format when `path` is a file or folder: json, parquet, csv, text, arrow (guessed from the suffix)."""
    data_files: str | list[str] | None = None
    """Files to load (with `path: json` etc.), relative to the config file."""
    split: str = "train"
    """Split to train on."""
    name: str | None = None
    """Dataset configuration (subset) name on the Hub."""
    revision: str | None = None
    """Dataset revision on the Hub."""
    field: str | None = None  # completion: the text column (default "text")
    """`completion`: the column with the text (default `text`)."""
    field_messages: str = "messages"
    """`chat_template`: the column holding the list of messages."""
    message_property_mappings: dict[str, str] | None = None
    """`chat_template`: message keys for `role` and `content`, e.g. `{role: from, content: value}`."""
    message_field_role: str | None = None  # legacy axolotl spelling of message_property_mappings.role
    """Legacy spelling of `message_property_mappings.role`."""
    message_field_content: str | None = None
    """Legacy spelling of `message_property_mappings.content`."""
    roles: dict[str, list[str]] | None = None
    """Map template roles to the role names your data uses, e.g. `{user: [human], assistant: [gpt]}`."""
    roles_to_train: list[str] | None = None
    """Roles whose turns are trained (default `[assistant]`)."""
    train_on_eos: Literal["turn", "last", "all", "none"] | None = None
    """Which end-of-turn tokens are trained: `turn` (each trained turn), `last`, `all`, `none`."""
    train_on_inputs: bool | None = None
    """Per dataset: also train on the prompt tokens."""
    chat_template: str | None = None
    """Chat template: `tokenizer_default`, `jinja` (with `chat_template_jinja`), or a template name."""
    chat_template_jinja: str | None = None
    """The chat template text (Jinja) when `chat_template: jinja`."""
    drop_system_message: bool | None = None
    """Drop the system turn before templating."""

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
    """Number of nodes (`#SBATCH --nodes`)."""
    time: str = "01:00:00"
    """Time limit: `HH:MM:SS`, `D-HH:MM:SS` or minutes."""
    partition: str | None = None
    """Slurm partition."""
    account: str | None = None
    """Slurm account (project) to charge."""
    qos: str | None = None
    """Slurm QOS."""
    reservation: str | None = None
    """Slurm reservation."""
    constraint: str | None = None
    """Slurm node constraint."""
    job_name: str | None = None
    """Job name (default: the config file's name); also names the run folder."""
    gpus_per_node: int = Field(0, ge=0)
    """GPUs per node (`--gres=gpu:N`, or `--gpus-per-node` where the profile says so)."""
    procs_per_node: int | None = Field(None, ge=1)  # torchrun --nproc_per_node; default: gpus_per_node or 1
    """torchrun processes per node (default: gpus_per_node, or 1 without GPUs)."""
    cpus_per_task: int | None = Field(None, ge=1)
    """CPUs for the one task per node that runs torchrun."""
    mem: str | None = None
    """Memory per node, e.g. `460G` (`0` = all)."""
    image: str | None = None
    """Container image: a .sqsh/.sif path or a registry reference (`nvcr.io#nvidia/pytorch:25.01-py3`)."""
    mounts: list[str] = Field(default_factory=list)
    """Extra mounts (`/path` or `src:dst`), merged with the profile's; the run and output folders are always mounted."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for the job (never put secrets here: export them before submitting)."""
    sbatch_args: list[str] = Field(default_factory=list)
    """Extra `#SBATCH` options, e.g. `[--exclusive]`."""
    srun_args: list[str] = Field(default_factory=list)
    """Extra options for the `srun` that starts torchrun."""
    runs_dir: str = "runs"
    """Where run folders are written (`<runs_dir>/<job_name>/<timestamp>`), relative to the current folder."""
    # Reliability (issue: nothing lost). Seconds before the time limit at which the job checkpoints.
    signal_grace: int = Field(300, ge=10)
    """Seconds before the time limit at which the job checkpoints and requeues itself."""
    requeue: bool = True
    """Checkpoint and requeue at the time limit."""
    max_requeues: int = Field(10, ge=0)
    """Stop requeueing after this many restarts."""
    hang_timeout: int = Field(1800, ge=1)  # seconds without a completed step before the watchdog ends the job
    """Seconds without a completed step before the watchdog dumps stacks and ends the job."""
    # Preprocessing (tokenize + pack) in its own CPU job, chained before training (issue: GPUs wait for no CPU work).
    preprocess: Literal["job", "inline", "auto"] = "auto"
    """`auto`: a one-node CPU job tokenizes and packs first when the prepared dataset for this config is not in
    dataset_prepared_path yet (training waits for it, `--dependency=afterok`; when the login node cannot check,
    because the tokenizer's files are not on it, the training job prepares the data); `job`: always that job
    first; `inline`: the training job prepares the data itself."""
    preprocess_partition: str | None = None
    """Partition of the preprocessing job (default: `partition`)."""
    preprocess_account: str | None = None
    """Account of the preprocessing job (default: `account`)."""
    preprocess_qos: str | None = None
    """QOS of the preprocessing job."""
    preprocess_cpus: int | None = Field(None, ge=1)
    """CPUs of the preprocessing job, all used by `dataset_processes` (default: the whole node, `--exclusive`)."""
    preprocess_mem: str | None = None
    """Memory of the preprocessing job (`0` = all of the node)."""
    preprocess_time: str = "01:00:00"
    """Time limit of the preprocessing job."""

    @field_validator("time", "preprocess_time")
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

    @field_validator("mem", "preprocess_mem")
    @classmethod
    def _valid_mem(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d+[KMGT]?", str(value)):
            raise ValueError(f"'{value}' is not a Slurm memory size; use e.g. 460G, 64000M or 0 (all)")
        return value

    @field_validator("mounts", "sbatch_args", "srun_args", mode="before")
    @classmethod
    def _one_string_is_one_item(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("sbatch_args")
    @classmethod
    def _long_sbatch_options(cls, value: list[str]) -> list[str]:
        for arg in value:
            if not re.fullmatch(r"--[A-Za-z][A-Za-z0-9-]*(=\S.*)?", arg) or "\n" in arg:
                raise ValueError(f"'{arg}' is not one long Slurm option; write one option per item in the form "
                                 "--key or --key=value (e.g. [--exclusive, --mem=0])")
        return value

    @field_validator("env")
    @classmethod
    def _valid_env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"'{name}' is not a valid environment variable name")
        return {k: str(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _time_leaves_room_to_train(self) -> LaunchConfig:
        # USR1 arrives signal_grace seconds before the end: a time limit not well above it checkpoints and requeues
        # at once, round after round, with almost no training in between.
        seconds = slurm_time_to_seconds(self.time)
        if self.requeue and seconds < 2 * self.signal_grace:
            raise ValueError(f"time '{self.time}' is {seconds} s, less than twice signal_grace "
                             f"({self.signal_grace} s): "
                             "the job would checkpoint and requeue almost as soon as it starts. Ask for more time "
                             "(note that Slurm reads 1:30 as 1 min 30 s; write 01:30:00 for 1.5 hours) or lower "
                             "launch.signal_grace")
        return self

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
    """Hub id or local folder (relative to the config file) of the model to fine-tune."""
    base_model_config: str | None = None
    """Load the model config from here instead of `base_model`."""
    tokenizer_config: str | None = None
    """Load the tokenizer from here instead of `base_model`."""
    tokenizer_type: str = "AutoTokenizer"
    """Tokenizer class (AutoTokenizer)."""
    model_type: str = Field("AutoModelForCausalLM", alias="type")
    """Model class (AutoModelForCausalLM); `type:` is accepted too."""
    model_revision: str | None = None
    """Model revision on the Hub."""
    trust_remote_code: bool = False
    """Allow custom model code from the Hub."""
    tokenizer_use_fast: bool = True
    """Use the fast (Rust) tokenizer."""
    chat_template: str | None = None  # "tokenizer_default" | a name we ship | "jinja" (with chat_template_jinja)
    """Chat template: `tokenizer_default`, `jinja` (with `chat_template_jinja`), or a template name."""
    chat_template_jinja: str | None = None
    """The chat template text (Jinja) when `chat_template: jinja`."""

    # Data
    datasets: list[DatasetConfig] = Field(min_length=1)
    """Training datasets (see the dataset keys below)."""
    test_datasets: list[DatasetConfig] | None = None
    """Evaluation datasets (instead of splitting off `val_set_size`)."""
    dataset_prepared_path: str | None = None
    """Cache folder for tokenized data, keyed on the config, the data files' content and the tokenizer."""
    dataset_processes: int | None = Field(None, ge=1)
    """Processes used for tokenizing (default: CPUs available)."""
    shuffle_merged_datasets: bool = True
    """Shuffle the merged datasets (seeded)."""
    val_set_size: float = Field(0.0, ge=0.0, alias="eval_set_size")
    """Held-out evaluation share (<1) or row count (>=1); `eval_set_size` is accepted too."""
    sequence_len: int = Field(2048, ge=1)
    """Maximum tokens per sample (and per packed row)."""
    sample_packing: bool = False
    """Pack several samples into each row of `sequence_len` tokens (attention never crosses samples)."""
    eval_sample_packing: bool | None = None
    """Pack evaluation data too (default: as sample_packing)."""
    pad_to_sequence_len: bool = False
    """Pad every batch to `sequence_len` (constant shapes)."""
    group_by_length: bool = False
    """Batch samples of similar length together."""
    train_on_inputs: bool = False
    """Per dataset: also train on the prompt tokens."""

    # Adapters and quantisation
    adapter: Literal["lora", "qlora"] | None = None
    """`lora` or `qlora`; unset for full fine-tuning."""
    lora_model_dir: str | None = None
    """Continue training an existing LoRA adapter from this folder."""
    lora_r: int = Field(8, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(16, ge=1)
    """LoRA scaling alpha."""
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """LoRA dropout."""
    lora_target_modules: list[str] | str | None = None
    """Module names to adapt, e.g. `[q_proj, v_proj]`."""
    lora_target_linear: bool = False
    """Adapt every linear layer except the output head."""
    lora_modules_to_save: list[str] | None = None
    """Modules trained in full and saved with the adapter (e.g. `[embed_tokens, lm_head]` after adding tokens)."""
    lora_fan_in_fan_out: bool = False
    """Set for models storing weights as (fan_in, fan_out), e.g. GPT-2."""
    load_in_4bit: bool = False
    """Load base weights in 4-bit NF4 (QLoRA; needs `adapter: qlora`)."""
    load_in_8bit: bool = False
    """Load base weights in 8-bit (needs an adapter)."""

    # Precision and kernels
    bf16: bool | Literal["auto", "full"] = "auto"
    """bfloat16 mixed precision: true, false, `auto` (when the GPU supports it) or `full`."""
    fp16: bool = False
    """float16 mixed precision."""
    tf32: bool = False
    """Allow TF32 matmuls on Ampere and newer."""
    flash_attention: bool = False
    """Use flash-attention 2 (falls back to sdpa with a message when flash-attn is missing)."""
    sdp_attention: bool = False
    """Use PyTorch scaled-dot-product attention (the default)."""
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None
    """Attention implementation: eager, sdpa, flash_attention_2 (overrides flash_attention)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    gradient_checkpointing_kwargs: dict[str, Any] | None = None
    """Options for gradient checkpointing, e.g. `{use_reentrant: false}`."""

    # Optimisation
    gradient_accumulation_steps: int = Field(1, ge=1)
    """Micro-batches accumulated per optimizer step."""
    micro_batch_size: int = Field(1, ge=1)
    """Rows per GPU per micro-batch."""
    eval_batch_size: int | None = Field(None, ge=1)
    """Rows per GPU for evaluation (default: micro_batch_size)."""
    num_epochs: float = Field(1.0, gt=0)
    """Epochs to train."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (overrides num_epochs)."""
    optimizer: str = "adamw_torch"
    """Optimizer by transformers name: adamw_torch, adamw_torch_fused, adamw_bnb_8bit, paged_adamw_8bit, ..."""
    optim_args: dict[str, Any] | str | None = None
    """Extra optimizer arguments (mapping or `k=v,k=v`)."""
    learning_rate: float = Field(2e-5, gt=0)
    """Peak learning rate."""
    warmup_ratio: float | None = Field(None, ge=0.0, le=1.0)
    """Warm-up as a share of all steps."""
    warmup_steps: int | None = Field(None, ge=0)
    """Warm-up steps."""
    weight_decay: float = Field(0.0, ge=0.0)
    """Weight decay."""
    adam_beta1: float | None = None
    """Adam beta1."""
    adam_beta2: float | None = None
    """Adam beta2."""
    adam_epsilon: float | None = None
    """Adam epsilon."""
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    """Schedule: cosine, linear, constant, constant_with_warmup."""
    lr_scheduler_kwargs: dict[str, Any] | None = None
    """Extra scheduler arguments."""
    cosine_min_lr_ratio: float | None = Field(None, ge=0.0, le=1.0)
    """Cosine decays to this share of the peak learning rate instead of 0."""
    max_grad_norm: float = Field(1.0, ge=0.0)
    """Gradient clipping norm."""

    # Evaluation, checkpoints, logging
    evals_per_epoch: int | None = Field(None, ge=0)
    """Evaluations per epoch."""
    eval_steps: int | None = Field(None, ge=1)
    """Evaluate every N steps."""
    saves_per_epoch: int | None = Field(None, ge=0)
    """Checkpoints per epoch."""
    save_steps: int | None = Field(None, ge=1)
    """Checkpoint every N steps."""
    save_strategy: Literal["steps", "epoch", "no"] | None = None
    """`steps`, `epoch` or `no`."""
    save_total_limit: int | None = Field(None, ge=1)
    """Keep at most this many checkpoints (the latest complete one is never deleted)."""
    logging_steps: int = Field(1, ge=1)
    """Log a metrics line every N steps."""
    resume_from_checkpoint: str | None = None
    """Resume from this checkpoint folder."""
    auto_resume_from_checkpoints: bool = True
    """Resume from the latest complete checkpoint in output_dir (requeued jobs rely on it)."""
    elastic_allow_batch_change: bool = False
    """hpcft: on a resume with another number of ranks that cannot keep the checkpoint's global batch, continue
    with this config's gradient_accumulation_steps instead of refusing (the global batch then changes)."""
    output_dir: str = "./outputs"
    """Where checkpoints, metrics.jsonl and the final model go (relative to the config file)."""
    seed: int = 42
    """Random seed (data order, initialisation of new weights)."""

    # Tokens
    special_tokens: dict[str, str] | None = None
    """Set special tokens, e.g. `{pad_token: "<|pad|>"}`; embeddings are resized."""
    tokens: list[str] | None = None
    """Extra tokens to add to the vocabulary; embeddings are resized."""

    # Tracking
    wandb_project: str | None = None
    """Weights & Biases project (logging is on when set)."""
    wandb_entity: str | None = None
    """Weights & Biases team."""
    wandb_name: str | None = None
    """Weights & Biases run name."""
    wandb_run_id: str | None = None
    """Weights & Biases run id (to continue a run)."""
    wandb_mode: Literal["online", "offline", "disabled"] | None = None
    """online, offline or disabled."""
    wandb_watch: str | None = None
    """Weights & Biases model watching (gradients, all)."""
    wandb_log_model: str | None = None
    """Upload the model to Weights & Biases: `checkpoint` or `end`."""
    use_tensorboard: bool = False
    """Write TensorBoard logs under output_dir."""

    # Distributed
    deepspeed: str | dict[str, Any] | None = None
    """DeepSpeed: a preset (zero1, zero2, zero3, zero3_offload), a JSON file or inline; default zero3 (QLoRA: zero2)."""
    ddp_timeout: int = Field(1800, ge=1)
    """Seconds a collective may wait before the job fails (NCCL/gloo timeout)."""
    plugins: list[str] | None = None
    """axolotl plugins; only ones without effect on results are accepted (with a warning)."""

    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    """Job options (see the launch keys below)."""

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
