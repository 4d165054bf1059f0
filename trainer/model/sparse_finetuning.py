"""Sparse fine-tuning (axolotl's `llmcompressor:` with a ConstantPruningModifier): the zeros of a pruned model's
targeted weights stay zero while the other weights train.

Masks are taken from the loaded weights (nonzero = trainable, as llmcompressor decides: |w| > 1e-8). They act twice:
on each gradient (so an optimizer that keeps its own copy of the weights, like DeepSpeed ZeRO's fp32 master
weights, never moves a zero: Adam's and SGD's updates of a weight whose gradient was always zero are zero), and on
the weights after each optimizer step where the module holds them whole (as llmcompressor does).
`save_compressed` changes nothing in what is saved (see core/features/sparse_finetuning.py): the log says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from hpcft.core.errors import ConfigError
from hpcft.core.features.sparse_finetuning import keep_sparsity_targets
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

NONZERO = 1e-8  # llmcompressor's threshold: smaller magnitudes count as pruned
_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _target_matches(target: str, name: str, module_name: str, module: nn.Module) -> bool:
    """llmcompressor's target forms: 're:<pattern>' (matched from the start of the parameter or layer name), an
    exact parameter or layer name, a layer class name, or __ALL_PRUNABLE__ (every linear/conv weight)."""
    if target.startswith("re:"):
        pattern = target[3:]
        return bool(re.match(pattern, name) or re.match(pattern, module_name))
    if target == "__ALL_PRUNABLE__":
        return isinstance(module, _PRUNABLE)
    return target in (name, module_name, type(module).__name__)


def targeted_weights(model: nn.Module, targets: list[str]) -> dict[str, nn.Parameter]:
    """The trainable weights the targets name (a whole layer named by a target means its weight)."""
    found: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            name = f"{module_name}.{pname}" if module_name else pname
            if not param.requires_grad:
                continue
            by_layer = pname == "weight" and any(_target_matches(t, name, module_name, module) for t in targets)
            by_param = any(t.startswith("re:") and re.match(t[3:], name) or t == name for t in targets)
            if by_layer or by_param:
                found[name] = param
    return found


@contextmanager
def _whole(param: nn.Parameter) -> Iterator[torch.Tensor]:
    """The parameter's full tensor (gathered under DeepSpeed ZeRO-3, where each rank holds a slice)."""
    if hasattr(param, "ds_id"):
        import deepspeed

        with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
            yield param.data
    else:
        yield param.data


class SparsityKeeper(TrainerCallback):
    """Keeps the zeros of the targeted weights: gradient hooks from the start, weight masks after each step."""

    def __init__(self, weights: dict[str, nn.Parameter]) -> None:
        self.masks: dict[str, torch.Tensor] = {}
        self.params = weights
        self._hooks = []
        for name, param in weights.items():
            with _whole(param) as full:
                mask = full.abs() > NONZERO
            self.masks[name] = mask
            self._hooks.append(param.register_hook(lambda grad, mask=mask: grad * mask.to(grad.device)))

    @property
    def sparsity(self) -> float:
        """Share of zeros over all targeted weights."""
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(int(m.sum()) for m in self.masks.values()) / max(total, 1)

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the masked weights again (where this rank holds them whole)."""
        for name, param in self.params.items():
            if param.data.shape == self.masks[name].shape:
                param.data.mul_(self.masks[name].to(param.device, param.dtype))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.apply()


def keep_sparsity(cfg: TrainConfig, model: nn.Module) -> list[TrainerCallback]:
    """The callback that keeps the llmcompressor recipe's targeted zeros ([] without an llmcompressor block)."""
    if cfg.llmcompressor is None or cfg.adapter:
        return []
    targets = keep_sparsity_targets(cfg.llmcompressor)
    weights = targeted_weights(model, targets)
    if not weights:
        raise ConfigError(
            f"llmcompressor: the ConstantPruningModifier targets {targets} match no trainable weight of "
            f"{cfg.base_model}; name weights as the model does (e.g. 're:.*q_proj.weight')"
        )
    keeper = SparsityKeeper(weights)
    log.info(
        "llmcompressor: keeping the zeros of %d weights (%.1f%% of their entries are zero)",
        len(weights),
        100 * keeper.sparsity,
    )
    return [keeper]


def save_compressed_note(cfg: TrainConfig) -> None:
    if cfg.llmcompressor is not None and cfg.llmcompressor.save_compressed:
        log.info(
            "llmcompressor.save_compressed: compressed-tensors has no sparse format any more (and no layer here is "
            "quantised), so the model is saved as ordinary safetensors with its zeros, as axolotl's llmcompressor "
            "saves it"
        )
