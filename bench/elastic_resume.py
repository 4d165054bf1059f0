"""Elastic resume: how long converting a ZeRO-3 checkpoint to DeepSpeed's universal format takes on resume (the
tiny model), and the GPU-hours that preprocessing in its own CPU job saves (arithmetic from bench/preprocess.py's
measured tokenization throughput and the CSCS tutorial's job shape).

Trains the tiny model 2 steps under ZeRO-3 with 2 processes (torchrun, CPU), then times
hpcft.trainer.loop.elastic.convert_to_universal on its checkpoint as a resume on 1 rank does (3 repetitions).
Run: python bench/elastic_resume.py [--tokens-per-s 310126] [--dataset-tokens 1e9]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tiny_checkpoint(work: Path) -> Path:
    """A ZeRO-3 checkpoint of the tiny model written by 2 ranks."""
    import yaml

    from hpcft.trainer.tiny import make_tiny_model

    make_tiny_model(work / "model")
    config = {
        "base_model": str(work / "model"),
        "output_dir": str(work / "out"),
        "dataset_prepared_path": str(work / "prepared"),
        "deepspeed": "zero3",
        "sequence_len": 128,
        "sample_packing": True,
        "micro_batch_size": 2,
        "max_steps": 2,
        "save_steps": 2,
        "datasets": [
            {
                "path": str(REPO / "configs/examples/data/chat.jsonl"),
                "type": "chat_template",
                "field_messages": "conversations",
                "message_property_mappings": {"role": "from", "content": "value"},
            }
        ],
    }
    (work / "train.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "hpcft.trainer",
            "train",
            str(work / "train.yaml"),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    return work / "out" / "checkpoint-2"


def conversion_seconds(checkpoint: Path, repeats: int) -> tuple[list[float], int]:
    from hpcft.core.schema import TrainConfig
    from hpcft.trainer.loop.elastic import convert_to_universal, plan_resume

    cfg = TrainConfig.model_validate(
        {"base_model": "x", "datasets": [{"path": "x", "type": "completion"}], "micro_batch_size": 2}
    )
    times = []
    for _ in range(repeats):
        shutil.rmtree(checkpoint / "global_step2_universal", ignore_errors=True)
        (checkpoint / "latest_universal").unlink(missing_ok=True)
        times.append(convert_to_universal(plan_resume(cfg, checkpoint, world_size=1)).seconds)
    size = sum(p.stat().st_size for p in (checkpoint / "global_step2").rglob("*") if p.is_file())
    return times, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--tokens-per-s",
        type=float,
        default=310_126,
        help="tokenize+mask+pack throughput of one process (bench/preprocess.py, RESULTS.md)",
    )
    parser.add_argument("--dataset-tokens", type=float, default=1e9, help="tokens in the training data")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = tiny_checkpoint(Path(tmp))
        times, size = conversion_seconds(checkpoint, args.repeats)
    record(
        "elastic_resume (ZeRO-3 -> universal conversion)",
        ["checkpoint", "ZeRO files", "conversion s (median)", "min / max s"],
        [
            [
                "tiny Llama, 2 ranks -> 1",
                f"{size / 2**20:.1f} MiB",
                f"{statistics.median(times):.2f}",
                f"{min(times):.2f} / {max(times):.2f}",
            ]
        ],
        notes=f"{args.repeats} conversions of the same checkpoint with ds_to_universal (1 worker), as a resume "
        "on another world size runs it on rank 0 before loading",
        packages=["deepspeed", "torch"],
    )

    # The CSCS tutorial's job: 4 nodes x 4 GH200 GPUs, dataset_processes 64. Inline, every GPU of the allocation
    # waits while the data is tokenized and packed; a preprocessing job does it on one CPU node first.
    gpus, processes = 16, 64
    rows = []
    for procs in (1, processes):
        seconds = args.dataset_tokens / (args.tokens_per_s * procs)
        rows.append([f"{procs}", f"{seconds / 60:,.1f} min", f"{seconds * gpus / 3600:,.2f}"])
    record(
        "elastic_resume (GPU-hours saved by a preprocessing job)",
        ["tokenizing processes", "preprocessing wall time", "GPU-hours idle inline (16 GPUs)"],
        rows,
        notes=f"Arithmetic: {args.dataset_tokens:,.0f} tokens (an assumed dataset size: the tutorial states "
        f"none) / ({args.tokens_per_s:,.0f} tokens/s per process, measured by bench/preprocess.py on this "
        "machine with the tiny BPE tokenizer) / processes x 16 GPUs (the tutorial's 4 nodes x 4 GPUs; it "
        "sets dataset_processes 64). Inline, these GPU-hours are spent on every fresh cache (per job); a "
        "preprocessing job spends CPU-node time instead and none of the GPUs' allocation. A real "
        "tokenizer (131k-entry vocabulary, chat template rendering) is slower than the tiny one, so these "
        "are lower bounds.",
    )


if __name__ == "__main__":
    main()
