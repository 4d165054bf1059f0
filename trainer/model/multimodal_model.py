"""Vision language models: their processor, the model class to load them with, and which parts train."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
from transformers.utils import is_torchvision_available

from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig

log = logging.getLogger(__name__)

IMAGE_TEXT_MODEL = "AutoModelForImageTextToText"
# Module-name parts of vision/audio encoders and projectors: axolotl's list for freeze_mm_modules.
VISION_MODULES = (
    "vision_tower",
    "vision_model",
    "vision_encoder",
    "embed_vision",
    "multi_modal_projector",
    "visual",
    "audio_tower",
    "audio_model",
    "embed_audio",
)


def load_processor(cfg: TrainConfig) -> Any:
    """The model's processor (tokenizer + image processor) with processor_kwargs. Without torchvision (the CPU
    wheels these tests run on) a processor's video part cannot be built; images need none of it, so the
    processor is then built from its image processor's PIL backend and the tokenizer alone."""
    source = cfg.tokenizer_config or cfg.base_model
    kwargs = {"trust_remote_code": cfg.trust_remote_code, "revision": cfg.model_revision}
    extra = dict(cfg.processor_kwargs or {})
    if is_torchvision_available():
        if cfg.processor_type == "AutoProcessor":
            return AutoProcessor.from_pretrained(source, **kwargs, **extra)
        return _processor_class(cfg.processor_type).from_pretrained(source, **kwargs, **extra)
    model_type = AutoConfig.from_pretrained(cfg.base_model, **kwargs).model_type
    name = cfg.processor_type if cfg.processor_type != "AutoProcessor" else PROCESSOR_MAPPING_NAMES.get(model_type)
    if not name:
        raise ConfigError(f"base_model {cfg.base_model}: model_type '{model_type}' has no processor in transformers")
    image_only = _without_video(_processor_class(name))
    image_processor = AutoImageProcessor.from_pretrained(source, backend="pil", **kwargs, **extra)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    return image_only.from_pretrained(source, image_processor=image_processor, tokenizer=tokenizer, **kwargs)


def _processor_class(name: str) -> type:
    cls = getattr(transformers, name, None)
    if cls is None:
        raise ConfigError(f"processor_type: '{name}' is not a transformers processor class; use AutoProcessor")
    return cls


def _without_video(cls: type) -> type:
    """`cls` with only an image processor and a tokenizer: transformers builds a processor from the parts its
    __init__ names, and the video part would need torchvision."""
    if "video_processor" not in inspect.signature(cls.__init__).parameters:
        return cls

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):  # noqa: N807
        cls.__init__(self, image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)

    return type(cls.__name__, (cls,), {"__init__": __init__})


def model_class_name(cfg: TrainConfig) -> str:
    """With processor_type the default class is the image-text one (axolotl loads these models the same way)."""
    if cfg.processor_type and cfg.model_type == "AutoModelForCausalLM":
        return IMAGE_TEXT_MODEL
    return cfg.model_type


def is_vision_module(name: str) -> bool:
    return any(part in name.split(".") for part in VISION_MODULES)


def freeze_vision_tower(cfg: TrainConfig, model: torch.nn.Module) -> int:
    """freeze_mm_modules: every parameter of the vision tower and projector stays as it is (a LoRA layer put into
    them by lora_target_modules too, as axolotl freezes after the adapter); returns how many were frozen."""
    if not (cfg.processor_type and cfg.freeze_mm_modules):
        return 0
    frozen = 0
    for name, param in model.named_parameters():
        if is_vision_module(name) and param.requires_grad:
            param.requires_grad_(False)
            frozen += param.numel()
    log.info("freeze_mm_modules: froze %d parameters of the vision tower and projector", frozen)
    return frozen


def text_tokenizer(tokenizer_or_processor: Any) -> Any:
    """The tokenizer inside a processor (or the tokenizer itself). Only a processor is unwrapped: hpcft's
    mistral-common tokenizer also holds a `.tokenizer` (Mistral's own), which is not a transformers tokenizer."""
    if hasattr(tokenizer_or_processor, "image_processor") or hasattr(tokenizer_or_processor, "feature_extractor"):
        return tokenizer_or_processor.tokenizer
    return tokenizer_or_processor
