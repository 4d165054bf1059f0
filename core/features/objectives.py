"""Training objectives beside next-token SFT and preference tuning, as axolotl names them: reward models
(`reward_model`), process reward models (`process_reward_model`), the entropy-weighted loss (`use_eaft`) and
masked-diffusion training (`diffusion:` with axolotl's DiffusionPlugin). Their keys, their dataset types and the
combinations that make sense, checked on the login node (torch-free: the trainer's side is
trainer/objectives/reward_trainer.py, trainer/objectives/eaft.py and trainer/objectives/diffusion_trainer.py).
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig

# Dataset type -> the objective that reads it (axolotl: bradley_terry.* for reward_model, stepwise_supervised for
# process_reward_model).
REWARD_DATASET_TYPES = {
    "bradley_terry.chat_template": "reward_model",
    "stepwise_supervised": "process_reward_model",
}
# The dataset keys only stepwise_supervised reads.
STEPWISE_DATASET_KEYS = ("step_separator", "max_completion_length", "train_on_last_step_only")
DIFFUSION_PLUGINS = (
    "axolotl.integrations.diffusion.DiffusionPlugin",
    "axolotl.integrations.diffusion.plugin.DiffusionPlugin",
)
DEFAULT_DIFFUSION_MASK_TOKEN = "<|diffusion_mask|>"


class DiffusionConfig(BaseModel):
    """`diffusion:` (axolotl's DiffusionPlugin): train the model as a masked-diffusion LM (LLaDA): each row gets a
    random masking ratio, its trained tokens are replaced by the mask token with that probability, and the model,
    attending in both directions, is trained to recover them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    noise_schedule: Literal["linear", "cosine"] = "linear"
    """Accepted as in axolotl, whose training samples the masking ratio uniformly whatever this says."""
    min_mask_ratio: float = Field(0.1, ge=0.0, le=1.0)
    """Accepted as in axolotl (its training does not read it; `eps` sets the smallest masking probability)."""
    max_mask_ratio: float = Field(0.9, ge=0.0, le=1.0)
    """Accepted as in axolotl (its training does not read it)."""
    num_diffusion_steps: int = Field(128, ge=1)
    """Accepted as in axolotl (its training does not read it; sampling steps are `generation_steps`)."""
    eps: float = Field(1e-3, ge=0.0, le=1.0)
    """Smallest masking probability: a row's probability is `(1 - eps) * t + eps` with `t` uniform in [0, 1]."""
    importance_weighting: bool = True
    """Divide each masked token's loss by its masking probability (the unbiased diffusion ELBO)."""
    mask_token_id: int | None = Field(None, ge=0)
    """Token id that replaces masked tokens (e.g. 128002, a reserved token of Llama 3); must be below the
    tokenizer's size, else `mask_token_str` is used."""
    mask_token_str: str | None = None
    """Token text used as the mask when `mask_token_id` is unset: an existing special token, or one hpcft adds
    (embeddings resized); default `<|diffusion_mask|>`."""
    generate_samples: bool = True
    """axolotl prints denoised samples while training; hpcft does not (a warning says so), training is the same."""
    generation_interval: int = Field(100, ge=1)
    """Steps between axolotl's samples (not used by hpcft)."""
    num_generation_samples: int = Field(3, ge=1)
    """Samples per generation (not used by hpcft)."""
    generation_steps: int = Field(128, ge=1)
    """Denoising steps per sample (not used by hpcft)."""
    generation_temperature: float = Field(0.0, ge=0.0)
    """Sampling temperature (not used by hpcft)."""
    generation_max_length: int = Field(100, ge=1)
    """Sample length (not used by hpcft)."""

    @model_validator(mode="after")
    def _ratios_in_order(self) -> DiffusionConfig:
        if self.min_mask_ratio > self.max_mask_ratio:
            raise ValueError("diffusion.min_mask_ratio must not exceed diffusion.max_mask_ratio")
        return self


def objective_warnings(raw: dict, where: str) -> list[str]:
    """What hpcft does differently from axolotl for these keys, said at validate (before anything is queued)."""
    block = raw.get("diffusion")
    plugin = any(p in DIFFUSION_PLUGINS for p in raw.get("plugins") or [] if isinstance(p, str))
    if plugin and (not isinstance(block, dict) or block.get("generate_samples", True) not in (False, None)):
        return [
            f"{where}: diffusion.generate_samples: hpcft prints no denoised samples while training (axolotl's "
            "sample printing only; the training is the same); set it to false to silence this"
        ]
    return []


def reward_objective(cfg: TrainConfig) -> str | None:
    """`reward_model`, `process_reward_model` or None."""
    if cfg.reward_model:
        return "reward_model"
    if cfg.process_reward_model:
        return "process_reward_model"
    return None


def uses_diffusion(cfg: TrainConfig) -> bool:
    return cfg.diffusion is not None


def _dataset_entries(cfg: TrainConfig) -> list[tuple[str, object]]:
    return [
        (f"{where}[{i}]", ds)
        for where, group in (("datasets", cfg.datasets), ("test_datasets", cfg.test_datasets or []))
        for i, ds in enumerate(group)
    ]


def check_objectives(cfg: TrainConfig) -> None:
    """Defaults and combinations of the objective keys (axolotl's meaning); raises ValueError naming the key."""
    objective = reward_objective(cfg)
    if cfg.reward_model and cfg.process_reward_model:
        raise ValueError("reward_model and process_reward_model are two different models; keep one")
    if objective:
        if cfg.rl:
            raise ValueError(f"{objective}: true trains a reward model, rl: {cfg.rl} a policy; keep one")
        if cfg.sample_packing:
            raise ValueError(
                f"sample_packing: true does not work with {objective} (each row is scored on its own); "
                "set sample_packing: false"
            )
        # axolotl's defaults: the model class and the number of outputs of the score head.
        wanted = "AutoModelForSequenceClassification" if cfg.reward_model else "AutoModelForTokenClassification"
        if "model_type" not in cfg.model_fields_set:
            cfg.model_type = wanted
        elif "ForCausalLM" in cfg.model_type:
            raise ValueError(
                f"{objective}: true needs a model with a score head; set model_type: {wanted} (or remove model_type)"
            )
        if cfg.num_labels is None:
            cfg.num_labels = 1 if cfg.reward_model else 2
        if cfg.reward_model and cfg.num_labels != 1:
            raise ValueError(
                f"num_labels: {cfg.num_labels} with reward_model: true; a reward model gives one score per "
                "sequence, set num_labels: 1"
            )
    if cfg.center_rewards_coefficient is not None and not cfg.reward_model:
        raise ValueError("center_rewards_coefficient applies to reward_model: true only; remove it")
    for name, ds in _dataset_entries(cfg):
        dtype = getattr(ds, "type", None)
        needs = REWARD_DATASET_TYPES.get(dtype) if isinstance(dtype, str) else None
        if objective and needs != objective:
            shown = "no type" if dtype is None else f"type '{dtype}'"
            expected = next(t for t, o in REWARD_DATASET_TYPES.items() if o == objective)
            raise ValueError(f"{name}: {shown} is not a dataset type for {objective}: true; use type: {expected}")
        if needs and not objective:
            raise ValueError(f"{name}.type '{dtype}' is data for a reward model; set {needs}: true")
        if needs != "process_reward_model":
            for key in STEPWISE_DATASET_KEYS:
                if getattr(ds, key) is not None:
                    raise ValueError(f"{name}.{key} applies to type: stepwise_supervised only; remove it")
    if cfg.cls_model_config:
        check_config_class(cfg.cls_model_config)
    _check_eaft(cfg, objective)
    _check_diffusion(cfg, objective)


@cache
def transformers_config_classes() -> frozenset[str] | None:
    """The config classes of the installed transformers, read from its files without importing it (the launcher
    stays light); None where transformers is not installed next to the launcher."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    names: set[str] = {"AutoConfig", "PretrainedConfig", "PreTrainedConfig"}
    for path in root.glob("models/*/configuration_*.py"):
        names.update(re.findall(r"^class (\w+)\(", path.read_text(errors="replace"), re.MULTILINE))
    return frozenset(names)


def check_config_class(name: str) -> None:
    """cls_model_config must name a transformers config class (checked here, not after the queue wait)."""
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise ValueError(f"cls_model_config: '{name}' is not a class name (e.g. LlamaConfig, Gemma3TextConfig)")
    known = transformers_config_classes()
    if known is not None and name not in known:
        raise ValueError(
            f"cls_model_config: '{name}' is not a config class of the installed transformers (e.g. LlamaConfig, "
            "Gemma3TextConfig); remove it to read the model's config with AutoConfig"
        )


def _check_eaft(cfg: TrainConfig, objective: str | None) -> None:
    if not cfg.use_eaft:
        return
    if objective or cfg.rl:
        raise ValueError(
            f"use_eaft weights the language-model loss of SFT; it does not apply to {objective or 'rl'}; remove it"
        )
    if cfg.liger_fused_linear_cross_entropy:
        raise ValueError(
            "use_eaft needs the logits, which liger_fused_linear_cross_entropy never materialises; keep one"
        )


def _check_diffusion(cfg: TrainConfig, objective: str | None) -> None:
    plugin = any(p in DIFFUSION_PLUGINS for p in cfg.plugins or [])
    if cfg.diffusion is not None and not plugin:
        raise ValueError(f"diffusion: needs plugins: [{DIFFUSION_PLUGINS[0]}] (as in axolotl)")
    if plugin and cfg.diffusion is None:
        cfg.diffusion = DiffusionConfig()  # the plugin alone trains with axolotl's defaults
    if cfg.diffusion is None:
        return
    if objective or cfg.rl:
        raise ValueError(f"the diffusion plugin trains a language model; it does not apply to {objective or 'rl'}")
    if cfg.use_eaft:
        raise ValueError("use_eaft and the diffusion plugin are two different losses; keep one")
    if cfg.attention == "flash_attention_2":
        raise ValueError(
            "the diffusion plugin attends in both directions through a 4D attention mask, which flash-attention 2 "
            "does not take; use attn_implementation: sdpa (or eager)"
        )
    if cfg.liger_fused_linear_cross_entropy:
        raise ValueError("the diffusion loss needs the logits, which liger_fused_linear_cross_entropy never makes")
