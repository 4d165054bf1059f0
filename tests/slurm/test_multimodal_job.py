"""A vision language model on the local two-node cluster with the real trainer: a tiny random Qwen2.5-VL (LoRA on the
language model, ZeRO-3 on CPU) learns the colour drawn in each image through `hpcft submit --follow`, a requeue at
the time limit resumes without repeating a step, and a dataset with a corrupt image and an unreachable URL fails
the preprocessing job with file and row named while the training job never starts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trainer"))
from test_multimodal_train import colour_data, vlm_config  # noqa: E402


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-vlm")
    made = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from hpcft.trainer.tiny_vlm import make_tiny_qwen25_vl; make_tiny_qwen25_vl({str(path)!r})",
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    return path


def write_config(root: Path, model: Path, data: Path, **extra) -> Path:
    cfg = vlm_config(model, data, root / "out", **extra).training_dict()
    cfg.update(
        deepspeed="zero3",
        bf16=False,
        micro_batch_size=2,
        max_steps=30,
        save_steps=10,
        logging_steps=1,
        launch={"job_name": "tiny-vlm", "nodes": 2, "time": "00:10:00"},
    )
    path = root / "vlm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_node_zero3_lora_learns_the_colour_and_resumes_after_a_requeue(tiny_vlm, real_workspace, run_cli):
    data = colour_data(real_workspace / "data")
    config = write_config(real_workspace, tiny_vlm, data)
    result = run_cli("submit", "--profile", "local", config, "--follow")
    assert result.code == 0, result.out[-4000:] + result.err
    assert "[hpcft data] preparing datasets into" in result.out  # images read by the preprocessing job
    got = metrics(real_workspace / "out")
    assert [m["step"] for m in got] == list(range(1, 31))
    assert got[-1]["loss"] < 0.25 * got[0]["loss"], [m["loss"] for m in got]

    # The same run cut by the time limit: checkpoint, requeue, resume; every step trained exactly once.
    out = real_workspace / "requeued"
    result = run_cli(
        "submit",
        "--profile",
        "local",
        config,
        "--follow",
        f"output_dir={out}",
        "launch.time='00:02:00'",
        "launch.signal_grace=60",
        "launch.env.HPCFT_FAULT_STEP_SLEEP='2.5'",
    )
    assert result.code == 0, result.out[-4000:] + result.err
    assert re.search(r"resuming from \S+/checkpoint-\d+", result.out), result.out[-3000:]
    resumed = metrics(out)
    assert [m["step"] for m in resumed] == list(range(1, 31))
    assert [m["loss"] for m in resumed] == pytest.approx([m["loss"] for m in got], rel=1e-4)


def test_a_corrupt_image_and_an_unreachable_url_fail_preprocessing_and_training_never_starts(
    tiny_vlm, real_workspace, run_cli
):
    data = colour_data(real_workspace / "data", rows=8)
    images = data.parent / "images"
    (images / "3.png").write_bytes((images / "3.png").read_bytes()[:50])  # cut short, as a failed copy leaves it
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[5]["messages"][0]["content"][0] = {"type": "image", "url": "http://127.0.0.1:9/6.png"}
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = write_config(real_workspace, tiny_vlm, data)

    result = run_cli("submit", "--profile", "local", config, "--follow")
    assert result.code != 0
    pre_id = re.search(r"submitted preprocessing job (\d+)", result.out).group(1)
    train_id = re.search(r"submitted job (\d+)", result.out).group(1)
    assert "2 rows cannot be used" in result.out, result.out[-3000:]
    assert f"row 4: {images / '3.png'} is not a readable image" in result.out
    assert "row 6: cannot download http://127.0.0.1:9/6.png" in result.out
    assert f"preprocessing job {pre_id} FAILED" in result.err and "cancelled without starting" in result.err
    state = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", train_id, "-o", "State"], capture_output=True, text=True, check=True
    ).stdout
    assert state.startswith("CANCELLED"), state
    assert not (real_workspace / "out" / "metrics.jsonl").exists()
