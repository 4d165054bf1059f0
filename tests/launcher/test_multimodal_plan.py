"""`hpcft plan` for vision language models: parameters from config.json alone (vision tower and projector included)
equal a model built on the meta device from the same config, LoRA counted on the language model, image tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcft.core.model_size import model_shape
from hpcft.core.multimodal_plan import image_tokens

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# The published configs' sizes (Qwen/Qwen2.5-VL-7B-Instruct, llava-hf/llava-1.5-7b-hf).
QWEN25_VL_7B = {
    "text_config": {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    },
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
    "tie_word_embeddings": False,
}
LLAVA_15_7B = {
    "text_config": {"vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32},
    "vision_config": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 336,
        "patch_size": 14,
        "projection_dim": 768,
    },
    "vision_feature_layer": -2,
}


def _meta_count(config) -> int:
    with torch.device("meta"):
        model = transformers.AutoModelForImageTextToText.from_config(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("config_cls", "values"),
    [("Qwen2_5_VLConfig", QWEN25_VL_7B), ("LlavaConfig", LLAVA_15_7B)],
    ids=["qwen2.5-vl-7b", "llava-1.5-7b"],
)
def test_parameters_with_the_vision_tower_equal_the_built_model(config_cls, values, tmp_path):
    config = getattr(transformers, config_cls)(**values)
    (tmp_path / "config.json").write_text(config.to_json_string())
    shape = model_shape(str(tmp_path))
    assert shape.vision_parameters > 0
    assert shape.total_parameters == _meta_count(config)


def test_the_plan_counts_lora_on_the_language_model_and_names_the_image_tokens(tmp_path, run_cli):
    config = transformers.Qwen2_5_VLConfig(**QWEN25_VL_7B)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(config.to_json_string())
    (model / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "Qwen2VLImageProcessor",
                "patch_size": 14,
                "merge_size": 2,
                "max_pixels": 12845056,
                "min_pixels": 3136,
            }
        )
    )
    (tmp_path / "d.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    (tmp_path / "cfg.yaml").write_text(
        f"base_model: {model}\nprocessor_type: AutoProcessor\nchat_template: qwen2_vl\n"
        "datasets:\n  - path: d.jsonl\n    type: chat_template\nadapter: lora\nlora_r: 32\n"
        "lora_target_modules: 'model.language_model.layers.[\\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj'\n"
        "sequence_len: 8192\n"
    )
    result = run_cli("plan", "--profile", "local", tmp_path / "cfg.yaml", cwd=tmp_path)
    assert result.code == 0, result.err
    with torch.device("meta"):
        built = transformers.AutoModelForImageTextToText.from_config(config)
    lora = sum(
        32 * (m.in_features + m.out_features)
        for name, m in built.named_modules()
        if isinstance(m, torch.nn.Linear) and ".language_model.layers." in name and not name.endswith("lm_head")
    )
    assert f"trainable {lora:,} " in result.out, result.out
    vision = model_shape(str(model)).vision_parameters
    assert f"vision tower and projector: {vision / 1e6:.1f}M parameters, frozen" in result.out
    # 12845056 pixels / (14 px patches merged 2x2) = 16384 tokens at the most; image_size 448 makes it 16 x 16.
    assert "an image becomes up to 16384 tokens of the sequence_len 8192" in result.out
    assert image_tokens(str(model), 448) == 256


def test_llava_image_tokens(tmp_path):
    (tmp_path / "processor_config.json").write_text(
        json.dumps(
            {
                "patch_size": 14,
                "image_processor": {
                    "image_processor_type": "CLIPImageProcessor",
                    "crop_size": {"height": 336, "width": 336},
                },
            }
        )
    )
    assert image_tokens(str(tmp_path), None) == 576
    assert image_tokens(str(Path(tmp_path) / "missing"), None) is None
