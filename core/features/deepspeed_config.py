"""The DeepSpeed config of a run, in one place: presets, loading a file or an inline mapping, and every `auto`
value that follows from the training config and the job size.

The launcher writes the result to <run dir>/deepspeed.json and train.yaml points at it; the trainer passes the
same file through the same function, which changes nothing in an already resolved config, so the file in the
run directory is exactly what DeepSpeed gets. Only values that depend on the model's size (bucket sizes) stay
`auto`: transformers fills those from the model when DeepSpeed starts. Standard library only (no torch).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcft.core.checks.deepspeed_checks import deepspeed_problem
from hpcft.core.errors import ConfigError
from hpcft.core.features.parallelism import deepspeed_settings, resolve_layout, runs_autotp

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig

PRESETS = ("zero1", "zero2", "zero3", "zero3_offload")


def default_preset(cfg: TrainConfig) -> str:
    """ZeRO-3 shards everything (full and LoRA fine-tuning at any node count); QLoRA's 4-bit weights use ZeRO-2,
    and so does tensor parallelism (DeepSpeed AutoTP composes with ZeRO-1/2 only)."""
    return "zero2" if cfg.adapter == "qlora" or runs_autotp(cfg) else "zero3"


def load_source(source: str | dict[str, Any]) -> dict[str, Any]:
    """A preset name, a JSON file or an inline mapping -> a fresh dict (the input is never changed)."""
    if isinstance(source, dict):
        return _checked(json.loads(json.dumps(source)), "(the inline mapping)")
    if source in PRESETS:
        return json.loads((resources.files("hpcft.configs") / "deepspeed" / f"{source}.json").read_text())
    path = Path(source)
    if not path.is_file():
        raise ConfigError(
            f"key 'deepspeed': file not found: {source}; give a JSON file or one of the presets {', '.join(PRESETS)}"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"key 'deepspeed': {source} is not valid JSON ({exc}); fix the file") from None
    except OSError as exc:
        raise ConfigError(f"key 'deepspeed': cannot read {source}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"key 'deepspeed': {source} must hold a JSON object")
    return _checked(data, source)


def _checked(ds: dict[str, Any], source: str) -> dict[str, Any]:
    """Refuse here what DeepSpeed would refuse when the job starts (a ZeRO stage 7, an unknown key, ...)."""
    problem = deepspeed_problem(ds)
    if problem:
        raise ConfigError(f"key 'deepspeed': {source}: {problem}")
    return ds


def resolve_deepspeed(source: str | dict[str, Any], cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config actually used: `source` loaded, batch sizes, clipping and precision filled from the
    config, and ZeRO-3 told to gather whole weights on save. Resolving a resolved config returns it unchanged."""
    ds = load_source(source)
    ds = deepspeed_settings(ds, resolve_layout(cfg, world_size))
    filled = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "train_batch_size": cfg.micro_batch_size * cfg.gradient_accumulation_steps * world_size,
        "gradient_clipping": cfg.max_grad_norm,
    }
    for key, value in filled.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
        elif ds[key] != value:
            raise ConfigError(
                f"key 'deepspeed': {key}={ds[key]} in the DeepSpeed file disagrees with the config "
                f'({value}); set it to "auto" or make them equal'
            )
    if cfg.fp16:
        ds["fp16"] = {**ds.get("fp16", {}), "enabled": True}
        ds["bf16"] = {**ds.get("bf16", {}), "enabled": False}
    elif cfg.bf16 is True or cfg.bf16 == "full":
        ds["bf16"] = {**ds.get("bf16", {}), "enabled": True}
        ds["fp16"] = {**ds.get("fp16", {}), "enabled": False}
    _checked(ds, source if isinstance(source, str) else "(the inline mapping)")  # fp16/bf16 as filled above
    zero = ds.setdefault("zero_optimization", {})
    if zero.get("stage") == 3:
        # Without it the final save is an empty model file plus shards (axolotl #705/#1223); hpcft's output_dir
        # must load with from_pretrained.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return ds


def zero_stage(config: dict[str, Any] | None) -> int:
    """The ZeRO stage of a DeepSpeed config (0 without DeepSpeed)."""
    return int((config or {}).get("zero_optimization", {}).get("stage", 0))
