"""The loss-changing SFT keys on the tiny model: EAFT's entropy-weighted cross-entropy, masked-diffusion training
(axolotl's DiffusionPlugin: noising, bidirectional attention, the importance-weighted loss) and cls_model_config."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from hpcft.trainer.data.formats import IGNORE_INDEX
from hpcft.trainer.loop.args import Precision
from hpcft.trainer.loop.elastic import BatchLayout
from hpcft.trainer.model.loading import load_model, load_tokenizer
from hpcft.trainer.objectives.diffusion_trainer import bidirectional_mask, diffusion_loss, mask_tokens, segment_ids
from hpcft.trainer.objectives.eaft import eaft_loss
from hpcft.trainer.train import build_trainer

DIFFUSION_PLUGIN = "axolotl.integrations.diffusion.DiffusionPlugin"


def test_eaft_weights_each_tokens_loss_by_its_top_k_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[IGNORE_INDEX, 3, 4, IGNORE_INDEX, 1], [IGNORE_INDEX, IGNORE_INDEX, 7, 2, 9]])
    outputs = SimpleNamespace(logits=logits)
    # By hand: position t predicts labels[t + 1]; weight = entropy of softmax(top-3 logits) ** alpha.
    terms = []
    for b in range(2):
        for t in range(4):
            target = int(labels[b, t + 1])
            if target == IGNORE_INDEX:
                continue
            probs = F.softmax(torch.topk(logits[b, t], 3).values, dim=-1)
            entropy = -(probs * torch.log(probs + 1e-10)).sum()
            terms.append(F.cross_entropy(logits[b, t], torch.tensor(target)) * entropy**2.0)
    expected = torch.stack(terms)
    torch.testing.assert_close(eaft_loss(outputs, labels, alpha=2.0, k=3), expected.mean())
    torch.testing.assert_close(eaft_loss(outputs, labels, num_items_in_batch=10, alpha=2.0, k=3), expected.sum() / 10)
    # alpha 0: every weight is 1, the plain next-token cross-entropy.
    plain = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(eaft_loss(outputs, labels, alpha=0.0, k=3), plain)
    assert eaft_loss(outputs, torch.full_like(labels, IGNORE_INDEX)).item() == 0.0  # nothing trained: 0, not NaN


def test_use_eaft_trains_with_the_entropy_weighted_loss(train_config):
    cfg = train_config(use_eaft=True, eaft_alpha=0.5, eaft_k=5, max_steps=2, save_strategy="no")
    trainer, _ = build_trainer(cfg, load_tokenizer(cfg), BatchLayout(1, 1, 1))
    assert trainer.compute_loss_func.keywords == {"alpha": 0.5, "k": 5}
    batch = trainer.data_collator([trainer.train_dataset[0]])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(loss, eaft_loss(SimpleNamespace(logits=logits), batch["labels"], alpha=0.5, k=5))
    trainer.model.train()
    trainer.train()
    losses = [json.loads(line)["loss"] for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_noising_masks_only_trained_tokens_and_never_special_ones():
    ids = torch.tensor([[1, 10, 11, 12, 2, 0], [1, 20, 21, 22, 23, 2]])
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 11, 12, 2, IGNORE_INDEX], [IGNORE_INDEX, 20, 21, 22, 23, 2]])
    noisy, masked, p_mask = mask_tokens(ids, labels, mask_token_id=99, special_ids=[0, 1, 2], eps=1.0)
    # eps 1: every maskable token is masked (p = 1); prompt, BOS/EOS and pad never are.
    assert masked.tolist() == [[False, False, True, True, False, False], [False, True, True, True, True, False]]
    assert noisy.tolist() == [[1, 10, 99, 99, 2, 0], [1, 99, 99, 99, 99, 2]]
    assert torch.all(p_mask == 1.0)
    torch.manual_seed(0)
    _, _, p_mask = mask_tokens(ids, labels, 99, [0, 1, 2], eps=0.25)
    assert torch.all(p_mask >= 0.25) and torch.all(p_mask[:, 0:1] == p_mask)  # one t per row


def test_attention_is_bidirectional_within_a_sample_only():
    packed_positions = torch.tensor([[0, 1, 2, 0, 1, 0]])  # two samples, then padding with its own block
    segments = segment_ids(packed_positions)
    assert segments.tolist() == [[1, 1, 1, 2, 2, 3]]
    mask = bidirectional_mask(segments)[0, 0].int().tolist()
    assert mask[0] == [1, 1, 1, 0, 0, 0] and mask[4] == [0, 0, 0, 1, 1, 0] and mask[5] == [0, 0, 0, 0, 0, 1]
    padded = bidirectional_mask(torch.tensor([[1, 1, 0]]))[0, 0].int().tolist()
    assert padded == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_diffusion_loss_is_the_importance_weighted_masked_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    ids = torch.tensor([[1, 3, 4, 5], [1, 6, 2, 3]])
    labels = torch.tensor([[IGNORE_INDEX, 3, 4, 5], [IGNORE_INDEX, IGNORE_INDEX, 2, 3]])
    masked = torch.tensor([[False, True, False, True], [False, False, False, True]])
    p_mask = torch.tensor([[0.5] * 4, [0.25] * 4])
    # Token i is recovered from the logits at i - 1 (a causal LM's next-token head).
    row0 = (F.cross_entropy(logits[0, 0], ids[0, 1]) + F.cross_entropy(logits[0, 2], ids[0, 3])) / 0.5 / 3
    row1 = F.cross_entropy(logits[1, 2], ids[1, 3]) / 0.25 / 2
    loss = diffusion_loss(logits, ids, labels, masked, p_mask, importance_weighting=True)
    torch.testing.assert_close(loss, (row0 + row1) / 2)
    unweighted = diffusion_loss(logits, ids, labels, masked, p_mask, importance_weighting=False)
    torch.testing.assert_close(unweighted, (row0 * 0.5 + row1 * 0.25) / 2)


def test_diffusion_plugin_trains_packed_rows_with_an_added_mask_token(train_config, tiny_tokenizer):
    cfg = train_config(
        plugins=[DIFFUSION_PLUGIN],
        diffusion={"mask_token_id": 100_000, "generate_samples": False},  # not a token: the default mask is added
        sample_packing=True,
        sequence_len=256,
        max_steps=2,
        save_strategy="no",
    )
    tokenizer = load_tokenizer(cfg)
    trainer, _ = build_trainer(cfg, tokenizer, BatchLayout(1, 1, 1))
    assert type(trainer).__name__ == "DiffusionTrainer"
    assert trainer.mask_token_id == len(tiny_tokenizer) == tokenizer.convert_tokens_to_ids("<|diffusion_mask|>")
    assert trainer.model.get_input_embeddings().num_embeddings == len(tokenizer)
    trainer.train()
    losses = [json.loads(line)["loss"] for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)


def test_diffusion_uses_an_existing_mask_token_id_and_plugin_defaults(train_config, tiny_tokenizer):
    cfg = train_config(plugins=[DIFFUSION_PLUGIN], max_steps=1)
    assert cfg.diffusion is not None and cfg.diffusion.eps == 1e-3 and cfg.diffusion.importance_weighting
    existing = train_config(plugins=[DIFFUSION_PLUGIN], diffusion={"mask_token_id": 3})  # <|im_start|>
    trainer, _ = build_trainer(existing, load_tokenizer(existing), BatchLayout(1, 1, 1))
    assert trainer.mask_token_id == 3 and len(trainer.processing_class) == len(tiny_tokenizer)


def test_cls_model_config_and_num_labels_reach_the_loaded_config(train_config):
    cfg = train_config(cls_model_config="LlamaConfig", model_type="AutoModelForTokenClassification", num_labels=3)
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    assert type(model.config).__name__ == "LlamaConfig" and model.config.num_labels == 3
    assert model.score.out_features == 3
