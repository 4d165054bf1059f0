"""`merge-lora`: fold a trained LoRA adapter into its base model and save the full model under output_dir/merged."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import transformers
from peft import PeftModel
from transformers import AutoTokenizer

from hpcft.core.errors import ConfigError
from hpcft.core.yaml_config import load_train_yaml
from hpcft.trainer.loop.args import resolve_precision
from hpcft.trainer.loop.checkpoints import check_saved_weights
from hpcft.trainer.model.multimodal_model import load_processor, model_class_name
from hpcft.trainer.model.nvfp4_checkpoint import nvfp4_source, nvfp4_tensor_scales
from hpcft.trainer.model.nvfp4_merge_aware import snap_merged_model

log = logging.getLogger("hpcft.trainer")


def merge_lora(config_path: str | Path, lora_dir: str | Path | None = None, out_dir: str | Path | None = None) -> Path:
    """Merge the adapter in lora_dir (default: output_dir) into base_model; write safetensors to out_dir
    (default: output_dir/merged). The base is loaded unquantised (QLoRA too) in the training dtype."""
    cfg = load_train_yaml(config_path)
    lora_dir = Path(lora_dir or cfg.output_dir)
    out_dir = Path(out_dir or Path(cfg.output_dir) / "merged")
    if not (lora_dir / "adapter_config.json").is_file():
        raise ConfigError(f"merge-lora: no LoRA adapter (adapter_config.json) in {lora_dir}; pass --lora-dir")
    # The adapter folder holds the training tokenizer, added tokens included: the embeddings must match it.
    has_tokenizer = (lora_dir / "tokenizer_config.json").is_file()
    tokenizer_dir = lora_dir if has_tokenizer else cfg.tokenizer_config or cfg.base_model
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=cfg.trust_remote_code)
    dtype = resolve_precision(cfg).dtype
    model_cls = getattr(transformers, model_class_name(cfg))  # processor_type: AutoModelForImageTextToText
    head = {"num_labels": cfg.num_labels} if cfg.num_labels else {}  # a reward model's score head
    # An NVFP4 (ModelOpt) base merges into its dequantised 16-bit copy, as it was trained
    # (trainer/model/nvfp4_checkpoint.py).
    source = nvfp4_source(cfg.base_model, cfg.model_revision, dtype, cfg.adapter) or cfg.base_model
    base = model_cls.from_pretrained(
        source, dtype=dtype, trust_remote_code=cfg.trust_remote_code, revision=cfg.model_revision, **head
    )
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(len(tokenizer))
    with torch.no_grad():
        merged = PeftModel.from_pretrained(base, str(lora_dir)).merge_and_unload()
    if cfg.nvfp4_merge_aware:
        count = snap_merged_model(merged, nvfp4_tensor_scales(source))
        log.info("nvfp4_merge_aware: %d merged weights rounded onto their NVFP4 grid, as they were trained", count)
    merged.save_pretrained(str(out_dir))  # safetensors is transformers' only format
    # A vision language model is used with its processor (image processor and tokenizer), saved with it.
    (load_processor(cfg) if cfg.processor_type else tokenizer).save_pretrained(str(out_dir))
    check_saved_weights(out_dir)
    log.info("merged %s into %s -> %s", lora_dir, cfg.base_model, out_dir)
    return out_dir
