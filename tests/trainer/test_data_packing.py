"""Packing: bin efficiency, packed rows, the collator, and the proof that attention does not cross samples."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from hpcft.trainer.data.formats import IGNORE_INDEX
from hpcft.trainer.data.packing import (
    PackedCollator,
    make_collator,
    pack_dataset,
    pack_sequences,
    packing_efficiency,
    pad_to_multiple,
)


def lognormal_lengths(n: int, median: float, sigma: float, low: int, high: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(median), sigma, n), low, high).astype(int).tolist()


@pytest.mark.parametrize(("n", "median", "sigma"), [(20000, 300, 0.9), (5000, 700, 0.6)])
def test_best_fit_decreasing_is_valid_and_fills_99_percent(n, median, sigma):
    lengths = lognormal_lengths(n, median, sigma, 16, 2048)
    bins = pack_sequences(lengths, 2048)
    assert sorted(i for b in bins for i in b) == list(range(n))  # every sample exactly once
    assert max(sum(lengths[i] for i in b) for b in bins) <= 2048
    assert packing_efficiency(lengths, bins, 2048) >= 0.99


def test_too_long_sample_cannot_be_packed():
    with pytest.raises(ValueError, match="sample 1 has 9 tokens"):
        pack_sequences([3, 9], 8)


def test_packed_rows_restart_positions_and_mask_each_first_label():
    samples = datasets.Dataset.from_dict(
        {
            "input_ids": [[10, 11, 12], [20, 21], [30, 31, 32, 33, 34]],
            "labels": [[10, 11, 12], [-100, 21], [30, -100, 32, 33, 34]],
        }
    )
    packed = pack_dataset(samples, capacity=8)
    assert len(packed) == 2
    columns = (packed["input_ids"], packed["labels"], packed["position_ids"])
    rows = sorted(zip(*columns, strict=True), key=lambda row: -len(row[0]))
    assert rows[0] == (
        [30, 31, 32, 33, 34, 10, 11, 12],
        [-100, -100, 32, 33, 34, -100, 11, 12],
        [0, 1, 2, 3, 4, 0, 1, 2],
    )
    assert rows[1] == ([20, 21], [-100, 21], [0, 1])


def test_collator_packed_and_unpacked_batches(train_config, tiny_tokenizer):
    collate = PackedCollator(pad_token_id=0)
    batch = collate(
        [
            {"input_ids": [5, 6, 7, 8], "labels": [-100, 6, -100, 8], "position_ids": [0, 1, 0, 1]},
            {"input_ids": [5, 6], "labels": [-100, 6], "position_ids": [0, 1]},
        ]
    )
    assert "attention_mask" not in batch  # the boundaries travel in position_ids
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 6, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, -100, 8], [-100, 6, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1], [0, 1, 0, 1]]  # padding is a block of its own

    cfg = train_config(sequence_len=6, pad_to_sequence_len=True)
    batch = make_collator(cfg, tiny_tokenizer)([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}])
    pad = tiny_tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 7, pad, pad, pad]]
    assert batch["labels"].tolist() == [[5, 6, 7, -100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 0, 0]]


def per_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every trained token (the causal shift applied), in order."""
    shifted_logits, shifted_labels = logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()
    keep = shifted_labels != IGNORE_INDEX
    return F.cross_entropy(shifted_logits[keep].float(), shifted_labels[keep], reduction="none")


def mixed_samples(train_config, tokenizer, chat_dataset, pretrain_dataset, n: int) -> datasets.Dataset:
    """n chat samples (first token untrained) and n completion samples (every token trained, BOS included)."""
    from hpcft.trainer.data.data_sources import load_raw_dataset
    from hpcft.trainer.data.formats import tokenize_dataset

    cfg = train_config(datasets=[chat_dataset, pretrain_dataset])
    parts = [tokenize_dataset(load_raw_dataset(ds).select(range(n)), ds, cfg, tokenizer, "d")[0] for ds in cfg.datasets]
    return datasets.concatenate_datasets(parts)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked_loss_per_token(
    train_config, tiny_tokenizer, tiny_model, attention, chat_dataset, pretrain_dataset
):
    """Attention does not cross samples: every trained token's loss is the same packed or alone (atol 1e-5)."""
    tiny_model.config._attn_implementation = attention
    samples = mixed_samples(train_config, tiny_tokenizer, chat_dataset, pretrain_dataset, 6)
    packed = pack_dataset(samples, capacity=160)
    assert len(packed) < len(samples) and max(len(r) for r in packed["input_ids"]) > 100  # really packed
    batch = make_collator(train_config(sequence_len=160), tiny_tokenizer)(list(packed))
    with torch.no_grad():
        packed_logits = tiny_model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits
        packed_loss = per_token_loss(packed_logits, batch["labels"])
        # The same samples alone, in the order the packed rows hold them.
        order = [i for members in pack_sequences([len(x) for x in samples["input_ids"]], 160) for i in members]
        alone = []
        for i in order:
            ids, labels = torch.tensor([samples[i]["input_ids"]]), torch.tensor([samples[i]["labels"]])
            alone.append(per_token_loss(tiny_model(input_ids=ids, use_cache=False).logits, labels))
    unpacked_loss = torch.cat(alone)
    assert packed_loss.shape == unpacked_loss.shape  # the same trained tokens, none gained or lost at boundaries
    torch.testing.assert_close(packed_loss, unpacked_loss, atol=1e-5, rtol=0)


def test_packed_attention_crosses_samples_when_the_model_keeps_a_cache(
    train_config, tiny_tokenizer, tiny_model, chat_dataset, pretrain_dataset
):
    """Why training must set use_cache=False: with a KV cache transformers ignores the packed position_ids."""
    samples = mixed_samples(train_config, tiny_tokenizer, chat_dataset, pretrain_dataset, 3)
    batch = make_collator(train_config(sequence_len=512), tiny_tokenizer)(list(pack_dataset(samples, 512)))
    with torch.no_grad():
        kwargs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
        leaky = per_token_loss(tiny_model(**kwargs, use_cache=True).logits, batch["labels"])
        isolated = per_token_loss(tiny_model(**kwargs, use_cache=False).logits, batch["labels"])
    assert (leaky - isolated).abs().max() > 1e-3


@pytest.mark.parametrize("world_size", [1, 3, 8])
def test_every_rank_gets_the_same_number_of_full_batches(world_size):
    micro_batch_size = 4
    rows = pad_to_multiple(
        datasets.Dataset.from_dict({"input_ids": [[i] for i in range(50)]}), world_size * micro_batch_size
    )
    assert len(rows) % (world_size * micro_batch_size) == 0 and len(rows) - 50 < world_size * micro_batch_size
    assert rows["input_ids"][:50] == [[i] for i in range(50)]  # padding repeats rows, drops none
    for drop_last in (False, True):
        counts = {
            len(list(DistributedSampler(rows, world_size, rank, shuffle=True, drop_last=drop_last)))
            for rank in range(world_size)
        }
        assert counts == {len(rows) // world_size}  # and that count is a multiple of micro_batch_size
