"""The one training-config schema, shared by the launcher (validates on the login node) and the trainer.
(Long on purpose: one documented field per config key; docs/config-reference.md is generated from it.)

Keys keep axolotl's names and meaning. The rest of axolotl's key space (accepted with a warning, or refused by
name) is classified in `axolotl_keys.py`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpcft.core.axolotl_keys import (
    PLUGINS_WITHOUT_EFFECT,
    axolotl_key_space,
    dataset_type_message,
    plugin_refusal_message,
)
from hpcft.core.chat_templates import chat_template_choice_error
from hpcft.core.checks.chat_template_check import chat_template_problem
from hpcft.core.checks.log_options import log_moving_problem
from hpcft.core.checks.scheduler_kwargs import scheduler_kwargs_problem
from hpcft.core.features.best_checkpoint import check_best_checkpoint
from hpcft.core.features.eval_datasets import check_benchmarks
from hpcft.core.features.fp8 import check_fp8
from hpcft.core.features.mlflow_tracking import check_mlflow_uri
from hpcft.core.features.model_loading import check_model_loading
from hpcft.core.features.nvfp4 import check_nvfp4_merge_aware
from hpcft.core.features.objectives import DIFFUSION_PLUGINS, REWARD_DATASET_TYPES, DiffusionConfig, check_objectives
from hpcft.core.features.optimizers import (
    COMMON_OPTIMIZERS,
    HPCFT_OPTIMIZERS,
    TRANSFORMERS_OPTIMIZERS,
    check_cosine_constant,
    check_muon,
)
from hpcft.core.features.peft_extensions import (
    PeftBlock,
    check_bnb_config_kwargs,
    check_peft_extensions,
    check_unfrozen_with_adapter,
)
from hpcft.core.features.prompt_strategies import (
    PROMPT_STYLES,
    STRATEGY_COLUMNS,
    STYLED_BASES,
    UserDefinedPromptType,
    check_messages_template,
    strategy_name,
    strategy_type_error,
)
from hpcft.core.features.qat import QatConfig, check_qat
from hpcft.core.features.sparse_finetuning import LLMCOMPRESSOR_PLUGINS, LlmCompressorConfig, check_llmcompressor
from hpcft.core.features.training_loop import check_training_loop
from hpcft.core.quoting import check_env_name, check_path_component

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


def _did_you_mean(value: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def field_aliases(name: str, field: Any) -> list[str]:
    """The other spellings a schema field accepts (its alias, or its validation alias choices)."""
    names: list[str] = []
    if field.alias:
        names.append(field.alias)
    if isinstance(field.validation_alias, AliasChoices):
        names += [c for c in field.validation_alias.choices if isinstance(c, str)]
    elif isinstance(field.validation_alias, str):
        names.append(field.validation_alias)
    return [n for n in dict.fromkeys(names) if n != name]


def check_chat_template_name(value: str | None) -> str | None:
    """A `chat_template:` value must name a template hpcft ships (checked on the login node, not on the node)."""
    error = chat_template_choice_error(value) if value is not None else None
    if error:
        raise ValueError(error)
    return value


def check_chat_template_text(value: str | None) -> str | None:
    """A `chat_template_jinja` must compile as transformers compiles it, on the login node rather than the node."""
    problem = chat_template_problem(value) if value is not None else None
    if problem:
        raise ValueError(problem)
    return value


def _keep_logs_in_run_dir(args: list[str], which: str) -> list[str]:
    problem = log_moving_problem(args, which)
    if problem:
        raise ValueError(problem)
    return args


INT64_MAX = 2**63 - 1


def giant_integer(value: Any, key: str = "") -> str | None:
    """The dotted key of the first integer beyond int64 in a raw config value (None when there is none)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", item) for i, item in enumerate(value))
    else:
        return key if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX else None
    for name, item in items:
        name = str(name)
        found = giant_integer(item, f"{key}{name}" if name.startswith("[") or not key else f"{key}.{name}")
        if found:
            return found
    return None


def check_optimizer_name(value: str) -> str:
    """`optimizer:` must be a transformers optimizer or muon (trainer/loop/muon.py); axolotl's other ones are refused by
    name."""
    if value in TRANSFORMERS_OPTIMIZERS or value in HPCFT_OPTIMIZERS:
        return value
    if value in axolotl_key_space().optimizers:
        raise ValueError(
            f"'optimizer: {value}' is an axolotl option hpcft does not support yet; use one of "
            f"{', '.join(COMMON_OPTIMIZERS)}"
        )
    raise ValueError(
        f"unknown optimizer '{value}'{_did_you_mean(value, TRANSFORMERS_OPTIMIZERS)} (common: "
        f"{', '.join(COMMON_OPTIMIZERS)}; any transformers optimizer name works)"
    )


class _Strict(BaseModel):
    # allow_inf_nan=False: `learning_rate: .inf` (or "nan" from --set) would reach the optimizer and train NaNs on the
    # node; every float key of every block is refused on the login node instead.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_giant_integers(cls, data: Any) -> Any:
        # Beyond int64 no library on the node takes an integer (torch, numpy, Slurm); the outermost block checks
        # every value under it, free-form mappings (deepspeed, lr_scheduler_kwargs) included.
        found = giant_integer(data)
        if found:
            raise ValueError(f"key '{found}': the number is too large (at most {INT64_MAX}); fix it")
        return data


class UserDefinedPreferenceType(_Strict):
    """`type:` as a mapping (axolotl's user_defined.default for rl: dpo/ipo/orpo/simpo/kto): which columns hold the
    parts of a preference row and Python format strings that build the texts from them."""

    field_prompt: str = "prompt"
    """Column with the prompt."""
    field_system: str = "system"
    """Column with the system prompt (used when prompt_format contains `{system}`)."""
    field_chosen: str = "chosen"
    """Column with the chosen answer (dpo/ipo/orpo/simpo)."""
    field_rejected: str = "rejected"
    """Column with the rejected answer (dpo/ipo/orpo/simpo)."""
    field_completion: str = "completion"
    """Column with the completion (kto)."""
    field_label: str = "label"
    """Column with the desirable (true) / undesirable (false) label (kto)."""
    prompt_format: str | None = None
    """Prompt text, e.g. `"Question: {prompt} Answer:"`; may use `{system}` (default `{prompt}`)."""
    chosen_format: str | None = None
    """Chosen text from `{chosen}` (default `{chosen}`)."""
    rejected_format: str | None = None
    """Rejected text from `{rejected}` (default `{rejected}`)."""
    completion_format: str | None = None
    """KTO completion text from `{completion}` (default `{completion}`)."""


class DatasetConfig(_Strict):
    """One entry of `datasets:` (axolotl semantics)."""

    path: str
    """Local file/folder (relative to the config file), a `save_to_disk` folder, or a Hub dataset name."""
    type: str | UserDefinedPreferenceType | UserDefinedPromptType | None = None
    """Prompt format: `chat_template`, `completion`, `alpaca`, another axolotl strategy (docs/datasets.md), a
    user-defined format (a mapping), unset if pretokenized; with `rl:` a preference type."""
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
    train_on_eot: Literal["turn", "last", "all", "none"] | None = None
    """Which `eot_tokens` are trained, with the values of `train_on_eos` (default: as `train_on_eos`)."""
    train_on_inputs: bool | None = None
    """Per dataset: also train on the prompt tokens."""
    chat_template: str | None = None
    """Chat template: `tokenizer_default`, `jinja` (with `chat_template_jinja`), or a template name."""
    chat_template_jinja: str | None = None
    """The chat template text (Jinja) when `chat_template: jinja`."""
    drop_system_message: bool | None = None
    """Drop the system turn before templating."""
    shards: int | None = Field(None, ge=1)
    """Train on one of this many equal shards of the (shuffled) dataset."""
    shards_idx: int | None = Field(None, ge=0)
    """Which shard `shards` keeps (default 0)."""
    split_thinking: bool | None = None
    """Move `<think>...</think>` (or `<reasoning>`, `<|begin_of_thought|>`) at the start of an answer into its
    `reasoning_content`, for templates that render reasoning themselves (qwen3)."""
    field_chosen: str | None = None
    """Preference `chat_template.*` types: the column with the chosen answer (default `chosen`)."""
    field_rejected: str | None = None
    """Preference `chat_template.*` types: the column with the rejected answer (default `rejected`)."""
    step_separator: str | None = None
    """`stepwise_supervised`: text appended after each step; its last token carries the step's label (default
    a newline)."""
    max_completion_length: int | None = Field(None, ge=1)
    """`stepwise_supervised`: keep at most this many tokens of the steps."""
    train_on_last_step_only: bool | None = None
    """`stepwise_supervised`: train on the label of the last step only."""
    field_thinking: str | None = None
    """`chat_template`: the message key holding the reasoning trace (default `reasoning_content`); it reaches the
    template as `template_thinking_key`."""
    template_thinking_key: str | None = None
    """`chat_template`: the message key the chat template reads the reasoning from (default `reasoning_content`;
    gpt-oss: `thinking`); `split_thinking` writes the reasoning there too."""
    text_column: str | None = None
    """`pretrain` (pretraining_dataset): the column with the text (default `text`)."""
    skip: int | None = Field(None, ge=0)
    """Skip this many rows at the start of the dataset (e.g. what an earlier run already trained on)."""

    @field_validator("type")
    @classmethod
    def _known_type(
        cls, value: str | UserDefinedPreferenceType | UserDefinedPromptType | None
    ) -> str | UserDefinedPreferenceType | UserDefinedPromptType | None:
        if value is None or isinstance(value, (UserDefinedPreferenceType, UserDefinedPromptType)):
            return value
        if value in ALL_PREFERENCE_TYPES or value in REWARD_DATASET_TYPES:  # checked against `rl:` etc. by TrainConfig
            return value
        if value in ("sharegpt", "chat_template.default"):
            # axolotl removed sharegpt in favour of chat_template with mappings; keep users on one path.
            if value == "sharegpt":
                raise ValueError(
                    "type 'sharegpt' is not supported; use type: chat_template with field_messages: "
                    "conversations and message_property_mappings: {role: from, content: value}"
                )
            return "chat_template"
        if value in SUPPORTED_DATASET_TYPES or value in STYLED_DATASET_TYPES:
            return value
        if strategy_name(value):
            return value.removesuffix(".load")
        raise ValueError(
            strategy_type_error(value) or dataset_type_message(value, SUPPORTED_DATASET_TYPES | set(STRATEGY_COLUMNS))
        )

    @field_validator("chat_template")
    @classmethod
    def _known_chat_template(cls, value: str | None) -> str | None:
        return check_chat_template_name(value)

    @field_validator("chat_template_jinja")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return check_chat_template_text(value)

    def thinking_keys(self) -> tuple[str, str]:
        """(key in the data, key the template reads) of a message's reasoning trace."""
        return self.field_thinking or "reasoning_content", self.template_thinking_key or "reasoning_content"

    def role_key(self) -> str:
        mapping = self.message_property_mappings or {}
        return mapping.get("role", self.message_field_role or "role")

    def content_key(self) -> str:
        mapping = self.message_property_mappings or {}
        return mapping.get("content", self.message_field_content or "content")


CAUSAL_LM_METRICS = ("sacrebleu", "chrf", "ter", "perplexity")
SUPPORTED_DATASET_TYPES = {"chat_template", "completion", "alpaca", "jeopardy", "pretrain"}
# axolotl's `type: alpaca:chat`: an instruction type with one of its prompt styles.
STYLED_DATASET_TYPES = {f"{base}:{style}" for base in STYLED_BASES for style in PROMPT_STYLES}

# Preference tuning (`rl:`), through TRL's trainers. The dataset types per method keep axolotl's names; the bare
# family name (`chatml`) means its `default`, and `chat_template` / `chat_template.default` mean the same type.
RL_METHODS = ("dpo", "ipo", "orpo", "kto", "simpo")
RL_NEEDS_GENERATION = {
    "grpo": "GRPO samples completions from the policy during training",
    "gdpo": "GDPO samples completions from the policy during training",
    "ebft": "EBFT samples completions from the policy during training",
}
_PAIRED_FAMILY_TYPES = ("default", "argilla", "argilla_chat", "icr", "intel", "prompt_pairs", "ultra")
PAIRED_PREFERENCE_TYPES = frozenset(
    {f"{family}.{kind}" for family in ("chatml", "llama3") for kind in _PAIRED_FAMILY_TYPES}
    | {"chatml", "llama3", "zephyr.nectar", "chat_template", "chat_template.argilla_chat"}
)
KTO_PREFERENCE_TYPES = frozenset(
    {
        f"{family}.{kind}"
        for family in ("chatml", "llama3")
        for kind in ("argilla", "argilla_chat", "intel", "prompt_pairs", "ultra")
    }
)
# ORPO also reads chat_template.argilla (the whole conversation in chosen/rejected, optional prompt column).
PREFERENCE_TYPES = {
    "dpo": PAIRED_PREFERENCE_TYPES,
    "ipo": PAIRED_PREFERENCE_TYPES,
    "simpo": PAIRED_PREFERENCE_TYPES,
    "orpo": PAIRED_PREFERENCE_TYPES | {"chat_template.argilla"},
    "kto": KTO_PREFERENCE_TYPES,
}
ALL_PREFERENCE_TYPES = frozenset().union(*PREFERENCE_TYPES.values()) - {"chat_template"}
# TRL 1.16's DPOConfig.loss_type values.
DPO_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)
# Keys that only mean something for some methods: set for another method they would silently do nothing.
RL_METHOD_KEYS = {
    "dpo_loss_type": ("dpo",),
    "dpo_loss_weights": ("dpo",),
    "dpo_label_smoothing": ("dpo",),
    "dpo_use_weighting": ("dpo", "ipo"),
    "precompute_ref_log_probs": ("dpo", "ipo", "kto"),
    "orpo_alpha": ("orpo",),
    "simpo_gamma": ("simpo",),
    "cpo_alpha": ("simpo",),
    "kto_desirable_weight": ("kto",),
    "kto_undesirable_weight": ("kto",),
}


def rl_refusal(method: str) -> str:
    """Why a generation-based method is refused (one message for the key check and the schema)."""
    return (
        f"'rl: {method}' is an axolotl option hpcft does not support yet: {RL_NEEDS_GENERATION[method]}, which "
        f"needs a generation server (vLLM) next to the trainer; use one of {', '.join(RL_METHODS)}"
    )


def preference_type_name(value: str | UserDefinedPreferenceType | None) -> str | None:
    """The canonical name of a preference dataset type: `chatml` -> `chatml.default`, a mapping -> user_defined."""
    if isinstance(value, UserDefinedPreferenceType):
        return "user_defined.default"
    if value in ("chatml", "llama3"):
        return f"{value}.default"
    if value == "chat_template":
        return "chat_template.default"
    return value


class TrlConfig(_Strict):
    """`trl:` keys that apply to the preference methods (the rest of axolotl's `trl:` block is for GRPO)."""

    beta: float | None = Field(None, gt=0)
    """Same as `rl_beta` (wins over it)."""
    sync_ref_model: bool | None = None
    """dpo: move the reference model towards the policy every `ref_model_sync_steps` (TR-DPO; full fine-tuning)."""
    ref_model_mixup_alpha: float | None = Field(None, ge=0, le=1)
    """dpo with sync_ref_model: share of the policy mixed into the reference at each sync."""
    ref_model_sync_steps: int | None = Field(None, ge=1)
    """dpo with sync_ref_model: steps between syncs."""


FSDP_SHARDING_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "_HYBRID_SHARD_ZERO2")
FSDP_LIST_OPTIONS = {
    "full_shard",
    "shard_grad_op",
    "no_shard",
    "hybrid_shard",
    "hybrid_shard_zero2",
    "offload",
    "auto_wrap",
}


class FsdpConfig(_Strict):
    """`fsdp_config:` (axolotl semantics). axolotl's older `fsdp_`-prefixed spellings are accepted too."""

    fsdp_version: Literal[1, 2] | None = Field(None, alias="version")
    """FSDP version (1 or 2); the top-level `fsdp_version` is the same setting."""
    activation_checkpointing: bool | None = None
    """Recompute activations in the backward pass (FSDP's own activation checkpointing)."""
    offload_params: bool | None = None
    """Keep parameters (and optimizer state) in CPU memory between uses."""
    sync_module_states: bool | None = None
    """FSDP1: broadcast rank 0's weights to every rank when wrapping."""
    cpu_ram_efficient_loading: bool | None = None
    """Load the weights on rank 0 only and send them to the other ranks."""
    cpu_offload_pin_memory: bool | None = None
    """FSDP2: pin the offloaded parameters' CPU memory."""
    use_orig_params: bool | None = None
    """FSDP1: keep the original parameters visible to the optimizer."""
    state_dict_type: Literal["FULL_STATE_DICT", "LOCAL_STATE_DICT", "SHARDED_STATE_DICT"] | None = None
    """How checkpoints are written; the final model is always saved whole (FULL_STATE_DICT)."""
    final_state_dict_type: Literal["FULL_STATE_DICT", "LOCAL_STATE_DICT", "SHARDED_STATE_DICT"] | None = None
    """How the final model is saved (hpcft always saves it whole, so from_pretrained loads output_dir)."""
    auto_wrap_policy: Literal["TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP"] | None = None
    """Which modules become FSDP units: the transformer layers, modules above a size, or none."""
    transformer_layer_cls_to_wrap: str | list[str] | None = None
    """Class name(s) of the transformer layers to wrap, e.g. `LlamaDecoderLayer` (default: the model's own)."""
    min_num_params: int | None = Field(None, ge=1)
    """SIZE_BASED_WRAP: parameter count above which a module is wrapped."""
    reshard_after_forward: bool | str | None = None
    """Free gathered parameters after the forward pass (FULL_SHARD) or keep them (SHARD_GRAD_OP)."""
    sharding_strategy: Literal[FSDP_SHARDING_STRATEGIES] | None = None  # type: ignore[valid-type]
    """FSDP1: FULL_SHARD, SHARD_GRAD_OP, HYBRID_SHARD, NO_SHARD."""
    limit_all_gathers: bool | None = None
    """FSDP1: rate-limit all-gathers to bound memory."""
    backward_prefetch: Literal["BACKWARD_PRE", "BACKWARD_POST", "NO_PREFETCH"] | None = None
    """FSDP1: when to prefetch the next unit's parameters in the backward pass."""
    forward_prefetch: bool | None = None
    """FSDP1: prefetch the next unit's parameters in the forward pass."""
    mixed_precision_policy: str | None = None
    """Mixed precision inside FSDP; hpcft takes it from `bf16`/`fp16`."""

    @model_validator(mode="before")
    @classmethod
    def _drop_fsdp_prefix(cls, data: Any) -> Any:
        # axolotl (and accelerate's config files) spell these `fsdp_offload_params` etc.; both mean the same.
        if not isinstance(data, dict):
            return data
        out: dict[Any, Any] = {}
        for key, value in data.items():
            name = (
                key[len("fsdp_") :]
                if isinstance(key, str) and key.startswith("fsdp_") and key != "fsdp_version"
                else key
            )
            if name in out:
                raise ValueError(f"'{key}' is given twice (with and without the fsdp_ prefix); keep one")
            out[name] = value
        return out

    @field_validator("sharding_strategy", "backward_prefetch", "auto_wrap_policy", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _size_wrap_needs_size(self) -> FsdpConfig:
        if self.auto_wrap_policy == "SIZE_BASED_WRAP" and self.min_num_params is None:
            raise ValueError("auto_wrap_policy: SIZE_BASED_WRAP needs min_num_params (e.g. 100000000)")
        return self


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
    strict_keys: bool = False
    """Refuse config keys that have no effect (keys axolotl lacks too) instead of warning, as `--strict` does."""

    @field_validator("time", "preprocess_time")
    @classmethod
    def _valid_time(cls, value: str) -> str:
        slurm_time_to_seconds(value)
        return value

    @field_validator("job_name")
    @classmethod
    def _valid_job_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or re.search(r'[\x00-\x1f"]', value)):
            raise ValueError(f'{value!r} cannot be a Slurm job name (no newlines, control characters or ")')
        return value if value is None else check_path_component(value, "a job name")

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
                raise ValueError(
                    f"'{arg}' is not one long Slurm option; write one option per item in the form "
                    "--key or --key=value (e.g. [--exclusive, --mem=0])"
                )
        return _keep_logs_in_run_dir(value, "sbatch_args")

    @field_validator("srun_args")
    @classmethod
    def _srun_keeps_logs(cls, value: list[str]) -> list[str]:
        return _keep_logs_in_run_dir(value, "srun_args")

    @field_validator("env")
    @classmethod
    def _valid_env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            check_env_name(name)
        return {k: str(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _time_leaves_room_to_train(self) -> LaunchConfig:
        # USR1 arrives signal_grace seconds before the end: a time limit not well above it checkpoints and requeues
        # at once, round after round, with almost no training in between.
        seconds = slurm_time_to_seconds(self.time)
        if self.requeue and seconds < 2 * self.signal_grace:
            raise ValueError(
                f"time '{self.time}' is {seconds} s, less than twice signal_grace "
                f"({self.signal_grace} s): "
                "the job would checkpoint and requeue almost as soon as it starts. Ask for more time "
                "(note that Slurm reads 1:30 as 1 min 30 s; write 01:30:00 for 1.5 hours) or lower "
                "launch.signal_grace"
            )
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
    model_type: str = Field(
        "AutoModelForCausalLM", validation_alias=AliasChoices("model_type", "type", "type_of_model")
    )
    """Model class (AutoModelForCausalLM); `type:` and `type_of_model:` are accepted too."""
    model_revision: str | None = None
    """Model revision on the Hub."""
    trust_remote_code: bool = False
    """Allow custom model code from the Hub."""
    overrides_of_model_config: dict[str, Any] | None = Field(None, alias="model_config")
    """Override values of the model's config before loading, e.g. `{output_router_logits: true}`; `model_config:` is
    axolotl's spelling."""
    revision_of_model: str | None = None
    """axolotl's other spelling of `model_revision`."""
    low_cpu_mem_usage: bool | None = None
    """Accepted for axolotl compatibility: transformers always loads weights without a second copy in memory."""
    use_kernels: bool | None = None
    """Load the model with transformers' Hub kernels (`kernels` package) on CUDA GPUs; elsewhere a warning and the
    model's own layers."""
    rope_scaling: dict[str, Any] | None = None
    """Override the model's RoPE scaling, e.g. `{type: linear, factor: 2.0}` or `{rope_type: yarn, factor: 4.0}`."""
    is_falcon_derived_model: bool | None = None
    """Informational (axolotl used it for model-specific setup; hpcft reads the model's config instead)."""
    is_llama_derived_model: bool | None = None
    """Informational (axolotl used it for model-specific setup; hpcft reads the model's config instead)."""
    is_mistral_derived_model: bool | None = None
    """Informational (axolotl used it for model-specific setup; hpcft reads the model's config instead)."""
    is_qwen_derived_model: bool | None = None
    """Informational (axolotl used it for model-specific setup; hpcft reads the model's config instead)."""
    tokenizer_use_fast: bool = True
    """Use the fast (Rust) tokenizer."""
    tokenizer_use_mistral_common: bool | None = None
    """Load the tokenizer with the `mistral-common` package (Mistral's own tokenizer: tekken.json or
    tokenizer.model.v*); it formats conversations itself, so no chat_template, special_tokens or tokens."""
    model_quantization_config: str | None = None
    """Load a pre-quantised checkpoint with this transformers quantisation config: `Mxfp4Config` (gpt-oss) or
    `FineGrainedFP8Config`."""
    model_quantization_config_kwargs: dict[str, Any] | None = None
    """Arguments of model_quantization_config, e.g. `{dequantize: true}` (weights unpacked to bf16 on loading)."""
    gptq: bool | None = None
    """base_model is a GPTQ-quantised checkpoint: train a LoRA adapter on it (GPTQ kernels on CUDA GPUs with
    gptqmodel installed; elsewhere the weights are unpacked to the training dtype: docs/model-loading.md)."""
    gptq_disable_exllama: bool | None = None
    """gptq with GPTQ kernels: use gptqmodel's PyTorch kernels instead of ExLlama's."""
    use_onebitllms: bool | None = None
    """BitNet (1.58-bit) quantisation-aware training with onebitllms' linear layers (Triton, CUDA GPUs only)."""
    base_model_ignore_patterns: str | list[str] | None = None
    """Files of a Hub base_model not to download, e.g. `pytorch*` to fetch only safetensors."""
    reinit_weights: bool | None = None
    """Train from random weights: build the model from base_model's config instead of loading its weights."""
    resize_token_embeddings_to_32x: bool | None = None
    """Round the embedding size up to a multiple of 32 when it is resized for the tokenizer."""
    float16: bool | None = None
    """Load the weights in float16 and train without mixed precision (pure fp16; axolotl's `float16`)."""
    bfloat16: bool | None = None
    """Load the weights in bfloat16 and train with bf16 autocast: the same as `bf16: true` (axolotl's `bfloat16`)."""
    chat_template: str | None = None  # "tokenizer_default" | a name we ship | "jinja" (with chat_template_jinja)
    """Chat template: `tokenizer_default`, `tokenizer_default_fallback_<name>`, `jinja` (with `chat_template_jinja`),
    or a template hpcft ships under axolotl's name (`llama3`, `qwen3`, `mistral_v7_tekken`, ...: docs/datasets.md)."""
    chat_template_jinja: str | None = None
    """The chat template text (Jinja) when `chat_template: jinja`."""
    eot_tokens: list[str] | None = None
    """Tokens that end a turn in the chat template, e.g. `["<|eot_id|>"]` (default: the EOS token); trained as
    each dataset's `train_on_eot` says. Each must be one token of the tokenizer."""

    # Vision (and audio) language models: docs/multimodal.md (checks in core/features/multimodal.py)
    processor_type: str | None = None
    """Train a vision language model with its processor: `AutoProcessor` (or the processor's class name). Dataset
    rows are `messages` whose content holds `{type: image, path|url|base64|image: ...}` parts, or an `images`
    (`image`) column; images are decoded, fetched and resized by the preprocessing job, never on the GPUs."""
    processor_kwargs: dict[str, Any] | None = None
    """Arguments for loading the processor, e.g. `{min_pixels: 200704, max_pixels: 1003520}`."""
    image_size: int | tuple[int, int] | None = None
    """Resize every image before the processor: an integer pads to a square of that side keeping the aspect
    ratio, `[width, height]` resizes to exactly that (default: as the processor does)."""
    image_resize_algorithm: Literal["bilinear", "bicubic", "lanczos"] | None = None
    """Resampling of image_size (default bilinear)."""
    freeze_mm_modules: bool | None = None
    """Keep the vision tower and projector frozen: in full fine-tuning, and with LoRA also the adapter layers that
    lora_target_modules puts into them."""

    # Data
    datasets: list[DatasetConfig] = Field(min_length=1)
    """Training datasets (see the dataset keys below)."""
    test_datasets: list[DatasetConfig] | None = None
    """Evaluation datasets (instead of splitting off `val_set_size`)."""
    pretraining_dataset: list[DatasetConfig] | str | None = None
    """Text to pretrain on, streamed (axolotl's pretraining_dataset): entries like `datasets:` with `type: pretrain`
    (the default; `text_column`, default `text`) or `completion`. hpcft reads them as `datasets:` with
    `streaming: true` (set `streaming: false` to tokenize them ahead instead); needs max_steps."""
    streaming: bool | None = None
    """Read `datasets:` as a stream: tokenized (and packed) on the fly while training, nothing prepared ahead or
    cached; needs max_steps. Each rank reads its own files when there are at least as many files as ranks."""
    streaming_multipack_buffer_size: int | None = Field(None, ge=1)
    """Streaming: rows read, shuffled and packed together at a time (default 10000)."""
    dataset_exact_deduplication: bool | None = None
    """Drop tokenized samples identical to an earlier one (train and evaluation data each; with rl also evaluation
    rows that are in the training data)."""
    curriculum_sampling: bool | None = None
    """Train on the samples in the order of the data (no shuffling): for curriculum learning."""
    sample_packing_sequentially: bool | None = None
    """Pack samples in their order (next-fit: a row is closed when the next sample does not fit) instead of
    best-fit by length; with curriculum_sampling the whole run follows the data's order."""
    max_packed_sequence_len: int | None = Field(None, ge=1)
    """axolotl's older packing switch: sample_packing with rows (and samples) of at most this many tokens (sequence_len
    becomes the smaller of the two)."""
    dataset_prepared_path: str | None = None
    """Cache folder for tokenized data, keyed on the config, the data files' content and the tokenizer."""
    dataset_processes: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("dataset_processes", "dataset_num_proc")
    )
    """Processes used for tokenizing (default: CPUs available); `dataset_num_proc:` is accepted too."""
    skip_prepare_dataset: bool | None = None
    """Accepted for axolotl compatibility: hpcft always tokenizes before training (cached in dataset_prepared_path),
    which gives the same rows as tokenizing on the fly (also with processor_type: images are prepared ahead)."""
    remove_unused_columns: bool | None = None
    """Accepted for axolotl compatibility: hpcft's data pipeline passes only input_ids, labels and positions to the
    model either way."""
    shuffle_merged_datasets: bool = True
    """Shuffle the merged datasets (seeded)."""
    val_set_size: float = Field(0.0, ge=0.0, alias="eval_set_size")
    """Held-out evaluation share (below 1) or row count (a whole number, 2 or more); `eval_set_size` is accepted
    too."""
    sequence_len: int = Field(2048, ge=1)
    """Maximum tokens per sample (and per packed row)."""
    min_sample_len: int = Field(2, ge=1)
    """Drop samples with fewer tokens than this."""
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
    peft_use_dora: bool | None = None
    """Train DoRA (weight-decomposed LoRA) instead of plain LoRA."""
    peft_use_rslora: bool | None = None
    """Rank-stabilised LoRA: scale by lora_alpha/sqrt(r) instead of lora_alpha/r."""
    unfrozen_parameters: list[str] | None = None
    """Full fine-tuning of only the parameters matching these patterns (matched from the start of the name, `.` is a
    literal dot; a `[start:end]` suffix trains only those rows), e.g. `[^lm_head.weight$, model.layers.2[0-9]+.*]`.
    With an adapter: only the adapter weights whose names match train (named as in the base model, e.g.
    `model.layers.0.self_attn.q_proj.lora_A.default.weight`); when none match, the whole adapter trains (warned)."""
    load_in_4bit: bool = False
    """Load base weights in 4-bit NF4 (QLoRA; needs `adapter: qlora`)."""
    load_in_8bit: bool = False
    """Load base weights in 8-bit (needs an adapter)."""
    quantize_moe_experts: bool | None = None
    """Also quantise the MoE experts' fused 3-D weights (4-bit NF4 with load_in_4bit, int8 with load_in_8bit), which
    load_in_4bit/8bit alone leave in 16-bit; needs an adapter. Train them with lora_target_parameters
    (docs/adapters.md)."""
    lora_target_parameters: list[str] | str | None = None
    """Put LoRA on parameters rather than modules (peft's target_parameters), e.g. MoE experts:
    `[experts.gate_up_proj, experts.down_proj]` (a name matches a parameter path's end); needs lora_dropout: 0."""
    nvfp4_merge_aware: bool | None = None
    """On an NVFP4 (ModelOpt) base_model: LoRA layers compute with the merged weight rounded to the checkpoint's
    NVFP4 grid (straight-through gradient), so merging the adapter back into an NVFP4 model keeps what was trained
    (docs/adapters.md). Needs adapter: lora."""
    nvfp4_merge_aware_start_step: int | float | None = None
    """When nvfp4_merge_aware starts: an optimizer step (int >= 0) or a share of all steps (float in (0, 1));
    default 0. A short warm-up lets the adapter leave its zero start first."""
    bnb_config_kwargs: dict[str, Any] | None = None
    """Extra bitsandbytes settings for load_in_4bit, e.g. `{bnb_4bit_quant_type: fp4, bnb_4bit_use_double_quant:
    false, bnb_4bit_quant_storage: bfloat16}` (defaults: nf4, double quantisation)."""
    lora_rank_pattern: dict[str, int] | None = None
    """Per-module LoRA ranks (peft's rank_pattern): module-name regex -> rank, e.g. `{"down_proj": 16}`."""
    lora_alpha_pattern: dict[str, int] | None = None
    """Per-module LoRA alphas (peft's alpha_pattern): module-name regex -> alpha."""
    peft_layers_to_transform: list[int] | None = None
    """Put LoRA only in these layer indices (peft's layers_to_transform)."""
    peft_layers_pattern: list[str] | None = None
    """Name of the layer list that peft_layers_to_transform indexes (e.g. `[layers]`; default: found by peft)."""
    peft_init_lora_weights: bool | str | None = None
    """LoRA initialisation (peft's init_lora_weights): true (default), false (B random: the model changes at
    step 0), `gaussian`, `pissa`, `pissa_niter_<n>`, `olora` or `orthogonal`."""
    peft_trainable_token_indices: list[int] | dict[str, list[int]] | None = None
    """Train only these token ids' embedding rows next to LoRA (peft's trainable_token_indices); a mapping names
    the embedding layer: `{embed_tokens: [0, 1]}`."""
    peft_ensure_weight_tying: bool | None = None
    """Keep tied input/output embedding adapters tied (peft's ensure_weight_tying)."""
    peft_layer_replication: list[tuple[int, int]] | None = None
    """Grow the model by repeating layer ranges `[[start, end), ...]` that share base weights and get their own
    LoRA (peft's layer_replication)."""
    loraplus_lr_ratio: float | None = Field(None, gt=0)
    """LoRA+: the B matrices learn at learning_rate x this ratio (the paper suggests 16); weight decay 0 on the
    adapter, as axolotl (peft's create_loraplus_optimizer)."""
    loraplus_lr_embedding: float | None = Field(None, gt=0)
    """LoRA+: learning rate of LoRA on embedding layers (default 1e-6)."""
    peft: PeftBlock | None = None
    """peft options: `{loftq_config: {loftq_bits: 4}}` initialises LoRA with LoftQ (adapter: lora, CUDA GPUs)."""
    qat: QatConfig | None = None
    """Quantization-aware training with torchao (see the qat keys below): fake-quantised linear layers while
    training, a full-precision model saved at the end."""
    fp8: bool | None = None
    """FP8 mixed precision: linear layers multiply in float8 (torchao's Float8Linear) on GPUs with FP8 (H100,
    GH200) and on CPU (same numerics, no speed-up); on older GPUs a warning and training without it."""
    fp8_enable_fsdp_float8_all_gather: bool | None = None
    """With fp8 and FSDP2: all-gather the sharded weights in float8 (less communication)."""
    llmcompressor: LlmCompressorConfig | None = None
    """Sparse fine-tuning (axolotl's LLMCompressor plugin, see the llmcompressor keys below): keep the zeros of
    the pretrained weights that the recipe's ConstantPruningModifier targets."""

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
    gradient_checkpointing: bool | Literal["offload", "offload_disk"] = False
    """Recompute activations in the backward pass to save memory; `offload` also keeps the checkpointed
    activations in CPU memory on GPUs (`offload_disk`, axolotl's older spelling, too: in CPU memory)."""
    liger_rope: bool | None = None
    """Liger's fused RoPE kernel (CUDA GPUs only; without one hpcft warns and trains without Liger)."""
    liger_rms_norm: bool | None = None
    """Liger's RMSNorm kernel (CUDA GPUs only)."""
    liger_glu_activation: bool | None = None
    """Liger's SwiGLU/GeGLU MLP kernel (CUDA GPUs only); `liger_swiglu` is the old spelling."""
    liger_swiglu: bool | None = None
    """Old name of `liger_glu_activation`."""
    liger_layer_norm: bool | None = None
    """Liger's LayerNorm kernel (CUDA GPUs only)."""
    liger_cross_entropy: bool | None = None
    """Liger's cross-entropy kernel (CUDA GPUs only)."""
    liger_fused_linear_cross_entropy: bool | None = None
    """Liger's fused output-layer + cross-entropy kernel: the logits are never materialised (CUDA GPUs only)."""
    gradient_checkpointing_kwargs: dict[str, Any] | None = None
    """Options for gradient checkpointing, e.g. `{use_reentrant: false}`."""

    # Optimisation
    gradient_accumulation_steps: int = Field(1, ge=1)
    """Micro-batches accumulated per optimizer step."""
    micro_batch_size: int = Field(1, ge=1)
    """Rows per GPU per micro-batch."""
    batch_size: int | None = Field(None, ge=1)
    """axolotl's older way to set gradient accumulation: rows per GPU per optimizer step (gradient_accumulation_steps
    = batch_size / micro_batch_size)."""
    eval_batch_size: int | None = Field(None, ge=1)
    """Rows per GPU for evaluation (default: micro_batch_size)."""
    num_epochs: float = Field(1.0, gt=0)
    """Epochs to train."""
    max_steps: int | None = Field(None, ge=1)
    """Stop after this many optimizer steps (overrides num_epochs)."""
    optimizer: str = "adamw_torch"
    """Optimizer by transformers name: adamw_torch, adamw_torch_fused, adamw_bnb_8bit, paged_adamw_8bit, ...; or
    muon: torch's Muon for the hidden weight matrices and AdamW for the rest, one learning_rate (plain DDP)."""
    optim_args: dict[str, Any] | str | None = None
    """Extra optimizer arguments (mapping or `k=v,k=v`)."""
    learning_rate: float = Field(2e-5, gt=0)
    """Peak learning rate."""
    warmup_ratio: float | None = Field(None, ge=0.0, le=1.0)
    """Warm-up as a share of all steps."""
    warmup_steps: int | None = Field(None, ge=0)
    """Warm-up steps; a value below 1 (`0.1`) is a share of all steps, as in transformers 5 (= warmup_ratio)."""
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
    cosine_constant_lr_ratio: float | None = Field(None, ge=0.0, le=1.0)
    """With cosine_min_lr_ratio: the cosine reaches that floor after this share of the steps (e.g. 0.8) and the
    rate stays there for the rest of training (0: off, as in axolotl)."""
    max_grad_norm: float = Field(1.0, ge=0.0)
    """Gradient clipping norm."""
    neftune_noise_alpha: float | None = Field(
        None, gt=0, validation_alias=AliasChoices("neftune_noise_alpha", "noisy_embedding_alpha")
    )
    """NEFTune: add uniform noise of this scale to the input embeddings while training. `noisy_embedding_alpha` is
    axolotl's deprecated spelling."""
    torch_compile: bool | Literal["auto"] | None = None
    """Compile the model with torch.compile (`auto`: on CUDA GPUs only)."""
    torch_compile_backend: str | None = None
    """torch.compile backend (default inductor)."""
    torch_compile_mode: Literal["default", "reduce-overhead", "max-autotune"] | None = None
    """torch.compile mode."""
    early_stopping_patience: int | None = Field(None, ge=1)
    """Stop when the evaluation loss has not improved for this many evaluations (needs evaluation data)."""
    loss_watchdog_threshold: float | None = None
    """Stop training when the training loss stays above this value (see loss_watchdog_patience)."""
    loss_watchdog_patience: int | None = Field(None, ge=1)
    """Logged steps in a row above loss_watchdog_threshold before training stops (default 3)."""

    # Evaluation, checkpoints, logging
    evals_per_epoch: int | None = Field(None, ge=0)
    """Evaluations per epoch."""
    do_causal_lm_eval: bool | None = None
    """At each evaluation, also generate an answer to every evaluation prompt and score it (eval_causal_lm_metrics)."""
    eval_causal_lm_metrics: list[str] | None = None
    """Scores of do_causal_lm_eval: `sacrebleu`, `chrf`, `ter` (sacrebleu package) and `perplexity` of the reference
    answers (default: sacrebleu, ter, chrf). axolotl's `comet` needs a neural model from the Hub and is refused."""
    eval_max_new_tokens: int | None = Field(None, ge=1)
    """do_causal_lm_eval: tokens generated per answer at most (default 128)."""
    # Benchmarks during training (bench eval) and after it (lm-evaluation-harness): core/features/eval_datasets.py
    do_bench_eval: bool | None = None
    """At each evaluation, also score multiple-choice questions (bench_dataset): accuracy of the answer letter
    A-G the model ranks first, per subject and in total."""
    bench_dataset: str | None = None
    """do_bench_eval's questions: `mmlu-zs`, `mmlu-fs` (MMLU zero/five-shot), `owner/name/file.json` on the Hub,
    or a local JSON file with `input`, `output` and `subject` per row (default:
    pharaouk/dharma-1/dharma_1_mini.json)."""
    bench_split: str | None = None
    """do_bench_eval: the split of bench_dataset to score, `eval` (default) or `test` (MMLU only)."""
    lm_eval_tasks: list[str] | None = None
    """lm-evaluation-harness tasks run on the final model after training (`hellaswag`, `arc_easy:25` for 25-shot);
    results in output_dir/lm_eval_results.json, the run folder and the trackers."""
    lm_eval_batch_size: int | None = Field(None, ge=1)
    """lm-evaluation-harness batch size (default 8)."""
    lm_eval_post_train: bool | None = None
    """Run lm_eval_tasks after training (default true)."""
    lm_eval_model: str | None = None
    """The model lm_eval_tasks evaluates (default: the final model in output_dir)."""
    lm_eval_include_path: str | None = None
    """hpcft: a folder of your own lm-evaluation-harness task YAML files (its `include_path`), e.g. tasks that read
    a local data file."""
    eval_strategy: Literal["no", "steps", "epoch"] | None = Field(
        None, validation_alias=AliasChoices("eval_strategy", "evaluation_strategy")
    )
    """When to evaluate: `no`, `steps` (every eval_steps, else every logging_steps) or `epoch`; unset: from eval_steps /
    evals_per_epoch, else every epoch when there is evaluation data. `evaluation_strategy` is the older spelling."""
    eval_steps: int | float | None = Field(None, gt=0)
    """Evaluate every N steps; a number below 1 is a fraction of the total steps (`0.05`: every 5%), as in
    transformers."""
    saves_per_epoch: int | None = Field(None, ge=0)
    """Checkpoints per epoch."""
    save_steps: int | float | None = Field(None, gt=0)
    """Checkpoint every N steps; a number below 1 is a fraction of the total steps, as in transformers."""
    save_strategy: Literal["steps", "epoch", "no", "best"] | None = None
    """`steps`, `epoch`, `no`, or `best` (a checkpoint whenever metric_for_best_model improves at an evaluation)."""
    metric_for_best_model: str | None = None
    """The evaluation metric that decides the best checkpoint, e.g. `eval_loss` (or `loss`); with save_strategy:
    best or load_best_model_at_end."""
    greater_is_better: bool | None = None
    """Whether a larger metric_for_best_model is better (default: false for a loss, true otherwise)."""
    load_best_model_at_end: bool | None = None
    """Save the best checkpoint's model as the final one (checkpoints are moved to evaluation steps for it; the
    best checkpoint is never deleted by save_total_limit)."""
    save_total_limit: int | None = Field(None, ge=1)
    """Keep at most this many checkpoints (the latest complete one is never deleted)."""
    logging_steps: int | float = Field(1, gt=0)
    """Log a metrics line every N steps; a number below 1 is a fraction of the total steps, as in transformers."""

    @field_validator("eval_steps", "save_steps", "logging_steps")
    @classmethod
    def _steps_or_fraction(cls, value: int | float | None) -> int | float | None:
        # transformers reads a float below 1 as a fraction of the run; above 1 only whole numbers make sense.
        if isinstance(value, float) and value >= 1:
            if not value.is_integer():
                raise ValueError(f"{value} is neither a whole number of steps nor a fraction below 1 (e.g. 0.1)")
            return int(value)
        return value

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
    # MLflow (checked in core/features/mlflow_tracking.py, applied in trainer/reporting/metrics.py)
    use_mlflow: bool | None = None
    """Log to MLflow (on as well when mlflow_tracking_uri or mlflow_experiment_name is set)."""
    mlflow_tracking_uri: str | None = None
    """MLflow tracking store: a server (`https://mlflow.example.org`) or a folder (`file:/scratch/me/mlruns`, or a
    path, taken from the config file's folder). Credentials never go here: export MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) before submitting."""
    mlflow_experiment_name: str | None = None
    """MLflow experiment (created when missing; default: MLflow's `Default`)."""
    mlflow_run_name: str | None = None
    """MLflow run name (default: the Trainer's, output_dir)."""
    hf_mlflow_log_artifacts: bool | None = None
    """Copy every checkpoint to the MLflow run's artifact store when it is saved."""
    hub_model_id: str | None = None
    """Push the trained model (or adapter) to this Hugging Face Hub repository at the end (token from $HF_TOKEN)."""
    hub_strategy: Literal["end", "every_save", "checkpoint", "all_checkpoints"] | None = None
    """When to push: `end` (default), `every_save`, `checkpoint`, `all_checkpoints`; hpcft pushes at the end."""
    hub_private_repo: bool | None = None
    """Create the Hub repository as private."""

    # Training loop: activation offloading, model-only checkpoints, schedule shaping, LISA, metrics endpoint,
    # SwanLab (checked in core/features/training_loop.py, applied in trainer/training_loop.py)
    activation_offloading: bool | Literal["legacy", "disk", "hidden_states"] | None = None
    """Keep the activations saved for the backward pass in CPU memory instead of GPU memory (needs
    gradient_checkpointing); `true`, `legacy`, `hidden_states` and `disk` all offload to CPU memory in hpcft."""
    save_only_model: bool | None = None
    """Checkpoints hold the weights only, no optimizer state (smaller, faster to write); a resume then starts
    from a fresh optimizer state at the checkpoint's step, data position and learning rate."""
    lr_quadratic_warmup: bool | None = None
    """With lr_scheduler: cosine, warm up along (step / warmup_steps)^2 instead of linearly."""
    jagged_restart_steps: int | None = Field(None, ge=1)
    """Every this many steps, drop the learning rate and warm it up again (axolotl's jagged restarts; ReLoRA's
    restart interval)."""
    jagged_restart_warmup_steps: int | None = Field(None, ge=0)
    """Steps of each restart's warmup (default 10)."""
    jagged_restart_anneal_steps: int | None = Field(None, ge=0)
    """Steps before each restart over which the learning rate is annealed down (default 1)."""
    relora: bool | None = None
    """ReLoRA (lora/qlora): every jagged_restart_steps, merge the adapter into the base weights and start it
    afresh; the final model is the merged base. Runs with plain DDP, not DeepSpeed."""
    relora_prune_ratio: float | None = Field(None, ge=0.0, le=1.0)
    """Share of the adapter's optimizer state zeroed at each restart (default 0.9; 0.999 with `reset`)."""
    relora_prune_method: Literal["magnitude", "random", "reset"] | None = None
    """How the optimizer state is pruned: `magnitude` (keep the largest, default), `random`, or `reset`."""
    lisa_n_layers: int | None = Field(None, ge=1)
    """LISA: train only this many randomly chosen decoder layers at a time (full fine-tuning only)."""
    lisa_step_interval: int | None = Field(None, ge=1)
    """LISA: choose new layers every this many steps."""
    lisa_layers_attribute: str | None = None
    """LISA: the attribute path of the model's list of decoder layers (default model.layers)."""
    use_otel_metrics: bool | None = None
    """Serve the training metrics (loss, learning rate, grad norm, epoch, step, eval loss) for Prometheus from
    rank 0 at http://otel_metrics_host:otel_metrics_port/metrics."""
    otel_metrics_host: str | None = None
    """Address the metrics endpoint listens on (default localhost; 0.0.0.0: every interface of the first node)."""
    otel_metrics_port: int | None = Field(None, ge=1, le=65535)
    """TCP port of the metrics endpoint (default 8000)."""
    use_swanlab: bool | None = None
    """Log to SwanLab (needs the swanlab package: pip install 'hpcft[swanlab]'); the API key comes from
    $SWANLAB_API_KEY, never from the config."""
    swanlab_project: str | None = None
    """SwanLab project."""
    swanlab_experiment_name: str | None = None
    """SwanLab experiment name."""
    swanlab_description: str | None = None
    """SwanLab experiment description."""
    swanlab_workspace: str | None = None
    """SwanLab workspace (organisation); default: your own."""
    swanlab_mode: Literal["cloud", "local", "offline", "disabled"] | None = None
    """cloud (default), local, offline (logs under output_dir/swanlog, no network) or disabled."""
    swanlab_web_host: str | None = None
    """Web address of a self-hosted SwanLab."""
    swanlab_api_host: str | None = None
    """API address of a self-hosted SwanLab."""
    swanlab_log_model: bool | None = None
    """Upload the model to SwanLab (not supported by SwanLab yet: a warning)."""

    # Distributed
    deepspeed: str | dict[str, Any] | None = None
    """DeepSpeed: a preset (zero1, zero2, zero3, zero3_offload), a JSON file or inline; default zero3 (QLoRA: zero2)."""
    fsdp: list[str] | str | None = None
    """PyTorch FSDP instead of DeepSpeed, axolotl's list form: `[full_shard, auto_wrap]` (plus `offload`)."""
    fsdp_config: FsdpConfig | None = None
    """FSDP settings (see the fsdp_config keys below). On nodes without GPUs, where accelerate cannot run FSDP,
    hpcft runs the equivalent DeepSpeed ZeRO stage and says so."""
    fsdp_version: Literal[1, 2] | None = None
    """FSDP version: 1 (axolotl's default) or 2."""
    fsdp_final_state_dict_type: Literal["FULL_STATE_DICT", "LOCAL_STATE_DICT", "SHARDED_STATE_DICT"] | None = None
    """axolotl's older spelling of `fsdp_config.final_state_dict_type`."""
    ddp_timeout: int = Field(1800, ge=1)
    """Seconds a collective may wait before the job fails (NCCL/gloo timeout)."""
    plugins: list[str] | None = None
    """axolotl plugins; only ones without effect on results are accepted (with a warning)."""

    # Parallelism sizes (core/features/parallelism.py lays them out over the job's processes; docs/parallelism.md)
    dp_shard_size: int | None = Field(None, ge=1)
    """Processes that shard the weights together (default: all data-parallel ones); smaller is HSDP."""
    dp_replicate_size: int | None = Field(None, ge=1)
    """Replicas of the sharded model (HSDP); default: what the other sizes leave."""
    tensor_parallel_size: int | None = Field(None, ge=1)
    """Processes that split each linear layer (DeepSpeed AutoTP; transformers' TP plan with FSDP2)."""
    context_parallel_size: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("context_parallel_size", "sequence_parallel_degree")
    )
    """Processes that split each sequence (DeepSpeed Ulysses/ALST; ring attention with FSDP2)."""
    expert_parallel_size: int | None = Field(None, ge=1)
    """Processes that hold different experts of a mixture-of-experts model (GPUs; see docs/parallelism.md)."""
    use_ray: bool | None = None
    """axolotl's Ray launcher: hpcft starts the processes with Slurm and torchrun instead (sized by ray_num_workers)."""
    ray_num_workers: int | None = Field(None, ge=1)
    """Training processes Ray would start: sizes the job when launch.nodes is not set."""
    accelerator_config: dict[str, Any] | None = None
    """transformers' AcceleratorConfig, e.g. `{gradient_accumulation_kwargs: {sync_each_batch: true}}`."""

    # Preference tuning (docs/preference-tuning.md)
    rl: str | None = None
    """Preference method: `dpo`, `ipo` (deprecated: dpo with dpo_loss_type [ipo]), `orpo`, `kto`, `simpo`."""
    rl_beta: float | None = Field(None, gt=0, validation_alias=AliasChoices("rl_beta", "dpo_beta"))
    """beta of the preference loss (TRL default 0.1): how far the policy may move from the reference. `dpo_beta`
    is axolotl's deprecated spelling (rl_beta wins when both are set, as in axolotl)."""
    dpo_loss_type: list[str] | None = Field(None, min_length=1)
    """dpo: one or more losses, e.g. `[sigmoid]`, `[hinge]`, `[ipo]`, `[sigmoid, sft]` (TRL's loss_type)."""
    dpo_loss_weights: list[float] | None = Field(None, min_length=1)
    """dpo: one weight per entry of dpo_loss_type."""
    dpo_label_smoothing: float | None = Field(None, ge=0.0, le=0.5)
    """dpo: assumed share of flipped preference labels (cDPO / robust loss), in [0, 0.5]."""
    dpo_use_weighting: bool | None = None
    """dpo: weight each pair by its likelihood under the policy (WPO)."""
    precompute_ref_log_probs: bool | None = None
    """dpo/kto: compute the reference log-probs in one pass before training (no reference model kept during it)."""
    orpo_alpha: float | None = Field(None, gt=0)
    """orpo: weight of the odds-ratio term (TRL's beta)."""
    kto_desirable_weight: float | None = Field(None, gt=0)
    """kto: weight of the desirable (label true) examples' loss."""
    kto_undesirable_weight: float | None = Field(None, gt=0)
    """kto: weight of the undesirable (label false) examples' loss."""
    simpo_gamma: float | None = Field(None, ge=0)
    """simpo: target reward margin (TRL default 0.5)."""
    cpo_alpha: float | None = Field(None, ge=0)
    """simpo: weight of the supervised (NLL) term on the chosen answer (TRL default 1.0; 0 is pure SimPO)."""
    trl: TrlConfig | None = None
    """TRL options that apply to the preference methods (see "Preference tuning" below)."""

    # Reward models, EAFT, diffusion (core/features/objectives.py; docs/reward-models.md)
    reward_model: bool | None = None
    """Train a reward model (a sequence classifier scoring chosen above rejected, Bradley-Terry loss; TRL's
    RewardTrainer) on `type: bradley_terry.chat_template` data."""
    process_reward_model: bool | None = None
    """Train a process reward model (a token classifier labelling each reasoning step) on
    `type: stepwise_supervised` data."""
    num_labels: int | None = Field(None, ge=1)
    """Outputs of the classification head (reward_model: 1, process_reward_model: 2 by default)."""
    center_rewards_coefficient: float | None = Field(None, ge=0)
    """reward_model: weight of a penalty on the squared mean reward, pulling rewards towards zero (e.g. 0.01)."""
    cls_model_config: str | None = None
    """transformers config class to read the model's config with (e.g. `Gemma3TextConfig`) instead of AutoConfig."""
    use_eaft: bool | None = None
    """Entropy-aware fine-tuning: weight each token's loss by the entropy of the model's top-k prediction."""
    eaft_alpha: float | None = Field(None, ge=0)
    """EAFT: exponent of the entropy weight (default 1.0)."""
    eaft_k: int | None = Field(None, ge=1)
    """EAFT: number of top logits the entropy is computed from (default 20)."""
    diffusion: DiffusionConfig | None = None
    """Masked-diffusion LM training, with `plugins: [axolotl.integrations.diffusion.DiffusionPlugin]` (see the
    diffusion keys below)."""

    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    """Job options (see the launch keys below)."""

    @model_validator(mode="before")
    @classmethod
    def _axolotl_spellings(cls, data: Any) -> Any:
        # batch_size is how older axolotl configs set accumulation; it counts rows per GPU per optimizer step.
        if isinstance(data, dict) and data.get("batch_size") and data.get("gradient_accumulation_steps") is None:
            micro = data.get("micro_batch_size") or 1
            if isinstance(micro, int) and isinstance(data["batch_size"], int):
                if data["batch_size"] % micro:
                    raise ValueError(f"batch_size {data['batch_size']} is not a multiple of micro_batch_size {micro}")
                data = {**data, "gradient_accumulation_steps": data["batch_size"] // micro}
        # transformers 5 reads a warmup_steps below 1 as a share of all steps, and axolotl's newer examples write
        # `warmup_steps: 0.1` that way: it is warmup_ratio.
        steps = data.get("warmup_steps") if isinstance(data, dict) else None
        if isinstance(steps, float) and 0 < steps < 1 and data.get("warmup_ratio") is None:
            data = {**data, "warmup_steps": None, "warmup_ratio": steps}
        return data

    @field_validator("bnb_config_kwargs")
    @classmethod
    def _bnb_config_kwargs(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_bnb_config_kwargs(value) if value else value

    @model_validator(mode="before")
    @classmethod
    def _tokens_as_mapping(cls, data: Any) -> Any:
        # Older axolotl configs (archived/jeopardy-bot) set special tokens under `tokens:` as a mapping.
        if isinstance(data, dict) and isinstance(data.get("tokens"), dict):
            special = data.get("special_tokens") or {}
            clash = [k for k in data["tokens"] if k in special and special[k] != data["tokens"][k]]
            if clash:
                raise ValueError(f"tokens (a mapping: older special_tokens) and special_tokens disagree on {clash[0]}")
            data = {**data, "special_tokens": {**data["tokens"], **special}, "tokens": None}
        return data

    @model_validator(mode="before")
    @classmethod
    def _user_defined_formats(cls, data: Any) -> Any:
        # A `type:` mapping is a preference type with rl: and a prompt format without it; the two share keys
        # (field_system), so the mapping's meaning is decided here, where rl is known.
        if not isinstance(data, dict) or data.get("rl"):
            return data
        for key in ("datasets", "test_datasets"):
            entries = data.get(key)
            if not isinstance(entries, list):
                continue
            converted = list(entries)
            for i, entry in enumerate(entries):
                if isinstance(entry, dict) and isinstance(entry.get("type"), dict):
                    try:
                        converted[i] = {**entry, "type": UserDefinedPromptType.model_validate(entry["type"])}
                    except ValidationError as exc:
                        error = exc.errors()[0]
                        loc = "".join(f".{p}" for p in error["loc"])
                        message = error["msg"].removeprefix("Value error, ")
                        raise ValueError(f"key '{key}[{i}].type{loc}': {message}") from None
            data = {**data, key: converted}
        return data

    @model_validator(mode="before")
    @classmethod
    def _pretraining_as_streamed_datasets(cls, data: Any) -> Any:
        # axolotl's pretraining_dataset is a streamed dataset of raw text: one data path for both, `datasets:`.
        if not isinstance(data, dict) or not data.get("pretraining_dataset"):
            return data
        if data.get("datasets"):
            raise ValueError(
                "pretraining_dataset and datasets cannot be used together (axolotl ignores datasets then); "
                "keep one (datasets with streaming: true streams any dataset type)"
            )
        entries = data["pretraining_dataset"]
        entries = [{"path": entries}] if isinstance(entries, str) else entries
        if not isinstance(entries, list):
            return data  # the field's own type check names the key
        converted = [{"type": "pretrain", **e} if isinstance(e, dict) and not e.get("type") else e for e in entries]
        for index, entry in enumerate(converted):  # errors name the key the user wrote, not `datasets`
            try:
                DatasetConfig.model_validate(entry)
            except ValidationError as exc:
                error = exc.errors()[0]
                loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
                message = error["msg"].removeprefix("Value error, ")
                raise ValueError(f"key 'pretraining_dataset[{index}]{loc}': {message}") from None
        streaming = True if data.get("streaming") is None else data["streaming"]
        return {**data, "datasets": converted, "streaming": streaming, "pretraining_dataset": None}

    @field_validator("bf16", mode="before")
    @classmethod
    def _bf16(cls, value: Any) -> Any:
        return "auto" if value is None else value

    @field_validator("plugins")
    @classmethod
    def _plugins(cls, value: list[str] | None) -> list[str] | None:
        for plugin in value or []:
            if plugin not in PLUGINS_WITHOUT_EFFECT and plugin not in IMPLEMENTED_PLUGINS:
                raise ValueError(plugin_refusal_message(plugin))
        return value

    @field_validator("chat_template")
    @classmethod
    def _known_chat_template(cls, value: str | None) -> str | None:
        return check_chat_template_name(value)

    @field_validator("chat_template_jinja")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return check_chat_template_text(value)

    @field_validator("val_set_size")
    @classmethod
    def _share_or_row_count(cls, value: float) -> float:
        # axolotl reads 1 as 100% (every row held out: datasets refuses the split on the node); above 1 the trainer
        # takes a row count, which must be whole.
        if value == 1:
            raise ValueError(
                "1 would hold out every row for evaluation and leave none to train on; use a share "
                "below 1 (e.g. 0.05) or a number of rows of 2 or more"
            )
        if value > 1 and not value.is_integer():
            raise ValueError(
                f"{value} is neither a share (below 1, e.g. 0.05) nor a number of rows (a whole number); fix it"
            )
        return value

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        return check_optimizer_name(value)

    @field_validator("rl")
    @classmethod
    def _known_rl(cls, value: str | None) -> str | None:
        if value is None or value in RL_METHODS:
            return value
        if value in RL_NEEDS_GENERATION:
            raise ValueError(rl_refusal(value))
        raise ValueError(f"rl: '{value}' is not a preference method hpcft knows; use one of {', '.join(RL_METHODS)}")

    @field_validator("dpo_loss_type")
    @classmethod
    def _known_losses(cls, value: list[str] | None) -> list[str] | None:
        for loss in value or []:
            if loss not in DPO_LOSS_TYPES:
                raise ValueError(f"'{loss}' is not a DPO loss; use one of {', '.join(DPO_LOSS_TYPES)}")
        return value

    def _check_preference(self) -> None:
        for key, methods in RL_METHOD_KEYS.items():
            if getattr(self, key) is not None and self.rl not in methods:
                raise ValueError(f"{key} applies to rl: {' / '.join(methods)} only (rl is {self.rl}); remove it")
        if self.rl is None:
            for field in ("rl_beta", "trl"):
                if getattr(self, field) is not None:
                    raise ValueError(f"{field} needs rl: (dpo, ipo, orpo, kto, simpo); remove it or set rl")
            for where, group in (("datasets", self.datasets), ("test_datasets", self.test_datasets or [])):
                for i, ds in enumerate(group):
                    if isinstance(ds.type, UserDefinedPreferenceType) or ds.type in ALL_PREFERENCE_TYPES:
                        raise ValueError(
                            f"{where}[{i}].type is a preference dataset type; it needs rl: (dpo, ipo, orpo, kto, simpo)"
                        )
            return
        if self.sample_packing:
            raise ValueError(
                f"sample_packing: true does not work with rl: {self.rl} (each row is a chosen/rejected "
                "pair, not packed text); set sample_packing: false"
            )
        if self.rl == "kto" and self.micro_batch_size < 2:
            raise ValueError(
                "rl: kto estimates its KL term from the other rows of a micro-batch; set micro_batch_size: 2 or more"
            )
        if self.dpo_loss_weights is not None and (
            self.dpo_loss_type is None or len(self.dpo_loss_weights) != len(self.dpo_loss_type)
        ):
            raise ValueError("dpo_loss_weights needs dpo_loss_type with as many entries (one weight per loss)")
        allowed = PREFERENCE_TYPES[self.rl]
        for where, group in (("datasets", self.datasets), ("test_datasets", self.test_datasets or [])):
            for i, ds in enumerate(group):
                name = preference_type_name(ds.type)
                if name == "user_defined.default" or ds.type in allowed:
                    continue
                shown = "no type" if ds.type is None else f"type '{ds.type}'"
                raise ValueError(
                    f"{where}[{i}]: {shown} is not a dataset type for rl: {self.rl}; use one of "
                    f"{', '.join(sorted(preference_type_name(t) for t in allowed))} or a user-defined mapping "
                    "(docs/preference-tuning.md)"
                )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        self._check_preference()
        for where, group in (("datasets", self.datasets), ("test_datasets", self.test_datasets or [])):
            check_messages_template(group, self.chat_template, where)
        check_objectives(self)
        check_model_loading(self)
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
        if self.adapter and not (self.lora_target_modules or self.lora_target_linear or self.lora_target_parameters):
            raise ValueError(
                f"adapter: {self.adapter} needs lora_target_modules (e.g. [q_proj, v_proj]) or lora_target_linear: true"
            )
        if self.cosine_min_lr_ratio is not None and self.lr_scheduler != "cosine":
            raise ValueError(
                f"cosine_min_lr_ratio only applies to lr_scheduler: cosine (got lr_scheduler: "
                f"{self.lr_scheduler}); remove it or set lr_scheduler: cosine"
            )
        check_cosine_constant(self)
        problem = scheduler_kwargs_problem(
            self.lr_scheduler_kwargs or {}, self.lr_scheduler, self.cosine_min_lr_ratio, bool(self.lr_quadratic_warmup)
        )
        if problem:
            raise ValueError(problem)
        check_muon(self)
        if self.early_stopping_patience and not (self.val_set_size or self.test_datasets):
            raise ValueError(
                "early_stopping_patience needs evaluation data: set val_set_size (e.g. 0.05) or test_datasets"
            )
        if self.unfrozen_parameters and self.adapter:
            check_unfrozen_with_adapter(self)
        check_peft_extensions(self)
        if (self.peft_use_dora or self.peft_use_rslora) and not self.adapter:
            raise ValueError("peft_use_dora/peft_use_rslora need adapter: lora or qlora")
        if self.batch_size and self.batch_size != self.micro_batch_size * self.gradient_accumulation_steps:
            raise ValueError(
                f"batch_size {self.batch_size} disagrees with micro_batch_size x "
                f"gradient_accumulation_steps ({self.micro_batch_size} x "
                f"{self.gradient_accumulation_steps}); keep one"
            )
        if self.revision_of_model:
            if self.model_revision and self.model_revision != self.revision_of_model:
                raise ValueError("model_revision and revision_of_model disagree; keep one")
            self.model_revision, self.revision_of_model = self.revision_of_model, None
        if self.liger_cross_entropy and self.liger_fused_linear_cross_entropy:
            raise ValueError(
                "liger_cross_entropy and liger_fused_linear_cross_entropy are two ways to compute the "
                "same loss; keep one"
            )
        if self.liger_swiglu is not None:
            if self.liger_glu_activation is not None:
                raise ValueError("liger_swiglu is the old name of liger_glu_activation; keep one")
            self.liger_glu_activation, self.liger_swiglu = self.liger_swiglu, None
        if self.uses_fsdp and self.deepspeed is not None:
            raise ValueError("deepspeed and fsdp/fsdp_config cannot be used together; keep one")
        if isinstance(self.fsdp, str):
            self.fsdp = self.fsdp.split()
        for option in self.fsdp or []:
            if option not in FSDP_LIST_OPTIONS:
                raise ValueError(f"fsdp: unknown option '{option}'; use {', '.join(sorted(FSDP_LIST_OPTIONS))}")
        if self.fsdp_final_state_dict_type:
            if not self.uses_fsdp:
                raise ValueError("fsdp_final_state_dict_type needs fsdp_config")
            if self.fsdp_config is None:
                self.fsdp_config = FsdpConfig()
            self.fsdp_config.final_state_dict_type = self.fsdp_final_state_dict_type
            self.fsdp_final_state_dict_type = None
        inner = self.fsdp_config.fsdp_version if self.fsdp_config else None
        if inner and self.fsdp_version and inner != self.fsdp_version:
            raise ValueError(
                f"fsdp_version: {self.fsdp_version} disagrees with fsdp_config.fsdp_version: {inner}; keep one"
            )
        self.fsdp_version = self.fsdp_version or inner
        if self.fsdp_config:
            self.fsdp_config.fsdp_version = self.fsdp_version
        if self.chat_template == "jinja" and not self.chat_template_jinja:
            raise ValueError("chat_template: jinja needs chat_template_jinja (the template text)")
        self._check_data_options()
        check_training_loop(self)
        check_mlflow_uri(self.mlflow_tracking_uri)
        check_benchmarks(self)
        check_qat(self)
        check_nvfp4_merge_aware(self)
        check_fp8(self)
        check_llmcompressor(self)
        return self

    def _check_data_options(self) -> None:
        for metric in self.eval_causal_lm_metrics or []:
            if metric == "comet":
                raise ValueError(
                    "eval_causal_lm_metrics: 'comet' scores with a neural model (Unbabel's COMET) that hpcft does not "
                    f"download or ship; use {', '.join(CAUSAL_LM_METRICS)}"
                )
            if metric not in CAUSAL_LM_METRICS:
                raise ValueError(
                    f"eval_causal_lm_metrics: unknown metric '{metric}'{_did_you_mean(metric, CAUSAL_LM_METRICS)}; use "
                    f"{', '.join(CAUSAL_LM_METRICS)}"
                )
        if self.eval_causal_lm_metrics and not self.do_causal_lm_eval:
            raise ValueError("eval_causal_lm_metrics needs do_causal_lm_eval: true (or remove it)")
        if self.do_causal_lm_eval and not (self.val_set_size or self.test_datasets):
            raise ValueError("do_causal_lm_eval needs evaluation data: set val_set_size (e.g. 0.05) or test_datasets")
        if self.do_causal_lm_eval and self.rl:
            raise ValueError(f"do_causal_lm_eval does not apply to rl: {self.rl} (its rows are preference pairs)")
        if self.eval_strategy and self.eval_strategy != "steps" and (self.eval_steps or self.evals_per_epoch):
            raise ValueError(
                f"eval_strategy: {self.eval_strategy} disagrees with eval_steps/evals_per_epoch (they evaluate every "
                "N steps); set eval_strategy: steps or remove them"
            )
        if self.eval_strategy not in (None, "no") and not (self.val_set_size or self.test_datasets):
            raise ValueError(
                f"eval_strategy: {self.eval_strategy} needs evaluation data: set val_set_size (e.g. 0.05) or "
                "test_datasets, or set eval_strategy: no"
            )
        check_best_checkpoint(self)
        if self.max_packed_sequence_len:
            # axolotl's older packing switch: rows of max_packed_sequence_len tokens, never longer than sequence_len.
            self.sample_packing = True
            self.sequence_len = min(self.sequence_len, self.max_packed_sequence_len)
        if self.streaming:
            if not self.max_steps:
                raise ValueError(
                    "streaming (and pretraining_dataset) needs max_steps: a stream has no length to count epochs in"
                )
            problems = {
                "val_set_size": "cannot split a stream; use test_datasets for evaluation",
                "rl": "preference tuning reads whole datasets; set streaming: false",
                "dataset_exact_deduplication": "needs the whole dataset; set streaming: false",
                "group_by_length": "needs the whole dataset's lengths; remove it",
            }
            for key, problem in problems.items():
                if getattr(self, key):
                    raise ValueError(f"{key} with streaming: {problem}")
            for i, ds in enumerate(self.datasets):
                if ds.shards:
                    raise ValueError(
                        f"datasets[{i}].shards needs the whole dataset, which a stream does not have; use skip: "
                        "or split the files instead, or set streaming: false"
                    )

    @property
    def uses_fsdp(self) -> bool:
        """FSDP is asked for (axolotl: an `fsdp` list or an `fsdp_config` block)."""
        return bool(self.fsdp) or self.fsdp_config is not None

    @property
    def attention(self) -> str:
        """The attention implementation asked for (flash_attention_2 | sdpa | eager)."""
        if self.attn_implementation:
            return self.attn_implementation
        return "flash_attention_2" if self.flash_attention else "sdpa"

    def training_dict(self) -> dict[str, Any]:
        """The config as the trainer reads it: axolotl spellings, defaults filled, no launch block."""
        return self.model_dump(mode="json", by_alias=False, exclude={"launch"}, exclude_none=True)


# axolotl key -> the keyword of liger_kernel's apply function that transformers passes it to.
LIGER_KEYS = {
    "liger_rope": "rope",
    "liger_rms_norm": "rms_norm",
    "liger_glu_activation": "swiglu",
    "liger_layer_norm": "layer_norm",
    "liger_cross_entropy": "cross_entropy",
    "liger_fused_linear_cross_entropy": "fused_linear_cross_entropy",
}

# Plugins whose keys hpcft implements itself (the plugin line only switches them on in axolotl).
IMPLEMENTED_PLUGINS = {
    "axolotl.integrations.liger.LigerPlugin": "the liger_* keys",
    "axolotl.integrations.liger.plugin.LigerPlugin": "the liger_* keys",
    **dict.fromkeys(DIFFUSION_PLUGINS, "the diffusion: keys"),
    "axolotl.integrations.swanlab.SwanLabPlugin": "use_swanlab and the swanlab_* keys",
    "axolotl.integrations.swanlab.plugins.SwanLabPlugin": "use_swanlab and the swanlab_* keys",
    **dict.fromkeys(LLMCOMPRESSOR_PLUGINS, "the llmcompressor block"),
    "axolotl.integrations.expert_parallel.ExpertParallelPlugin": "expert_parallel_size",
    "axolotl.integrations.lm_eval.LMEvalPlugin": "lm_eval_tasks and the lm_eval_* keys",
}
