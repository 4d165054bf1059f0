"""axolotl's streamed pretraining example (examples/streaming/pretrain.yaml, its keys unchanged; the model swapped
for the tiny random Llama and fineweb-edu for four local JSON-lines files) on the local two-node cluster through
`hpcft submit --follow`: no preprocessing job is queued, and each rank trains on rows of its own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hpcft.trainer.reporting.sample_record import read_sample_record

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

STREAMING_PRETRAIN = Path(__file__).resolve().parents[1] / "data" / "axolotl_style" / "streaming-pretrain.yaml"


def test_axolotl_streaming_pretrain_example_runs_on_two_nodes(tiny_cpu, real_workspace, run_cli):
    model = tiny_cpu.parent / "tiny-assets" / "model"
    data = real_workspace / "fineweb"
    data.mkdir()
    for part in range(4):
        rows = [{"text": f"Part {part}, text {i}: the cow says moo and the dog says woof."} for i in range(40)]
        (data / f"part-{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = real_workspace / "pretrain.yaml"
    config.write_text(STREAMING_PRETRAIN.read_text())
    samples = real_workspace / "samples"
    tiny = [
        f"base_model={model}",
        f"pretraining_dataset.0.path={data}",
        "pretraining_dataset.0.name=null",
        "special_tokens=null",
        "sequence_len=64",
        "gradient_accumulation_steps=1",
        "micro_batch_size=2",
        "max_steps=4",
        "save_steps=2",
        "logging_steps=1",
        "streaming_multipack_buffer_size=50",
        "launch.nodes=2",
        "launch.time=00:10:00",
        f"launch.env.HPCFT_RECORD_SAMPLES={samples}",
    ]
    result = run_cli("submit", "--profile", "local", config, "--follow", *tiny)
    assert result.code == 0, result.out[-4000:] + result.err[-2000:]
    run_dir = next((real_workspace / "runs").rglob("manifest.json")).parent
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["preprocess"]["job_id"] is None
    assert manifest["preprocess"]["reason"].startswith("streaming:")
    trained = yaml.safe_load((run_dir / "train.yaml").read_text())
    assert trained["streaming"] is True and trained["datasets"][0]["type"] == "pretrain"
    output_dir = Path(trained["output_dir"])
    steps = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if "loss" in m] == [1, 2, 3, 4]
    # Two ranks, each on its own two files: no row is trained twice.
    per_rank = [
        {row for line in path.read_text().splitlines() for row in json.loads(line)["ids"]}
        for path in sorted(samples.glob("samples-rank*.jsonl"))
    ]
    assert len(per_rank) == 2 and all(per_rank) and per_rank[0].isdisjoint(per_rank[1])
    recorded = read_sample_record(samples)
    assert sorted(recorded) == [1, 2, 3, 4] and all(len(ids) == 4 for ids in recorded.values())
    assert (output_dir / "model.safetensors").is_file()
