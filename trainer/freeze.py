"""`unfrozen_parameters`: train only the parameters (or rows of them) whose names match axolotl-style patterns.

A pattern is a regular expression matched from the start of the parameter name in which `.` is a literal dot
(axolotl's rule; `.+` and `.*` keep their meaning), optionally followed by a row range `[start:end]`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch

from hpcft.launcher.errors import ConfigError

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
