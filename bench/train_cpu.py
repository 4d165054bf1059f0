"""Training throughput on CPU: hpcft's trainer vs a plain transformers Trainer, same tiny model, data and settings.

Both train the tiny random Llama on configs/examples/data/chat.jsonl for the same number of steps with the same
micro-batch size, sequence length, optimizer and learning rate, in one process, one after the other in this
run. tokens/s counts non-padding tokens (what the model learns from) over the wall time of `trainer.train()`.
hpcft is measured with and without sample packing; the baseline pads each micro-batch to its longest sample.
Run: python bench/train_cpu.py [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHAT = ROOT / "configs" / "examples" / "data" / "chat.jsonl"


def run_hpcft(model_dir: Path, out: Path, steps: int, seq: int, mbs: int, packing: bool) -> tuple[float, int]:
    from hpcft.core.schema import TrainConfig
    from hpcft.trainer.model.loading import load_tokenizer
    from hpcft.trainer.train import build_trainer

    cfg = TrainConfig.model_validate(
        {
            "base_model": str(model_dir),
            "output_dir": str(out),
            "sequence_len": seq,
            "sample_packing": packing,
            "micro_batch_size": mbs,
            "max_steps": steps,
            "learning_rate": 1e-3,
            "optimizer": "adamw_torch",
            "lr_scheduler": "constant",
            "bf16": False,
            "logging_steps": 10,
            "save_strategy": "no",
            "datasets": [
                {
                    "path": str(CHAT),
                    "type": "chat_template",
                    "field_messages": "conversations",
                    "message_property_mappings": {"role": "from", "content": "value"},
                }
            ],
        }
    )
    trainer, _ = build_trainer(cfg, load_tokenizer(cfg))
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start, int(trainer.state.num_input_tokens_seen)


def run_plain(model_dir: Path, out: Path, steps: int, seq: int, mbs: int) -> tuple[float, int]:
    """The usual transformers recipe: chat template -> tokens, causal-LM collator (pads per batch), Trainer."""
    import datasets
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in CHAT.read_text().splitlines()]
    role = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
    texts = [[{"role": role[m["from"]], "content": m["value"]} for m in r["conversations"]] for r in rows]
    ids = [tokenizer.apply_chat_template(t, tokenize=True, truncation=True, max_length=seq) for t in texts]
    ids = [i["input_ids"] if isinstance(i, dict) or hasattr(i, "keys") else i for i in ids]
    dataset = datasets.Dataset.from_dict({"input_ids": ids})
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa")
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=mbs,
        max_steps=steps,
        learning_rate=1e-3,
        optim="adamw_torch",
        lr_scheduler_type="constant",
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        include_num_input_tokens_seen="non_padding",
        use_cpu=True,
        dataloader_num_workers=0,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start, int(trainer.state.num_input_tokens_seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--sequence-len", type=int, default=256)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hpcft.trainer.tiny import make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_tiny_model(work / "model")
        common = (args.steps, args.sequence_len, args.micro_batch_size)
        plain_s, plain_tok = run_plain(work / "model", work / "plain", *common)
        nopack_s, nopack_tok = run_hpcft(work / "model", work / "hpcft-nopack", *common, packing=False)
        pack_s, pack_tok = run_hpcft(work / "model", work / "hpcft-pack", *common, packing=True)
    base = plain_tok / plain_s
    rows = [["plain transformers Trainer (baseline)", f"{plain_tok:,}", f"{plain_s:.1f}", f"{base:,.0f}", "1.00"]]
    for name, secs, tok in [
        ("hpcft, sample_packing: false", nopack_s, nopack_tok),
        ("hpcft, sample_packing: true", pack_s, pack_tok),
    ]:
        rows.append([name, f"{tok:,}", f"{secs:.1f}", f"{tok / secs:,.0f}", f"{tok / secs / base:.2f}"])
    record(
        "train_cpu",
        ["trainer", "non-pad tokens", "train() wall s", "tokens/s", "ratio to baseline"],
        rows,
        notes=f"tiny Llama (hidden 64, 2 layers), {args.steps} steps, micro_batch_size {args.micro_batch_size}, "
        f"sequence_len {args.sequence_len}, fp32, sdpa, 1 process, torch threads {os.cpu_count()}",
        packages=["torch", "transformers"],
    )


if __name__ == "__main__":
    main()
