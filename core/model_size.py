"""A model's size from its config.json alone (no weights, no torch): parameters, the largest layer, and what a
LoRA adapter on given modules adds. `hpcft plan` reads it on the login node.

The config comes from a local model folder, the Hugging Face cache, or a small built-in table of common models.
Counting follows the decoder-only families transformers builds the same way (Llama, Mistral, Qwen2, Qwen3,
Apertus); tests compare every count with a model built from the same config on the meta device.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcft.core.errors import ConfigError

# Per family: gated MLP (gate/up/down vs up/down), q/k norms, bias on q/k/v (and on o), extra scalars per layer
# (Apertus' xIELU activation has two), and head_dim when the config leaves it out.
_FAMILIES: dict[str, dict[str, Any]] = {
    "llama": {"gated": True, "qk_norm": False, "qkv_bias": None, "o_bias": None, "act_params": 0},
    "mistral": {"gated": True, "qk_norm": False, "qkv_bias": False, "o_bias": False, "act_params": 0},
    "qwen2": {"gated": True, "qk_norm": False, "qkv_bias": True, "o_bias": False, "act_params": 0},
    "qwen3": {"gated": True, "qk_norm": True, "qkv_bias": None, "o_bias": None, "act_params": 0, "head_dim": 128},
    "apertus": {"gated": False, "qk_norm": True, "qkv_bias": None, "o_bias": None, "act_params": 2},
}

# config.json fields of common models (what the published configs say), so `hpcft plan` works on a login node
# that has neither the model nor network access.
KNOWN_MODELS: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-3.2-1B": {
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "tie_word_embeddings": True,
    },
    "meta-llama/Llama-3.2-3B": {
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_hidden_layers": 28,
        "num_attention_heads": 24,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "tie_word_embeddings": True,
    },
    "meta-llama/Llama-3.1-8B": {
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
    "meta-llama/Llama-3.1-70B": {
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
    "mistralai/Mistral-7B-v0.1": {
        "model_type": "mistral",
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
    "Qwen/Qwen2.5-7B": {
        "model_type": "qwen2",
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "tie_word_embeddings": False,
    },
    "Qwen/Qwen3-8B": {
        "model_type": "qwen3",
        "vocab_size": 151936,
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "tie_word_embeddings": False,
    },
    "swiss-ai/Apertus-8B-2509": {
        "model_type": "apertus",
        "vocab_size": 131072,
        "hidden_size": 4096,
        "intermediate_size": 21504,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
    "swiss-ai/Apertus-70B-2509": {
        "model_type": "apertus",
        "vocab_size": 131072,
        "hidden_size": 8192,
        "intermediate_size": 43008,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
}
# Instruct and base variants share their architecture.
_ALIASES = {
    "swiss-ai/Apertus-8B-Instruct-2509": "swiss-ai/Apertus-8B-2509",
    "swiss-ai/Apertus-70B-Instruct-2509": "swiss-ai/Apertus-70B-2509",
    "meta-llama/Llama-3.1-8B-Instruct": "meta-llama/Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B-Instruct": "meta-llama/Llama-3.1-70B",
    "meta-llama/Llama-3.2-1B-Instruct": "meta-llama/Llama-3.2-1B",
    "meta-llama/Llama-3.2-3B-Instruct": "meta-llama/Llama-3.2-3B",
    "Qwen/Qwen2.5-7B-Instruct": "Qwen/Qwen2.5-7B",
}

LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """The sizes that decide parameter count, memory and compute of a decoder-only transformer."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    gated_mlp: bool
    qk_norm: bool
    act_params: int
    source: str = ""
    vision_parameters: int = 0  # a vision language model's tower and projector (core/multimodal_plan.py)

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each linear layer in one decoder layer."""
        h, q, kv, i = (
            self.hidden_size,
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
            self.intermediate_size,
        )
        shapes = {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }
        if self.gated_mlp:
            shapes["gate_proj"] = (h, i)
        return shapes

    def layer_parameters(self) -> int:
        """Parameters of one decoder layer: linears (with their biases), norms, activation scalars."""
        total = sum(a * b for a, b in self.linear_shapes().values())
        q, kv = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        if self.qkv_bias:
            total += q + 2 * kv
        if self.o_bias:
            total += self.hidden_size
        if self.mlp_bias:
            total += self.intermediate_size * (2 if self.gated_mlp else 1) + self.hidden_size
        total += 2 * self.hidden_size  # the two RMSNorms around attention and MLP
        if self.qk_norm:
            total += 2 * self.head_dim
        return total + self.act_params

    @property
    def embedding_parameters(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def total_parameters(self) -> int:
        """All parameters, a tied output head counted once (as `model.parameters()` yields it)."""
        head = 0 if self.tie_word_embeddings else self.embedding_parameters
        text = self.embedding_parameters + self.num_layers * self.layer_parameters() + self.hidden_size + head
        return text + self.vision_parameters

    @property
    def largest_layer_parameters(self) -> int:
        """Parameters of the largest single module (its own, not its children's): what ZeRO-3 gathers at once.
        As DeepSpeed's estimator counts it: the embedding (or output head) in practice."""
        linear = max(a * b for a, b in self.linear_shapes().values())
        return max(self.embedding_parameters, linear)

    def lora_parameters(self, rank: int, targets: list[str]) -> int:
        """Trainable parameters of a LoRA adapter of rank r on the named modules of every layer."""
        shapes = self.linear_shapes()
        unknown = [t for t in targets if t not in shapes]
        if unknown:
            raise ConfigError(
                f"lora_target_modules: {', '.join(unknown)} not in a {self.model_type} layer "
                f"(its linear layers: {', '.join(shapes)})"
            )
        return self.num_layers * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)

    def lora_targets(self, listed: list[str] | str | None, target_linear: bool) -> list[str]:
        """The module names a LoRA config adapts (lora_target_linear: every linear layer but the output head)."""
        if target_linear:
            return list(self.linear_shapes())
        if isinstance(listed, str):
            # peft reads a string as a regular expression over module paths: count the names it matches.
            return [
                name
                for name in self.linear_shapes()
                if any(
                    re.search(listed, f"{prefix}.layers.0.{part}.{name}")
                    for prefix in ("model", "model.language_model")  # a vision language model's text layers
                    for part in ("self_attn", "mlp")
                )
            ]
        return list(listed or [])


def shape_from_config(config: dict[str, Any], source: str = "") -> ModelShape:
    """A ModelShape from the fields of a config.json."""
    model_type = config.get("model_type", "")
    family = _FAMILIES.get(model_type)
    if family is None:
        raise ConfigError(
            f"{source or 'config.json'}: model_type '{model_type}' is not one hpcft plan can size "
            f"(known: {', '.join(_FAMILIES)})"
        )
    try:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        head_dim = config.get("head_dim") or family.get("head_dim") or hidden // heads
        attention_bias = bool(config.get("attention_bias", False))
        return ModelShape(
            model_type=model_type,
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(config["intermediate_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(head_dim),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=attention_bias if family["qkv_bias"] is None else family["qkv_bias"],
            o_bias=attention_bias if family["o_bias"] is None else family["o_bias"],
            mlp_bias=bool(config.get("mlp_bias", False)),
            gated_mlp=family["gated"],
            qk_norm=family["qk_norm"],
            act_params=family["act_params"],
            source=source,
        )
    except KeyError as exc:
        raise ConfigError(f"{source or 'config.json'}: no {exc.args[0]} in the model config") from None


def hub_cache_dirs() -> list[Path]:
    """Where huggingface_hub keeps downloaded models (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."""
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]) / "hub")
    dirs.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface" / "hub")
    return dirs


def find_model_config(name: str) -> tuple[dict[str, Any], str]:
    """The config.json of a model: a local folder, the Hugging Face cache, or the built-in table (in that order)."""
    local = Path(name).expanduser()
    if (local / "config.json").is_file():
        return _read_json(local / "config.json"), str(local / "config.json")
    if "/" in name and not name.startswith(("/", ".")):
        for cache in hub_cache_dirs():
            snapshots = cache / f"models--{name.replace('/', '--')}" / "snapshots"
            found = (
                sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
                if snapshots.is_dir()
                else []
            )
            if found:
                return _read_json(found[0]), str(found[0])
    known = _ALIASES.get(name, name)
    if known in KNOWN_MODELS:
        return dict(KNOWN_MODELS[known]), f"hpcft's table of common models ({known})"
    raise ConfigError(
        f"no config.json for '{name}': not a local folder, not in the Hugging Face cache "
        f"({', '.join(str(d) for d in hub_cache_dirs())}), not in hpcft's table of common models; "
        "download it (huggingface-cli download NAME config.json) or give --model-config PATH"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the model config ({exc})") from None


def model_shape(name: str) -> ModelShape:
    config, source = find_model_config(name)
    from hpcft.core.multimodal_plan import is_vision_config, vision_language_shape  # imports this module

    if is_vision_config(config):
        return vision_language_shape(config, source)
    return shape_from_config(config, source)
