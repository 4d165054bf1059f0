"""`unfrozen_parameters`: train only the parameters (or rows of them) whose names match axolotl-style patterns.

A pattern is a regular expression matched from the start of the parameter name in which `.` is a literal dot
(axolotl's rule; `.+` and `.*` keep their meaning), optionally followed by a row range `[start:end]`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch

from hpcft.core.errors import ConfigError

log = logging.getLogger("hpcft.trainer")

_RANGE = re.compile(r"^(?P<name>.+)\[(?P<start>\d*)(?::(?P<end>\d*))?\]$")


@dataclass(frozen=True)
class ParameterPattern:
    regex: re.Pattern[str]
    rows: tuple[int, int | None] | None  # [start, end) rows of the parameter that are trained; None: all

    @classmethod
    def parse(cls, pattern: str) -> ParameterPattern:
        rows = None
        match = _RANGE.match(pattern)
        if match:
            pattern = match.group("name")
            start = int(match.group("start") or 0)
            end = match.group("end")
            # `[5]` alone means rows 5.. as in axolotl; `[:32000]` rows 0..31999.
            rows = (start, int(end) if end else None)
        try:
            # A dot is a literal dot unless it starts `.+` / `.*`, so `model.layers.1` does not match `modelXlayers`.
            return cls(re.compile(re.sub(r"\.(?![+*])", r"\\.", pattern)), rows)
        except re.error as exc:
            raise ConfigError(f"unfrozen_parameters: '{pattern}' is not a valid pattern ({exc})") from None


def freeze_except(model: torch.nn.Module, patterns: list[str]) -> int:
    """Freeze every parameter not matched by a pattern; a matched row range trains only those rows (the other rows'
    gradients are zeroed). Returns the number of trainable parameters."""
    parsed = [ParameterPattern.parse(p) for p in patterns]
    trainable = 0
    for name, param in model.named_parameters():
        matches = [p for p in parsed if p.regex.match(name)]
        param.requires_grad = bool(matches)
        if not matches:
            continue
        if any(p.rows is None for p in matches):
            trainable += param.numel()
            continue
        keep = torch.zeros(param.shape[0], dtype=torch.bool)
        for p in matches:
            start, end = p.rows  # type: ignore[misc]
            keep[start:end] = True
        trainable += int(keep.sum()) * (param.numel() // param.shape[0])
        mask = keep.view(-1, *([1] * (param.dim() - 1)))
        param.register_hook(lambda grad, mask=mask: grad * mask.to(grad.device, grad.dtype))
    if trainable == 0:
        raise ConfigError(
            f"unfrozen_parameters {patterns} match no parameter of the model; parameter names look like "
            f"{next(n for n, _ in model.named_parameters())}"
        )
    log.info("unfrozen_parameters: training %d of %d parameters", trainable, sum(p.numel() for p in model.parameters()))
    return trainable


def adapter_weight_name(name: str) -> str:
    """A parameter's name in an adapter-wrapped model as the base model spells it: peft's `base_model.model.` prefix
    and `.base_layer` infix removed (`model.layers.0.self_attn.q_proj.lora_A.default.weight`)."""
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


def freeze_adapter_except(model: torch.nn.Module, patterns: list[str]) -> int:
    """unfrozen_parameters with an adapter: of the adapter's weights (LoRA, modules_to_save), only those whose name
    a pattern matches keep training; the base stays frozen (an adapter saves only its own weights).

    axolotl freezes every parameter of the adapter-wrapped model whose name no pattern matches. Its names start
    with peft's `base_model.model.`, so patterns written for the base model (`^lm_head.*`) match nothing there and
    the adapter is frozen too: the run trains nothing. hpcft matches the names as the base model spells them, and
    where the patterns match none of the adapter's weights (axolotl's Gemma 3 QLoRA examples), it keeps the whole
    adapter training and says so. Returns the number of trainable parameters."""
    parsed = [ParameterPattern.parse(p) for p in patterns]
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    kept = [(n, p) for n, p in trainable if any(pat.regex.match(adapter_weight_name(n)) for pat in parsed)]
    if not kept:
        log.warning(
            "unfrozen_parameters %s match none of the adapter's weights (named like %s); training the whole "
            "adapter (axolotl would freeze it too and train nothing). With an adapter, the patterns choose which "
            "of its weights train; use lora_modules_to_save to train base modules in full",
            patterns,
            adapter_weight_name(trainable[0][0]) if trainable else "?",
        )
        return sum(p.numel() for _, p in trainable)
    kept_names = {n for n, _ in kept}
    for name, param in trainable:
        param.requires_grad = name in kept_names
    count, total = sum(p.numel() for _, p in kept), sum(p.numel() for _, p in trainable)
    log.info("unfrozen_parameters: training %d of the adapter's %d parameters", count, total)
    return count
