"""Masked-diffusion LM training (`diffusion:` with axolotl's DiffusionPlugin; the LLaDA recipe, as axolotl trains it).

Each row draws t ~ U(0, 1) and masks every trained token (label != -100; never BOS/EOS/pad) with probability
p = (1 - eps) * t + eps, replacing it by the mask token. The model sees the noisy row with bidirectional attention
(a 4D mask: each token attends to every token of its own sample, packed samples kept apart) and is trained to
recover the masked tokens: cross-entropy at the masked positions, divided by p (importance_weighting), summed per
row and divided by the row's trained-token count, averaged over the batch. A causal LM's logits at position i
predict token i + 1, so the logits are shifted right by one to line up with the token they recover.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase, Trainer

from hpcft.core.features.objectives import DEFAULT_DIFFUSION_MASK_TOKEN, DiffusionConfig
from hpcft.core.schema import TrainConfig
from hpcft.trainer.data.formats import IGNORE_INDEX

log = logging.getLogger("hpcft.trainer")


def resolve_mask_token(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> int:
    """The mask token's id: diffusion.mask_token_id when the tokenizer has it, else mask_token_str (default
    <|diffusion_mask|>), added as a special token when missing (load_model then resizes the embeddings)."""
    assert cfg.diffusion is not None
    wanted = cfg.diffusion.mask_token_id
    if wanted is not None and wanted < len(tokenizer):
        return wanted
    text = cfg.diffusion.mask_token_str or DEFAULT_DIFFUSION_MASK_TOKEN
    if wanted is not None:
        log.warning("diffusion.mask_token_id %d is not a token of the tokenizer; masking with %r", wanted, text)
    if text not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [text]})
        log.info("diffusion: added the mask token %r to the tokenizer", text)
    return tokenizer.convert_tokens_to_ids(text)


def segment_ids(position_ids: torch.Tensor) -> torch.Tensor:
    """Packed rows: a new sample starts wherever position_ids restarts at 0 (1, 2, ... per sample)."""
    return torch.cumsum((position_ids == 0).long(), dim=-1)


def bidirectional_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, 1, seq, seq] boolean mask: tokens attend to each other when they share a non-zero segment id
    (a 0/1 padding mask, or per-sample ids of a packed row)."""
    rows, cols = attention_mask.unsqueeze(2), attention_mask.unsqueeze(1)
    return ((rows == cols) & (rows > 0)).unsqueeze(1)


def mask_tokens(
    input_ids: torch.Tensor, labels: torch.Tensor, mask_token_id: int, special_ids: list[int], eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward (noising) process: (noisy ids, which positions were masked, per-position masking probability)."""
    batch, length = input_ids.shape
    t = torch.rand(batch, device=input_ids.device)
    p_mask = ((1 - eps) * t + eps)[:, None].expand(batch, length)
    maskable = labels != IGNORE_INDEX
    for token in special_ids:
        maskable &= input_ids != token
    masked = (torch.rand((batch, length), device=input_ids.device) < p_mask) & maskable
    noisy = torch.where(masked, torch.full_like(input_ids, mask_token_id), input_ids)
    return noisy, masked, p_mask


def diffusion_loss(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    masked: torch.Tensor,
    p_mask: torch.Tensor,
    importance_weighting: bool,
) -> torch.Tensor:
    """Per row: sum over masked positions of CE (/ p_mask) divided by the row's trained tokens; mean over rows."""
    if not masked.any():
        return logits.sum() * 0.0  # nothing masked in this batch: no signal, but the graph stays whole
    aligned = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)  # logits at i - 1 predict token i
    token_loss = F.cross_entropy(aligned[masked].float(), input_ids[masked], reduction="none")
    if importance_weighting:
        token_loss = token_loss / p_mask[masked].float()
    rows = torch.zeros(input_ids.shape[0], device=logits.device, dtype=token_loss.dtype)
    rows = rows.index_add(0, masked.nonzero()[:, 0], token_loss)
    trained = (labels != IGNORE_INDEX).sum(dim=1).clamp(min=1)
    return (rows / trained).mean()


class DiffusionTrainer(Trainer):
    """transformers' Trainer with the masked-diffusion loss in place of next-token cross-entropy."""

    loss_is_scaled_for_ga = False  # a mean over the micro-batch: the Trainer divides it by the accumulation steps

    def __init__(self, *args: Any, diffusion: DiffusionConfig, mask_token_id: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.diffusion, self.mask_token_id = diffusion, mask_token_id
        tokenizer = self.processing_class
        self.special_ids = sorted(
            {i for i in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
        )
        log.info("diffusion: masking with token id %d", mask_token_id)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        input_ids, labels = inputs["input_ids"], inputs["labels"]
        # Unpacked batches carry a padding mask; packed rows (no attention_mask) carry restarting position_ids.
        segments = inputs.get("attention_mask")
        if segments is None:
            segments = segment_ids(inputs["position_ids"])
        noisy, masked, p_mask = mask_tokens(input_ids, labels, self.mask_token_id, self.special_ids, self.diffusion.eps)
        outputs = model(
            input_ids=noisy, attention_mask=bidirectional_mask(segments), position_ids=inputs.get("position_ids")
        )
        loss = diffusion_loss(outputs.logits, input_ids, labels, masked, p_mask, self.diffusion.importance_weighting)
        return (loss, outputs) if return_outputs else loss


def diffusion_trainer_arguments(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """DiffusionTrainer's own keyword arguments (resolve the mask token before the model is loaded)."""
    assert cfg.diffusion is not None
    if cfg.diffusion.generate_samples:
        log.warning("diffusion.generate_samples: hpcft prints no denoised samples while training (same training)")
    return {"diffusion": cfg.diffusion, "mask_token_id": resolve_mask_token(cfg, tokenizer)}
