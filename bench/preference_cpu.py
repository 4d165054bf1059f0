"""Preference tuning (rl: dpo) on CPU: steps/s and peak memory, full fine-tuning vs LoRA, with and without
precompute_ref_log_probs.

Each configuration trains in a fresh process (peak RSS is per process), one process, no DeepSpeed, fp32, on
configs/examples/data/preference.jsonl. Two models: the tiny test model (hidden 64, 2 layers) for steps/s, and a
larger random Llama (hidden 512, 8 layers, ~27M parameters, ~100 MiB of fp32 weights) where the reference model's
memory is visible next to torch's own few hundred MiB.
Run: python bench/preference_cpu.py [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PREFERENCE = ROOT / "configs" / "examples" / "data" / "preference.jsonl"
CONFIGS = {
    "full": {},
    "full, precompute_ref_log_probs": {"precompute_ref_log_probs": True},
    "LoRA r=16": {"adapter": "lora", "lora_r": 16, "lora_target_linear": True},
    "LoRA r=16, precompute_ref_log_probs": {
        "adapter": "lora",
        "lora_r": 16,
        "lora_target_linear": True,
        "precompute_ref_log_probs": True,
    },
}


def make_models(work: Path) -> dict[str, Path]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hpcft.trainer.tiny import make_tiny_model

    make_tiny_model(work / "tiny")
    tokenizer_files = [p for p in (work / "tiny").iterdir() if "token" in p.name or p.suffix == ".jinja"]
    small = work / "small"
    small.mkdir()
    config = LlamaConfig(
        vocab_size=768,
        hidden_size=512,
        intermediate_size=1024,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(small))
    for f in tokenizer_files:
        (small / f.name).write_bytes(f.read_bytes())
    return {"tiny": work / "tiny", "small": small}


def worker(model_dir: str, out: str, steps: int, extra: str) -> None:
    """Train one configuration in this process; print steps/s of train() and the process's peak RSS."""
    from hpcft.core.schema import TrainConfig
    from hpcft.trainer.model.loading import load_tokenizer
    from hpcft.trainer.train import build_trainer

    cfg = TrainConfig.model_validate(
        {
            "base_model": model_dir,
            "output_dir": out,
            "rl": "dpo",
            "sequence_len": 128,
            "micro_batch_size": 4,
            "max_steps": int(steps),
            "learning_rate": 1e-4,
            "optimizer": "adamw_torch",
            "lr_scheduler": "constant",
            "bf16": False,
            "logging_steps": int(steps),
            "save_strategy": "no",
            "datasets": [{"path": str(PREFERENCE), "type": "chatml.intel"}],
            **json.loads(extra),
        }
    )
    trainer, _ = build_trainer(cfg, load_tokenizer(cfg))  # the precompute pass runs in here, before train()
    start = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"steps_per_s": int(steps) / elapsed, "peak_rss_mib": peak_mib}))


def measure(model_dir: Path, out: Path, steps: int, extra: dict) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--worker", str(model_dir), str(out), str(steps), json.dumps(extra)],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:5], sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = make_models(work)
        for model in ("tiny", "small"):
            for name, extra in CONFIGS.items():
                got = measure(models[model], work / f"out-{model}-{len(rows)}", args.steps, extra)
                rows.append([model, name, f"{got['steps_per_s']:.2f}", f"{got['peak_rss_mib']:,.0f}"])
                print(rows[-1], flush=True)
    record(
        "preference_cpu (rl: dpo)",
        ["model", "configuration", "steps/s", "peak RSS MiB"],
        rows,
        notes=f"{args.steps} steps, micro_batch_size 4 pairs (8 sequences a step), sequence_len 128, fp32, sdpa, "
        "1 process, no DeepSpeed, adamw_torch; steps/s over train() only (the precompute pass runs "
        "before it); peak RSS of the whole process. tiny: hidden 64, 2 layers; small: hidden 512, "
        "8 layers, 27M parameters.",
        packages=["torch", "transformers", "trl"],
    )


if __name__ == "__main__":
    main()
