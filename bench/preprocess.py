"""Data preparation throughput and packing efficiency on a synthetic chat dataset.

Tokenization + label masking + packing of N conversations with the tiny tokenizer (samples/s, tokens/s), and
the share of non-pad tokens in the training batches at sequence_len 2048: hpcft's packer vs naive padding.
Run: python bench/preprocess.py [--conversations 10000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import record  # noqa: E402

WORDS = (
    "the model learns to answer questions about mountains rivers cities trains cheese chocolate lakes "
    "glaciers science history music languages weather computers clusters nodes gpus"
).split()


def synthetic_chats(n: int, seed: int = 0) -> list[dict]:
    """Conversations with a realistic long-tailed length: 1-4 turn pairs, log-normal words per turn."""
    rng = random.Random(seed)

    def text() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(max(2, int(rng.lognormvariate(2.8, 0.9)))))

    rows = []
    for _ in range(n):
        turns = [{"role": "system", "content": "You are a helpful assistant."}] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 4)):
            turns += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
        rows.append({"messages": turns})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--sequence-len", type=int, default=2048)
    parser.add_argument("--micro-batch-size", type=int, default=8)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from hpcft.core.schema import TrainConfig
    from hpcft.trainer.data.packing import pack_sequences, packing_efficiency
    from hpcft.trainer.data.prepare import build_datasets
    from hpcft.trainer.tiny import make_tiny_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_tiny_tokenizer(work / "tok")
        tokenizer = AutoTokenizer.from_pretrained(work / "tok")
        data = work / "chat.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_chats(args.conversations)))
        cfg = TrainConfig.model_validate(
            {
                "base_model": str(work / "tok"),
                "output_dir": str(work / "out"),
                "datasets": [{"path": str(data), "type": "chat_template"}],
                "sequence_len": args.sequence_len,
                "sample_packing": True,
                "dataset_processes": 1,
            }
        )
        start = time.perf_counter()
        prepared = build_datasets(cfg, tokenizer)
        seconds = time.perf_counter() - start

    stats = prepared.stats
    # Lengths of the samples that were kept, recovered from the packed rows (position_ids restart at 0).
    lengths: list[int] = []
    for positions in prepared.train["position_ids"]:
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        lengths += [b - a for a, b in zip(starts, starts[1:], strict=False)]
    cap, mbs = args.sequence_len, args.micro_batch_size
    tokens = sum(lengths)
    packed = packing_efficiency(lengths, pack_sequences(lengths, cap), cap)
    pad_to_len = tokens / (len(lengths) * cap)
    shuffled = random.Random(0).sample(lengths, len(lengths))
    batches = [shuffled[i : i + mbs] for i in range(0, len(shuffled), mbs)]
    pad_to_longest = tokens / sum(max(b) * len(b) for b in batches)
    rows = [
        [
            "tokenize + mask + pack",
            f"{len(lengths) / seconds:,.0f} samples/s",
            f"{tokens / seconds:,.0f} tokens/s",
            f"{seconds:.1f} s",
        ],
    ]
    record(
        "preprocess (throughput)",
        ["stage", "samples/s", "tokens/s", "wall"],
        rows,
        notes=f"{args.conversations} synthetic conversations, {len(lengths)} kept "
        f"(dropped too long: {stats.get('dropped_too_long', 0)}), mean {tokens / len(lengths):.0f} tokens, "
        "tiny BPE tokenizer, 1 process",
        packages=["transformers", "datasets", "tokenizers"],
    )
    record(
        "preprocess (packing efficiency)",
        [f"batching at sequence_len {cap}", "non-pad tokens / slots"],
        [
            ["hpcft packer (best-fit decreasing)", f"{packed:.4f}"],
            [f"naive: pad to longest in micro-batch of {mbs}", f"{pad_to_longest:.4f}"],
            ["naive: pad every sample to sequence_len", f"{pad_to_len:.4f}"],
        ],
    )


if __name__ == "__main__":
    main()
