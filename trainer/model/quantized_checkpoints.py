"""model_quantization_config: load a pre-quantised checkpoint (gpt-oss's MXFP4, FP8) with the transformers
quantisation config class the key names, built with model_quantization_config_kwargs (e.g. dequantize: true)."""

from __future__ import annotations

import logging
from typing import Any

import transformers

from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")


def checkpoint_quantization(cfg: TrainConfig) -> dict[str, Any]:
    """The from_pretrained keyword arguments for the config's quantisation class (none when it names none).
    The class name and its arguments were checked on the login node (core/features/model_loading.py)."""
    if not cfg.model_quantization_config:
        return {}
    config_cls = getattr(transformers, cfg.model_quantization_config)
    kwargs = dict(cfg.model_quantization_config_kwargs or {})
    log.info("model_quantization_config: loading %s with %s(%s)", cfg.base_model, config_cls.__name__, kwargs)
    return {"quantization_config": config_cls(**kwargs)}
