"""Sample packing (best-fit-decreasing bins, position_ids restarting per sample) and the batch collator.

Attention never crosses samples in a packed row: the collator sends position_ids that restart at 0 for every
sample and NO attention_mask, and transformers (5.x, masking_utils.find_packed_sequence_indices) then builds a
block-diagonal causal mask for sdpa/eager, and flash_attention_2 derives cu_seqlens from the same position_ids.
transformers only does this when the model runs without a KV cache: training must set
`model.config.use_cache = False` (with use_cache=True attention silently crosses samples; tests prove both).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch

from hpcft.trainer.data.formats import IGNORE_INDEX


def pack_sequences(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit-decreasing bin packing: lists of sample indices whose lengths sum to at most capacity each."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free slots, bin number), kept sorted: bisect finds the best fit
    for i in order:
        length = lengths[i]
        if length > capacity:
            raise ValueError(f"sample {i} has {length} tokens, more than the packing capacity {capacity}")
        slot = bisect.bisect_left(free, (length, -1))
        if slot == len(free):
            bins.append([i])
            bisect.insort(free, (capacity - length, len(bins) - 1))
        else:
            room, b = free.pop(slot)
            bins[b].append(i)
            if room - length > 0:
                bisect.insort(free, (room - length, b))
    return bins


def pack_sequences_in_order(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Next-fit packing (axolotl's sample_packing_sequentially): samples stay in their order; a row is closed when
    the next sample does not fit in it."""
    bins: list[list[int]] = []
    room = 0
    for i, length in enumerate(lengths):
        if length > capacity:
            raise ValueError(f"sample {i} has {length} tokens, more than the packing capacity {capacity}")
        if bins and length <= room:
            bins[-1].append(i)
            room -= length
        else:
            bins.append([i])
            room = capacity - length
    return bins


def packing_efficiency(lengths: Sequence[int], bins: list[list[int]], capacity: int) -> float:
    """Share of the packed rows' slots holding real tokens."""
    return sum(lengths) / (len(bins) * capacity) if bins else 1.0


def pack_dataset(dataset: datasets.Dataset, capacity: int, sequential: bool = False) -> datasets.Dataset:
    """Concatenate samples into rows of at most `capacity` tokens, with per-sample position_ids (best-fit, or in
    order with `sequential`)."""
    return datasets.Dataset.from_dict(pack_columns(dataset["input_ids"], dataset["labels"], capacity, sequential))


def pack_columns(
    ids_col: Sequence[list[int]], labels_col: Sequence[list[int]], capacity: int, sequential: bool = False
) -> dict[str, list]:
    """The packed rows of samples given as columns: input_ids, labels and position_ids.

    The label of every sample's first token is set to -100: the loss shifts labels left by one, so that label would
    otherwise be predicted from the previous sample's last token (unpacked, it is never predicted at all).
    """
    lengths = [len(ids) for ids in ids_col]
    bins = (pack_sequences_in_order if sequential else pack_sequences)(lengths, capacity)
    rows: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": []}
    for members in bins:
        ids, labels, positions = [], [], []
        for i in members:
            ids += ids_col[i]
            labels += [IGNORE_INDEX] + list(labels_col[i][1:])
            positions += range(len(ids_col[i]))
        rows["input_ids"].append(ids)
        rows["labels"].append(labels)
        rows["position_ids"].append(positions)
    return rows


def pad_to_multiple(dataset: datasets.Dataset, multiple: int) -> datasets.Dataset:
    """Repeat leading rows so len(dataset) is a multiple of `multiple` (world_size x micro_batch_size).

    Then every rank gets the same number of full micro-batches whatever the sampler's drop_last, so no rank waits
    in a collective another rank never reaches (the axolotl #592 hang). Rows are repeated, as DistributedSampler
    itself does, rather than dropped.
    """
    extra = -len(dataset) % multiple
    if extra == 0 or len(dataset) == 0:
        return dataset
    indices = list(range(len(dataset))) + [i % len(dataset) for i in range(extra)]
    return dataset.select(indices)


@dataclass
class PackedCollator:
    """Pad a list of samples (packed rows or single samples) into a batch of tensors.

    Pads to the longest row, or to `pad_to` (sequence_len when pad_to_sequence_len). Labels are -100 on padding;
    position_ids are always emitted. Packed rows (with position_ids) get no attention_mask, so transformers sees the
    sample boundaries; their padding gets positions restarting at 0, i.e. a block of its own. Unpacked rows get
    the usual 2D attention_mask.
    """

    pad_token_id: int
    pad_to: int | None = None
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        packed = all("position_ids" in f for f in features)
        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to:
            width = max(width, self.pad_to)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": []}
        if not packed:
            batch["attention_mask"] = []
        for f in features:
            n, pad = len(f["input_ids"]), width - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            batch["labels"].append(list(f.get("labels", f["input_ids"])) + [IGNORE_INDEX] * pad)
            if packed:
                batch["position_ids"].append(list(f["position_ids"]) + list(range(pad)))
            else:
                batch["position_ids"].append(list(range(n)) + [0] * pad)
                batch["attention_mask"].append([1] * n + [0] * pad)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


def make_collator(cfg: Any, tokenizer: Any) -> PackedCollator:
    """The collator for a TrainConfig: pads with the tokenizer's pad token (EOS if it has none)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    # Context parallelism splits every row into equal pieces and exchanges them between ranks, whose batches must
    # then have one width: sequence_len (a multiple of context_parallel_size, checked on the login node).
    split = (cfg.context_parallel_size or 1) > 1
    return PackedCollator(pad_token_id=pad_id, pad_to=cfg.sequence_len if cfg.pad_to_sequence_len or split else None)
