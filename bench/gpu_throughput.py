"""GPU training throughput: tokens/s/GPU and MFU of hpcft's trainer on a ~1B Llama (random weights, bf16, packed
sequences, flash-attn when installed), full fine-tuning and LoRA, on one GPU.

Where no GPU exists it says so and exits 0. Run: python bench/gpu_throughput.py [--steps 30 --sequence-len 2048]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import record  # noqa: E402

try:
    from transformers import TrainerCallback
except ImportError:  # without hpcft[train] main() says so and exits 0
    TrainerCallback = object

# Dense bf16 peak FLOP/s per GPU (no sparsity), for MFU.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12}
LLAMA_1B = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=16,
    num_attention_heads=16,
    num_key_value_heads=8,
    vocab_size=32000,
    max_position_embeddings=4096,
)


def peak_flops(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def make_model(folder: Path) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hpcft.trainer.tiny import make_tiny_tokenizer

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**LLAMA_1B)).to(torch.bfloat16)
    model.save_pretrained(folder)
    make_tiny_tokenizer(folder)  # only its pad/eos ids are used: the data below is pretokenized
    return sum(p.numel() for p in model.parameters())


def pretokenized(path: Path, rows: int, seq: int) -> None:
    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(rows):
            n = max(16, min(seq, int(rng.lognormvariate(6.0, 0.8))))
            ids = [rng.randrange(10, 500) for _ in range(n)]
            f.write(json.dumps({"input_ids": ids, "labels": ids}) + "\n")


def run(model_dir: Path, data: Path, out: Path, steps: int, seq: int, mbs: int, lora: bool) -> tuple[float, int]:
    from hpcft.core.schema import TrainConfig
    from hpcft.trainer.model.loading import load_tokenizer
    from hpcft.trainer.train import build_trainer

    keys = {
        "base_model": str(model_dir),
        "output_dir": str(out),
        "datasets": [{"path": str(data)}],
        "sequence_len": seq,
        "sample_packing": True,
        "micro_batch_size": mbs,
        "learning_rate": 1e-5,
        "bf16": True,
        "gradient_checkpointing": True,
        "save_strategy": "no",
        "logging_steps": 5,
        "flash_attention": importlib.util.find_spec("flash_attn") is not None,
    }
    if lora:
        keys |= {"adapter": "lora", "lora_r": 16, "lora_alpha": 32, "lora_target_linear": True, "learning_rate": 2e-4}
    cfg = TrainConfig.model_validate(keys | {"max_steps": steps + WARMUP_STEPS})
    trainer, _ = build_trainer(cfg, load_tokenizer(cfg))
    clock = WarmClock()
    trainer.add_callback(clock)
    trainer.train()
    return time.perf_counter() - clock.start, int(trainer.state.num_input_tokens_seen - clock.tokens)


WARMUP_STEPS = 5  # kernels compiled, memory allocated, caches warm: not timed


class WarmClock(TrainerCallback):
    """Starts the clock after the warm-up steps."""

    start = 0.0
    tokens = 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == WARMUP_STEPS:
            self.start, self.tokens = time.perf_counter(), state.num_input_tokens_seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--sequence-len", type=int, default=2048)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu_throughput: torch is not installed (pip install hpcft[train]); nothing measured")
        return 0
    if not torch.cuda.is_available():
        print("gpu_throughput: no GPU on this machine; nothing measured (run it where a GPU exists)")
        return 0
    name = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = make_model(work / "model")
        pretokenized(work / "data.jsonl", 4000, args.sequence_len)
        rows = []
        for lora in (False, True):
            secs, tokens = run(
                work / "model",
                work / "data.jsonl",
                work / f"out-{lora}",
                args.steps,
                args.sequence_len,
                args.micro_batch_size,
                lora,
            )
            tps = tokens / secs
            # 6N FLOPs per token for full fine-tuning (forward 2N, backward 4N); LoRA skips the weight gradients
            # of the frozen base (about 4N); plus causal attention 6*L*d*s; x4/3 for gradient checkpointing.
            attn = 6 * LLAMA_1B["num_hidden_layers"] * LLAMA_1B["hidden_size"] * args.sequence_len
            flops = ((4 if lora else 6) * params + attn) * 4 / 3
            peak = peak_flops(name)
            mfu = f"{tps * flops / peak:.1%}" if peak else "unknown peak"
            peak_gib = torch.cuda.max_memory_allocated() / 2**30
            rows.append(["LoRA r=16" if lora else "full", f"{tps:,.0f}", mfu, f"{peak_gib:.1f}"])
            torch.cuda.reset_peak_memory_stats()
    record(
        "gpu_throughput",
        ["fine-tuning", "tokens/s/GPU", "MFU (bf16 dense peak)", "peak GiB"],
        rows,
        notes=f"~{params / 1e9:.2f}B Llama, bf16, packed {args.sequence_len}, micro_batch_size "
        f"{args.micro_batch_size}, gradient checkpointing, attention "
        f"{'flash_attention_2' if importlib.util.find_spec('flash_attn') else 'sdpa'}, {args.steps} steps",
        packages=["torch", "transformers", "peft", "flash-attn"],
        device=name,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
