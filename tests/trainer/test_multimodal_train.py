"""A tiny Qwen2.5-VL LoRA run on CPU in one process (`python -m hpcft.trainer train`) that learns the colour of the
shape drawn in each image: every row asks the same question, so only the image can tell the answer."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

from hpcft.core.schema import TrainConfig
from hpcft.trainer.tiny_vlm import COLOURS, SHAPES, draw_shape

QUESTION = "What colour is it?"
LORA_ON_LANGUAGE_MODEL = r"model.language_model.layers.[\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj"


def colour_data(folder: Path, rows: int = 32) -> Path:
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(rows):
        colour, shape = list(COLOURS)[i % len(COLOURS)], SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        draw_shape(colour, shape).save(folder / "images" / f"{i}.png")
        question = [{"type": "image", "path": f"images/{i}.png"}, {"type": "text", "text": QUESTION}]
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": colour}]
        lines.append(json.dumps({"messages": messages}) + "\n")
    (folder / "colours.jsonl").write_text("".join(lines))
    return folder / "colours.jsonl"


def vlm_config(model: Path, data: Path, output_dir: Path, **extra) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "base_model": str(model),
            "processor_type": "AutoProcessor",
            "chat_template": "qwen2_vl",
            "skip_prepare_dataset": True,
            "remove_unused_columns": False,
            "sample_packing": False,
            "datasets": [{"path": str(data), "type": "chat_template"}],
            "dataset_prepared_path": str(output_dir.parent / "prepared"),
            "output_dir": str(output_dir),
            "sequence_len": 256,
            "micro_batch_size": 4,
            "max_steps": 60,
            "learning_rate": 1e-2,
            "warmup_steps": 5,
            "logging_steps": 5,
            "save_steps": 1000,
            "adapter": "lora",
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_target_modules": LORA_ON_LANGUAGE_MODEL,
            # The random tiny model's output head is too small to reach low losses through LoRA alone.
            "lora_modules_to_save": ["lm_head"],
            **extra,
        }
    )


def test_a_lora_run_learns_the_colour_drawn(tiny_vlm_dir, tmp_path):
    data = colour_data(tmp_path / "data")
    cfg = vlm_config(tiny_vlm_dir, data, tmp_path / "out")
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg.training_dict()))
    run = subprocess.run(
        [sys.executable, "-m", "hpcft.trainer", "train", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    losses = [json.loads(line)["loss"] for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    # Text alone cannot beat guessing one of 4 colours: ln 4 over the answer's trained tokens (colour + end).
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm_dir)
    trained_tokens = sum(len(tokenizer.encode(c, add_special_tokens=False)) + 1 for c in COLOURS) / len(COLOURS)
    text_only_floor = math.log(len(COLOURS)) / trained_tokens
    assert losses[0] > 4.0 and losses[-1] < text_only_floor / 2, (losses, text_only_floor)
    assert (tmp_path / "out" / "processor_config.json").is_file()  # the merged model loads with its processor

    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "adapter_model.safetensors"), "pt") as saved:
        names = list(saved.keys())
    assert names and not any("visual" in name for name in names)  # the vision tower stays as it was
    assert_predicts_colours(tiny_vlm_dir, tmp_path / "out", cfg)

    from hpcft.trainer.merge_lora import merge_lora

    merged = merge_lora(config)  # the merged model is served with its processor
    assert (merged / "model.safetensors").is_file() and (merged / "processor_config.json").is_file()
    from transformers import AutoModelForImageTextToText

    assert type(AutoModelForImageTextToText.from_pretrained(merged)).__name__ == "Qwen2_5_VLForConditionalGeneration"


def assert_predicts_colours(base: Path, adapter: Path, cfg: TrainConfig) -> None:
    """Greedy next token after the prompt, for a fresh image of each colour, is that colour."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from hpcft.trainer.model.multimodal_model import load_processor

    processor = load_processor(cfg)
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), adapter).eval()
    for colour in COLOURS:
        prompt = (
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|><|image_pad|><|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
        )
        inputs = processor(text=[prompt], images=[draw_shape(colour, "circle")], return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        first = processor.tokenizer.encode(colour, add_special_tokens=False)[0]
        assert int(logits.argmax()) == first, colour


def test_freeze_mm_modules_freezes_what_plan_counts_as_the_vision_tower(tiny_vlm_dir, tmp_path):
    """Full fine-tuning with freeze_mm_modules: the frozen parameters are the tower and projector plan sizes from
    config.json; a LoRA list that names the tower's layers gets them frozen too (axolotl freezes after the adapter)."""
    from hpcft.core.model_size import model_shape
    from hpcft.trainer.loop.args import resolve_precision
    from hpcft.trainer.model.loading import load_model
    from hpcft.trainer.model.multimodal_model import is_vision_module, load_processor

    data = colour_data(tmp_path / "data", rows=1)
    full = vlm_config(
        tiny_vlm_dir, data, tmp_path / "out", adapter=None, lora_modules_to_save=None, freeze_mm_modules=True
    )
    full = full.model_copy(update={"lora_target_modules": None})
    model = load_model(full, load_processor(full), resolve_precision(full))
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == model_shape(str(tiny_vlm_dir)).vision_parameters
    assert all(p.requires_grad for n, p in model.named_parameters() if not is_vision_module(n))

    lora = vlm_config(
        tiny_vlm_dir, data, tmp_path / "out", lora_target_modules=["qkv", "q_proj"], freeze_mm_modules=True
    )
    model = load_model(lora, load_processor(lora), resolve_precision(lora))
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("language_model" in n and "lora_A" in n for n in trained)
    assert not any(is_vision_module(n) for n in trained)  # the tower's qkv got LoRA layers, frozen
    assert any(is_vision_module(n) and "lora_A" in n for n, _ in model.named_parameters())
