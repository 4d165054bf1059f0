"""A tiny, deterministic tokenizer and Llama model built offline: for tests and the README demo (no Hub)."""

from __future__ import annotations

import itertools
from pathlib import Path

from hpcft.core.chat_templates import chat_template_text

BOS, EOS, PAD = "<s>", "<|im_end|>", "<pad>"
IM_START = "<|im_start|>"

# ChatML (axolotl's `chatml`). EOS is <|im_end|> (as Qwen does) so that train_on_eos: turn trains the end of
# every assistant turn; the template itself adds no BOS.
CHATML_TEMPLATE = chat_template_text("chatml")

# The words of the example data (configs/examples/data/make_data.py builds its sentences from these).
NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
]
COLORS = {
    "sky": "blue",
    "grass": "green",
    "snow": "white",
    "coal": "black",
    "sun": "yellow",
    "blood": "red",
    "night": "dark",
    "orange": "orange",
}
ANIMALS = {"cat": "meow", "dog": "woof", "cow": "moo", "duck": "quack", "sheep": "baa", "owl": "hoot"}
FRUITS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum"]


def tiny_corpus() -> list[str]:
    """Sentences covering the example data's words and the alpaca/chat prompt words, built deterministically."""
    lines = [
        "Below is an instruction that describes a task, paired with an input that provides further context.",
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
        "### Instruction:\n### Input:\n### Response:\n",
        "You are a helpful assistant. You are a tiny assistant. Answer briefly.",
        "system user assistant human gpt tool",
        "system\nuser\nassistant\n",
    ]
    for a, b in itertools.product(range(10), repeat=2):
        lines.append(
            f"user\nWhat is {NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]}?\nassistant\n{NUMBER_WORDS[a]} plus "
            f"{NUMBER_WORDS[b]} is {NUMBER_WORDS[a + b]}. {a} + {b} = {a + b}."
        )
    for thing, color in COLORS.items():
        lines.append(f"What color is the {thing}?\nThe {thing} is {color}.")
    for animal, sound in ANIMALS.items():
        lines.append(f"What does the {animal} say?\nThe {animal} says {sound}.")
    for x, y in itertools.permutations(FRUITS, 2):
        lines.append(f"Repeat after me: {x} {y}.\n{x} {y}. Thank you! Hello, how are you? I am fine.")
    return lines


def make_tiny_tokenizer(out_dir: str | Path, vocab_size: int = 768):
    """Train a byte-level BPE tokenizer on `tiny_corpus()` and save it (with a ChatML chat_template) to out_dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, IM_START],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tiny_corpus(), trainer=trainer)
    # Plain text gets a BOS (as Llama tokenizers do); chat templates add their own special tokens.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, backend.token_to_id(BOS))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        chat_template=CHATML_TEMPLATE,
    )
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def make_tiny_model(out_dir: str | Path, vocab_size: int | None = None, seed: int = 0):
    """Save a random 2-layer LlamaForCausalLM (hidden 64) and the tiny tokenizer into out_dir; return the model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tiny_tokenizer(out_dir)
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out_dir))
    return model


def make_tiny_moe(out_dir: str | Path, seed: int = 0):
    """Save a random 2-layer Qwen3-MoE (hidden 64, 4 experts of which 2 per token, fused 3-D expert weights) and
    the tiny tokenizer into out_dir; return the model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = make_tiny_tokenizer(out_dir)
    config = AutoConfig.for_model(
        "qwen3_moe",
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        moe_intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_experts=4,
        num_experts_per_tok=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(str(out_dir))
    return model


def make_nvfp4_copy(source: str | Path, target: str | Path, in_config: bool = True) -> dict:
    """Copy the tiny model in source to target as an NVIDIA ModelOpt NVFP4 checkpoint: every 2-D *_proj weight
    (except the MoE router) quantised with torchao's NVFP4 quantiser and stored as ModelOpt does (`weight` uint8 e2m1
    pairs, `weight_scale` float8_e4m3fn per 16, `weight_scale_2` float32, `input_scale`), the settings in config.json's
    quantization_config (in_config) or in hf_quant_config.json. Returns the NVFP4-rounded weights (float32) by name."""
    import json
    import shutil

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale

    source, target = Path(source), Path(target)
    shutil.copytree(source, target)
    out, rounded = {}, {}
    with safe_open(str(source / "model.safetensors"), framework="pt") as f:
        for name in f.keys():
            tensor = f.get_tensor(name)
            base = name.removesuffix(".weight")
            if tensor.dim() != 2 or not base.endswith("_proj"):
                out[name] = tensor
                continue
            scale = per_tensor_amax_to_scale(tensor.float().abs().max())
            nvfp4 = NVFP4Tensor.to_nvfp4(tensor.float(), per_tensor_scale=scale)
            out[name] = nvfp4.qdata
            out[f"{base}.weight_scale"] = nvfp4.scale
            out[f"{base}.weight_scale_2"] = scale.reshape(())
            out[f"{base}.input_scale"] = torch.tensor(1.0)
            rounded[name] = nvfp4.dequantize(torch.float32)
    save_file(out, str(target / "model.safetensors"), metadata={"format": "pt"})
    # As in NVIDIA's releases: the output head and the MoE router (`mlp.gate`, not a *_proj) stay 16-bit.
    settings = {"quant_algo": "NVFP4", "group_size": 16, "exclude_modules": ["lm_head", "*mlp.gate"]}
    config = json.loads((target / "config.json").read_text())
    if in_config:
        config["quantization_config"] = {"quant_method": "modelopt", **settings}
    else:
        hf_quant = {"producer": {"name": "modelopt"}, "quantization": settings}
        (target / "hf_quant_config.json").write_text(json.dumps(hf_quant))
    (target / "config.json").write_text(json.dumps(config))
    return rounded
