"""axolotl's `llmcompressor:` block (the LLMCompressor plugin), checked on the login node: sparse fine-tuning
that keeps the zeros of a pruned model's weights (trainer/model/sparse_finetuning.py does it).

axolotl hands the block's recipe to the llmcompressor package; hpcft reads the one kind of modifier that sparse
fine-tuning uses, ConstantPruningModifier (its `targets` name the weights whose zeros stay zero), and refuses any
other modifier by name. llmcompressor itself is not used: its releases pin older transformers than hpcft's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig

LLMCOMPRESSOR_PLUGINS = (
    "axolotl.integrations.llm_compressor.LLMCompressorPlugin",
    "axolotl.integrations.llm_compressor.plugin.LLMCompressorPlugin",
)
KEEP_SPARSITY_MODIFIER = "ConstantPruningModifier"
# A modifier's start/end (in epochs) that mean "the whole run".
_WHOLE_RUN = (None, 0, -1)


class LlmCompressorConfig(BaseModel):
    """`llmcompressor:` (axolotl semantics)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    recipe: dict[str, Any] = Field(...)
    """The llmcompressor recipe (inline, or as YAML text), e.g. `{finetuning_stage: {finetuning_modifiers:
    {ConstantPruningModifier: {targets: ['re:.*q_proj.weight', ...], start: 0}}}}`."""
    save_compressed: bool = False
    """Compress the saved model with compressed-tensors. Its releases after 0.14 (those today's llmcompressor
    installs) have no sparse format and only compress quantised layers, of which sparse fine-tuning has none: as
    in axolotl, the model is saved as ordinary safetensors (the zeros included), and the log says so."""

    @field_validator("recipe", mode="before")
    @classmethod
    def _yaml_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = None
            if not isinstance(parsed, dict):
                raise ValueError(
                    "give the recipe inline as a mapping (a recipe file path or a Hub recipe is not read); "
                    "e.g. {finetuning_stage: {finetuning_modifiers: {ConstantPruningModifier: {targets: [...]}}}}"
                )
            return parsed
        return value


def recipe_modifiers(recipe: dict[str, Any], where: str = "llmcompressor.recipe") -> list[tuple[str, str, Any]]:
    """Every modifier of a recipe as (where it is, modifier name, its arguments): modifiers sit in mappings whose
    key ends in `_modifiers`, at the top level or inside a stage."""
    found = []
    for key, value in recipe.items():
        here = f"{where}.{key}"
        if not isinstance(value, dict):
            continue
        if str(key).endswith("_modifiers"):
            found += [(f"{here}.{name}", str(name), args) for name, args in value.items()]
        else:
            found += recipe_modifiers(value, here)
    return found


def keep_sparsity_targets(block: LlmCompressorConfig) -> list[str]:
    """The `targets` of the recipe's ConstantPruningModifier(s): the weights whose zeros stay zero."""
    targets: list[str] = []
    for _, name, args in recipe_modifiers(block.recipe):
        if name == KEEP_SPARSITY_MODIFIER:
            listed = args["targets"]
            targets += [listed] if isinstance(listed, str) else list(listed)
    return targets


def check_llmcompressor(cfg: TrainConfig) -> None:
    plugin = any(p in LLMCOMPRESSOR_PLUGINS for p in cfg.plugins or [])
    block = cfg.llmcompressor
    if block is None:
        if plugin:
            raise ValueError("plugins: the LLMCompressor plugin needs an llmcompressor: block with a recipe")
        return
    modifiers = recipe_modifiers(block.recipe)
    if not modifiers:
        raise ValueError(
            "llmcompressor.recipe has no modifiers; give e.g. {finetuning_stage: {finetuning_modifiers: "
            "{ConstantPruningModifier: {targets: [...]}}}}"
        )
    for where, name, args in modifiers:
        if name != KEEP_SPARSITY_MODIFIER:
            raise ValueError(
                f"{where}: the llmcompressor modifier {name} is not supported by hpcft; sparse fine-tuning keeps a "
                f"pruned model's zeros with {KEEP_SPARSITY_MODIFIER} (prune or quantise with llmcompressor itself "
                "before or after training)"
            )
        if not isinstance(args, dict) or not args.get("targets"):
            raise ValueError(f"{where}: needs targets, e.g. ['re:.*q_proj.weight', 're:.*down_proj.weight']")
        targets = args["targets"]
        if not (isinstance(targets, str) or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))):
            raise ValueError(f"{where}.targets: must be a list of weight names or 're:' patterns")
        unknown = set(args) - {"targets", "start", "end", "update", "index", "group"}
        if unknown:
            raise ValueError(f"{where}: unknown argument(s) {', '.join(sorted(map(str, unknown)))}; remove them")
        for key in ("start", "end"):
            if args.get(key) not in _WHOLE_RUN:
                raise ValueError(
                    f"{where}.{key}: hpcft keeps the zeros for the whole run; remove {key} (or set start: 0)"
                )


def sparse_notes(cfg: TrainConfig) -> list[str]:
    """What `hpcft validate` tells about an llmcompressor block."""
    if cfg.llmcompressor is None or not cfg.adapter:
        return []
    return [
        f"llmcompressor: with adapter: {cfg.adapter} the base weights stay frozen, so their zeros are kept without "
        "masks; the adapter itself is dense (merging it into the base fills the zeros)"
    ]
