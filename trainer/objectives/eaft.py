"""Entropy-aware fine-tuning (`use_eaft`, axolotl's EAFT loss): each trained token's cross-entropy is weighted by
the entropy of the model's own prediction at that position, approximated from its top-`eaft_k` logits and raised
to `eaft_alpha`. Tokens the model is unsure about weigh more; confidently predicted ones (which plain SFT keeps
pushing, and which cost general ability) weigh less. The weight carries no gradient.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from hpcft.core.schema import TrainConfig
from hpcft.trainer.data.formats import IGNORE_INDEX

DEFAULT_ALPHA, DEFAULT_K = 1.0, 20


def entropy_weights(logits: torch.Tensor, alpha: float, k: int) -> torch.Tensor:
    """Per-row weight: (entropy of the softmax over the top-k logits) ** alpha, computed in fp32, no gradient."""
    with torch.no_grad():
        top = torch.topk(logits.float(), k=min(k, logits.size(-1)), dim=-1).values
        probs = F.softmax(top, dim=-1)
        entropy = -(probs * torch.log(probs + 1e-10)).sum(dim=-1)
        return entropy.pow(alpha)


def eaft_loss(
    outputs: Any,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    alpha: float = DEFAULT_ALPHA,
    k: int = DEFAULT_K,
) -> torch.Tensor:
    """The EAFT loss of a causal LM's outputs: next-token cross-entropy of every trained token times its entropy
    weight, summed and divided by the batch's trained-token count (the Trainer's num_items_in_batch, which keeps
    gradient accumulation exact), or averaged when that count is not given."""
    logits = outputs.logits[..., :-1, :]
    targets = labels[..., 1:].to(logits.device)
    flat_logits = logits.reshape(-1, logits.size(-1))
    flat_targets = targets.reshape(-1)
    trained = flat_targets != IGNORE_INDEX
    if not trained.any():
        return flat_logits.sum() * 0.0  # keeps the graph (and every rank's collectives) without a NaN
    picked = flat_logits[trained]
    per_token = F.cross_entropy(picked.float(), flat_targets[trained], reduction="none")
    weighted = per_token * entropy_weights(picked, alpha, k)
    if num_items_in_batch is not None:
        return weighted.sum() / num_items_in_batch
    return weighted.mean()


def eaft_loss_function(cfg: TrainConfig) -> Callable[..., torch.Tensor] | None:
    """The Trainer's compute_loss_func for use_eaft (axolotl's defaults alpha 1.0, k 20), else None."""
    if not cfg.use_eaft:
        return None
    alpha = DEFAULT_ALPHA if cfg.eaft_alpha is None else cfg.eaft_alpha
    return functools.partial(eaft_loss, alpha=alpha, k=cfg.eaft_k or DEFAULT_K)
