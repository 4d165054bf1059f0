"""`hpcft plan` for vision language models, from config.json alone (torch-free): the language model's shape from
its `text_config`, the vision tower's and projector's parameters, and how many tokens one image becomes.

Counted exactly (tests compare with models built on the meta device): Qwen2.5-VL and LLaVA (CLIP tower). Other
families are sized by their language model, and the plan says the vision tower is not counted.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hpcft.core.model_size import ModelShape, shape_from_config

# The text model of each family, as the families model_size.py counts.
TEXT_FAMILY = {"qwen2_5_vl": "qwen2", "qwen2_vl": "qwen2", "llava": "llama", "mistral3": "mistral"}


def is_vision_config(config: dict[str, Any]) -> bool:
    return isinstance(config.get("text_config"), dict) and isinstance(config.get("vision_config"), dict)


def vision_language_shape(config: dict[str, Any], source: str = "") -> ModelShape:
    """The language model's shape, with the vision tower and projector as extra (frozen or trained) parameters."""
    text = dict(config["text_config"])
    text["model_type"] = TEXT_FAMILY.get(config.get("model_type", ""), text.get("model_type", ""))
    text.setdefault("tie_word_embeddings", config.get("tie_word_embeddings", False))
    shape = shape_from_config(text, source)
    return dataclasses.replace(shape, vision_parameters=vision_parameters(config) or 0)


def vision_parameters(config: dict[str, Any]) -> int | None:
    """Parameters of the vision tower plus its projector into the language model (None: family not counted)."""
    vision, model_type = config["vision_config"], config.get("model_type")
    if model_type == "qwen2_5_vl":
        return _qwen25_vision(vision)
    if model_type == "llava" and vision.get("model_type", "clip_vision_model") == "clip_vision_model":
        return _clip_vision(vision) + _llava_projector(config, vision)
    return None


def _qwen25_vision(v: dict[str, Any]) -> int:
    h, i, out = v["hidden_size"], v["intermediate_size"], v["out_hidden_size"]
    patch = v.get("in_channels", 3) * v["temporal_patch_size"] * v["patch_size"] ** 2 * h  # Conv3d, no bias
    block = 2 * h + (3 * h * h + 3 * h) + (h * h + h) + 2 * (h * i + i) + (i * h + h)  # norms, qkv, proj, gated MLP
    merged = h * v["spatial_merge_size"] ** 2
    merger = h + (merged * merged + merged) + (merged * out + out)  # ln_q, then a 2-layer MLP
    return patch + v["depth"] * block + merger


def _clip_vision(v: dict[str, Any]) -> int:
    h, i, p = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    positions = (v["image_size"] // p) ** 2 + 1  # the patches and the class token
    embeddings = h + v.get("num_channels", 3) * p * p * h + positions * h
    layer = 4 * h + 4 * (h * h + h) + (h * i + i) + (i * h + h)  # two LayerNorms, q/k/v/out, fc1/fc2
    return embeddings + 2 * h + v["num_hidden_layers"] * layer + 2 * h  # pre- and post-LayerNorm


def _llava_projector(config: dict[str, Any], v: dict[str, Any]) -> int:
    layers = config.get("vision_feature_layer", -2)
    vision_in = v["hidden_size"] * (len(layers) if isinstance(layers, list) else 1)
    text_h = config["text_config"]["hidden_size"]
    bias = config.get("multimodal_projector_bias", True)
    return vision_in * text_h + text_h * text_h + (2 * text_h if bias else 0)


def image_tokens(model_dir: str, image_size: int | tuple[int, int] | None) -> int | None:
    """Tokens one image becomes (the largest the processor makes), from the model folder's processor config; None
    when it is not on this machine or the processor is not one of those counted."""
    processor = _processor_config(Path(model_dir).expanduser())
    if processor is None:
        return None
    kind = processor.get("image_processor_type", "")
    patch = int(processor.get("patch_size", 14))
    if kind.startswith("Qwen2VLImageProcessor"):
        merge = int(processor.get("merge_size", 2))
        if image_size is not None:
            width, height = (image_size, image_size) if isinstance(image_size, int) else image_size
            return -(-width // (patch * merge)) * -(-height // (patch * merge))
        size = processor.get("size") or {}
        max_pixels = processor.get("max_pixels") or size.get("longest_edge")
        return int(max_pixels) // (patch * patch * merge * merge) if max_pixels else None
    if kind.startswith("CLIPImageProcessor"):
        crop = processor.get("crop_size") or {}
        side = crop.get("height") or (processor.get("size") or {}).get("shortest_edge")
        return (int(side) // patch) ** 2 if side else None
    return None


def _processor_config(folder: Path) -> dict[str, Any] | None:
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text())
            return {**data, **data.get("image_processor", {})}  # a processor_config.json nests it
    return None


def plan_notes(cfg: Any, shape: ModelShape) -> list[str]:
    """What the plan says about the images: the vision tower's size and whether it trains, image tokens."""
    if not cfg.processor_type:
        return []
    notes = []
    if shape.vision_parameters:
        trains = not cfg.adapter and not cfg.freeze_mm_modules
        notes.append(
            f"vision tower and projector: {shape.vision_parameters / 1e6:.1f}M parameters, "
            + ("trained with the rest" if trains else "frozen")
        )
    else:
        notes.append("the vision tower of this family is not counted; the figures are the language model's")
    tokens = image_tokens(cfg.base_model, cfg.image_size)
    if tokens:
        notes.append(
            f"an image becomes up to {tokens} tokens of the sequence_len {cfg.sequence_len} (longer samples are "
            "dropped); set image_size or processor_kwargs max_pixels to make images cheaper"
        )
    return notes
