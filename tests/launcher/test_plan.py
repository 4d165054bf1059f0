"""`hpcft plan`: the forecast a user reads before submitting (figures checked against the libraries in
tests/trainer/test_forecast_vs_libraries.py; here what the command prints and warns, torch-free)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hpcft.core.model_size import KNOWN_MODELS
from hpcft.launcher.estimates.forecast import tokens_per_s_per_gpu

DATA = Path(__file__).resolve().parents[1] / "data"
LLAMA_8B = KNOWN_MODELS["meta-llama/Llama-3.1-8B"]


def tutorial_args(workspace: Path) -> list[str]:
    """The CSCS tutorial's axolotl YAML as is, its data paths pointed at local files (as test_render does)."""
    shutil.copy(DATA / "tutorial" / "axolotl_apertus_8b.yaml", workspace / "tutorial.yaml")
    return [
        "plan",
        "--profile",
        "cscs",
        "--image",
        "/capstor/store/hpcft.sqsh",
        str(workspace / "tutorial.yaml"),
        "--nodes",
        "4",
        f"datasets.0.path={workspace}/data/chat.jsonl",
        f"datasets.1.path={workspace}/data/pretrain.jsonl",
        f"deepspeed={DATA}/tutorial/deepspeed.json",
        f"output_dir={workspace}/models/apertus",
        f"dataset_prepared_path={workspace}/prepared",
    ]


def figure(out: str, label: str) -> str:
    match = re.search(rf"^\s*{label}\s+(.*)$", out, re.M)
    assert match, f"no '{label}' line in:\n{out}"
    return match.group(1)


def test_tutorial_config_on_cscs_4_nodes(run_cli, workspace, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    result = run_cli(*tutorial_args(workspace), "--time", "11:59:59", cwd=workspace)
    assert result.code == 0, result.err
    out = result.out
    assert "4 node(s) x 4 GPUs = 16" in out
    assert figure(out, "parameters").startswith("8,053,338,176 (8.05B); trainable 8,053,338,176")
    assert "ZeRO-3 with optimizer offloaded to CPU" in out  # the tutorial's deepspeed.json
    # ZeRO-3, optimizer offloaded: 2 bytes/param of 16-bit weights over 16 GPUs stay on the GPU.
    assert figure(out, "weights").startswith(f"{2 * 8_053_338_176 / 16 / 2**30:6.1f} GiB".strip())
    assert figure(out, "optimizer states").startswith("0.0 GiB")
    assert "gradient checkpointing on" in out and "of 96 GiB (GH200): fits" in out
    assert figure(out, "global batch").startswith("256 = micro_batch_size 8 x gradient_accumulation_steps 2 x 16")
    assert figure(out, "tokens per step").startswith("524,288")
    assert "estimated from the files: 2 samples" in figure(out, "dataset")
    assert re.search(r"throughput\s+[\d,]+ tokens/s per GPU \(profile 'cscs' table for GH200\)", out)
    assert re.search(r"run\s+.*node-hours .*time limit 11:59:59", out)


def test_prepared_dataset_gives_the_steps(run_cli, workspace, monkeypatch):
    monkeypatch.setenv("USER", "alice")
    cache = workspace / "prepared" / "0123abcd"
    cache.mkdir(parents=True)
    (cache / "hpcft_stats.json").write_text(json.dumps({"train_rows": 512_000, "train_tokens": 1_040_000_000}))
    result = run_cli(*tutorial_args(workspace), cwd=workspace)
    assert result.code == 0, result.err
    assert f"prepared dataset {cache}" in result.out
    assert figure(result.out, "steps per epoch") == "2000"  # 512,000 rows / (8 x 16 GPUs) / 2 accumulation
    # 2000 steps of ~524k tokens at the GH200 table's rate is longer than the profile's one hour: requeues.
    assert re.search(
        r"warning: the run \(~.*\) is longer than the time limit 01:00:00: it needs \d+ requeue", result.out
    )


def write_model(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_model_that_does_not_fit_gets_changes_that_would(run_cli, workspace):
    write_model(workspace / "model", KNOWN_MODELS["meta-llama/Llama-3.1-70B"])
    result = run_cli(
        "plan",
        "--profile",
        "cscs",
        "--image",
        "/capstor/store/hpcft.sqsh",
        "cfg.yaml",
        "--nodes",
        "1",
        "deepspeed=zero2",
        "sequence_len=4096",
        cwd=workspace,
    )
    assert result.code == 0, result.err
    assert "from " + str(workspace / "model" / "config.json") in result.out
    assert "DOES NOT FIT" in result.out
    assert re.search(r"warning: will not fit: about [\d.]+ GiB per GPU needed, 96 GiB available", result.out)
    suggestions = result.out.split("to fit, one change at a time")[1]
    for change in ("gradient_checkpointing: true", "deepspeed: zero3", "zero3_offload", "--nodes 2"):
        assert change in suggestions
    # micro_batch_size 2 halves to 1 with accumulation doubled to 8: the global batch stays.
    assert "micro_batch_size: 1 with gradient_accumulation_steps: 8" in suggestions


def test_model_config_from_the_hugging_face_cache(run_cli, workspace, monkeypatch):
    hub = workspace / "hf" / "hub" / "models--acme--llama-8b" / "snapshots" / "abc123"
    write_model(hub, LLAMA_8B)
    monkeypatch.setenv("HF_HOME", str(workspace / "hf"))
    (workspace / "cfg.yaml").write_text((workspace / "cfg.yaml").read_text().replace("./model", "acme/llama-8b"))
    result = run_cli(
        "plan", "--profile", "pyxis", "--image", "nvcr.io#nvidia/pytorch:25.01-py3", "cfg.yaml", cwd=workspace
    )
    assert result.code == 0, result.err
    assert f"from {hub / 'config.json'}" in result.out
    assert "8,030,261,248" in result.out and "of 80 GiB (H100)" in result.out


def test_lora_counts_only_the_adapter_as_trainable(run_cli, workspace):
    write_model(workspace / "model", LLAMA_8B)
    result = run_cli(
        "plan",
        "--profile",
        "cscs",
        "--image",
        "/capstor/store/hpcft.sqsh",
        "cfg.yaml",
        "adapter=lora",
        "lora_r=16",
        "lora_target_modules=[q_proj,v_proj]",
        cwd=workspace,
    )
    assert result.code == 0, result.err
    # r x (in + out) per module per layer: q 4096+4096, v 4096+1024, over 32 layers.
    trainable = 32 * 16 * ((4096 + 4096) + (4096 + 1024))
    assert f"trainable {trainable:,} (0.08%, LoRA r=16)" in result.out


def test_global_batch_other_than_the_config_comment_says(run_cli, workspace):
    write_model(workspace / "model", LLAMA_8B)
    (workspace / "cfg.yaml").write_text(
        (workspace / "cfg.yaml").read_text() + "# global batch size 512 as in the paper\n"
    )
    result = run_cli(
        "plan", "--profile", "cscs", "--image", "/capstor/store/hpcft.sqsh", "cfg.yaml", "--nodes", "2", cwd=workspace
    )
    assert (
        "warning: the config's comment says global batch 512, but micro_batch_size 2 x "
        "gradient_accumulation_steps 4 x 8 GPUs = 64" in result.out
    )


def test_unknown_model_is_one_clear_error(run_cli, workspace):
    (workspace / "cfg.yaml").write_text((workspace / "cfg.yaml").read_text().replace("./model", "acme/unknown-7b"))
    result = run_cli("plan", "--profile", "cscs", "--image", "/capstor/store/hpcft.sqsh", "cfg.yaml", cwd=workspace)
    assert result.code == 2
    assert "no config.json for 'acme/unknown-7b'" in result.err and "--model-config" in result.err
    assert "Traceback" not in result.err


def test_tokens_per_s_table_interpolates_in_log_space():
    table = {1: 60000, 8: 8000, 70: 900}
    assert tokens_per_s_per_gpu(table, 8) == 8000
    assert 8000 < tokens_per_s_per_gpu(table, 7) < 60000 * 1 / 7 * 1.2
    assert tokens_per_s_per_gpu(table, 140) < 900  # extrapolated past the last entry
    assert tokens_per_s_per_gpu({}, 8) is None


def test_plan_imports_nothing_heavy(workspace):
    write_model(workspace / "model", LLAMA_8B)
    code = (
        "import sys; from hpcft.launcher.cli import main; "
        "code = main(['plan', '--profile', 'cscs', '--image', '/capstor/store/hpcft.sqsh', 'cfg.yaml']); "
        "heavy = [m for m in ('torch', 'transformers', 'deepspeed', 'submitit') if m in sys.modules]; "
        "print(heavy); sys.exit(code or (1 if heavy else 0))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workspace)
    assert result.returncode == 0, result.stdout + result.stderr


def test_qlora_keeps_a_4_bit_base_and_trains_the_adapter(run_cli, workspace):
    write_model(workspace / "model", LLAMA_8B)
    result = run_cli(
        "plan",
        "--profile",
        "cscs",
        "--image",
        "/capstor/store/hpcft.sqsh",
        "cfg.yaml",
        "--nodes",
        "1",
        "adapter=qlora",
        "load_in_4bit=true",
        "lora_target_linear=true",
        "lora_r=16",
        cwd=workspace,
    )
    assert result.code == 0, result.err
    assert "QLoRA (4-bit base) r=16" in result.out
    assert "ZeRO-2" in result.out  # QLoRA's default DeepSpeed preset
    # ZeRO-2 keeps the whole frozen base on every GPU: ~7B linear weights at ~0.52 bytes + embeddings in bf16.
    weights_gib = float(figure(result.out, "weights").split()[0])
    assert 4.5 < weights_gib < 6.0
