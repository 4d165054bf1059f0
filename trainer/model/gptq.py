"""gptq: train a LoRA adapter on a GPTQ-quantised checkpoint (axolotl's `gptq: true`).

With CUDA and the gptqmodel + optimum packages, transformers loads the checkpoint with GPTQ's own kernels (the
weights stay 4-bit). hpcft's image cannot carry gptqmodel (its releases need a newer torch than hpcft pins and
compile CUDA code on installation), so everywhere else hpcft unpacks the GPTQ weights itself: each quantised
linear layer becomes an ordinary one holding scale * (q - zero), exactly the matrix GPTQ's kernels multiply by,
and the adapter trains on that frozen base. Same function, more memory (16 instead of 4 bits per weight).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

QUANT_SUFFIXES = ("qweight", "qzeros", "scales", "g_idx")


def use_gptq_kernels(cuda: bool | None = None) -> bool:
    """Whether transformers can load the checkpoint with GPTQ kernels here (CUDA, gptqmodel and optimum)."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    return cuda and all(importlib.util.find_spec(name) is not None for name in ("gptqmodel", "optimum"))


def gptq_settings(config: Any) -> dict[str, Any]:
    """The checkpoint's quantization_config as a dict; an error unless it is a GPTQ one (as axolotl checks)."""
    settings = getattr(config, "quantization_config", None)
    if settings is not None and not isinstance(settings, dict):
        settings = settings.to_dict()
    if not settings or settings.get("quant_method") != "gptq":
        raise ConfigError(
            "gptq: true, but base_model's config.json has no GPTQ quantization_config (quant_method: gptq); "
            "point base_model at a GPTQ checkpoint or remove gptq"
        )
    return settings


def unpack(packed: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """The integers packed into int32 words along `dim` (GPTQ packs qweight along rows, qzeros along columns),
    lowest bits first."""
    shifts = torch.arange(0, 32, bits, dtype=torch.int32)
    mask = (1 << bits) - 1
    words = packed.to(torch.int32)
    if dim == 0:
        values = (words.unsqueeze(1) >> shifts.view(1, -1, 1)) & mask
        return values.reshape(words.shape[0] * len(shifts), words.shape[1])
    values = (words.unsqueeze(2) >> shifts.view(1, 1, -1)) & mask
    return values.reshape(words.shape[0], words.shape[1] * len(shifts))


def dequantize(
    tensors: dict[str, torch.Tensor], bits: int, group_size: int, zero_offset: int, dtype: torch.dtype
) -> torch.Tensor:
    """The (out_features, in_features) weight of one GPTQ linear layer: scales[g] * (q - zeros[g]) with g the
    input row's group (g_idx, or row // group_size)."""
    q = unpack(tensors["qweight"], bits, dim=0)  # (in, out)
    zeros = unpack(tensors["qzeros"], bits, dim=1) + zero_offset  # (groups, out)
    scales = tensors["scales"].to(torch.float32)  # (groups, out)
    rows = q.shape[0]
    g_idx = tensors.get("g_idx")
    if g_idx is None:
        g_idx = torch.arange(rows) // (group_size if group_size > 0 else rows)
    g_idx = g_idx.long()
    weight = scales[g_idx] * (q.to(torch.float32) - zeros[g_idx].to(torch.float32))
    return weight.t().contiguous().to(dtype)


def checkpoint_files(source: str, revision: str | None) -> list[Path]:
    """The checkpoint's safetensors files (downloaded first for a Hub model)."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source, revision=revision, allow_patterns=["*.json", "*.safetensors"]))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / name for name in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"gptq: no .safetensors weights in {folder} (GPTQ checkpoints in .bin are not read)")
    return files


def dequantized_state_dict(
    cfg: TrainConfig, config: Any, model_cls: Any, dtype: torch.dtype
) -> tuple[Any, dict[str, torch.Tensor]]:
    """(the model config without its quantization_config, the checkpoint's weights with every GPTQ layer
    unpacked to `dtype`), for from_pretrained(None, config=..., state_dict=...)."""
    settings = gptq_settings(config)
    bits, group_size = int(settings.get("bits", 4)), int(settings.get("group_size", 128))
    if 32 % bits:
        raise ConfigError(f"gptq: {bits}-bit GPTQ weights are not supported (2, 4 or 8 bits)")
    # GPTQ's original ("gptq", v1) format stores each zero point minus one; gptq_v2 stores it as it is.
    version = settings.get("checkpoint_format") or settings.get("format") or "gptq"
    zero_offset = 0 if version == "gptq_v2" else 1
    plain: dict[str, torch.Tensor] = {}
    quantised: dict[str, dict[str, torch.Tensor]] = {}
    for path in checkpoint_files(cfg.base_model, cfg.model_revision):
        for name, tensor in load_file(str(path)).items():
            prefix, _, leaf = name.rpartition(".")
            if leaf in QUANT_SUFFIXES:
                quantised.setdefault(prefix, {})[leaf] = tensor
            else:
                plain[name] = tensor
    state = {name: tensor.to(dtype) if tensor.is_floating_point() else tensor for name, tensor in plain.items()}
    for prefix, tensors in quantised.items():
        state[f"{prefix}.weight"] = dequantize(tensors, bits, group_size, zero_offset, dtype)
    plain_config = type(config).from_dict({k: v for k, v in config.to_dict().items() if k != "quantization_config"})
    # GPTQ layers carry a bias even where the model's linear layers have none (all zeros): drop those.
    expected = set(_model_class(model_cls, plain_config, cfg)[1])
    state = {name: tensor for name, tensor in state.items() if name in expected or not name.endswith(".bias")}
    log.info(
        "gptq: %d GPTQ layers of %s (%d-bit, group size %d) unpacked to %s; the LoRA adapter trains on them",
        len(quantised),
        cfg.base_model,
        bits,
        group_size,
        str(dtype).removeprefix("torch."),
    )
    return plain_config, state


def _model_class(model_cls: Any, config: Any, cfg: TrainConfig) -> tuple[type, list[str]]:
    """The concrete model class an Auto class builds for `config`, and its parameter names (built on the meta
    device: no memory, no initialisation; not through from_config, which ZeRO-3 would partition)."""
    concrete = model_cls
    mapping = getattr(model_cls, "_model_mapping", None)  # an Auto class: its table of config -> model class
    if mapping is not None:
        try:
            concrete = mapping[type(config)]
        except KeyError:
            raise ConfigError(
                f"gptq: {model_cls.__name__} has no model class for {type(config).__name__}; set type: to the "
                "model's class (e.g. LlamaForCausalLM)"
            ) from None
    with torch.device("meta"):
        model = concrete(config)
    return concrete, list(model.state_dict())


def load_gptq_model(cfg: TrainConfig, model_cls: Any, kwargs: dict[str, Any], load: Any) -> Any:
    """The GPTQ checkpoint as the base of a LoRA adapter: with GPTQ kernels where they can run, else unpacked (see
    the module docstring). `load(model_cls, source, kwargs)` is the caller's from_pretrained."""
    from transformers import AutoConfig, GPTQConfig

    config = kwargs.get("config") or AutoConfig.from_pretrained(
        cfg.base_model, trust_remote_code=cfg.trust_remote_code, revision=cfg.model_revision
    )
    settings = gptq_settings(config)
    if use_gptq_kernels():
        if cfg.gptq_disable_exllama:
            settings = {**settings, "backend": "torch"}  # gptqmodel's plain PyTorch kernels instead of ExLlama's
        quantization = GPTQConfig.from_dict(settings)
        return load(model_cls, cfg.base_model, {**kwargs, "config": config, "quantization_config": quantization})
    reason = "there is no CUDA GPU" if not torch.cuda.is_available() else "gptqmodel and optimum are not installed"
    log.warning(
        "gptq: GPTQ kernels need a CUDA GPU and the gptqmodel package, but %s; unpacking the GPTQ weights to %s "
        "(the same weights; 4x the memory of 4-bit ones)",
        reason,
        str(kwargs["dtype"]).removeprefix("torch."),
    )
    plain_config, state = dequantized_state_dict(cfg, config, model_cls, kwargs["dtype"])
    concrete, _ = _model_class(model_cls, plain_config, cfg)
    return load(concrete, None, {**kwargs, "config": plain_config, "state_dict": state})
