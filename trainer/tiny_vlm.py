"""Tiny random vision language models (2 text layers of width 64, 2-block vision towers) and their processors, built
offline: Qwen2-VL, Qwen2.5-VL, LLaVA, Idefics3 and Gemma 3, for tests, the bench and the local-cluster run (no Hub)."""

from __future__ import annotations

from pathlib import Path

from hpcft.trainer.tiny import make_tiny_tokenizer

QWEN_VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
SHAPES = ("square", "circle")


def make_tiny_qwen25_vl(out_dir: str | Path, seed: int = 0, image_px: int = 56, version: str = "2.5"):
    """Save a random Qwen2_5_VLForConditionalGeneration (version "2": Qwen2VLForConditionalGeneration), the tiny
    tokenizer with Qwen's vision tokens and a Qwen2-VL image processor (images of at most image_px x image_px: 4
    image tokens at 56 px) into out_dir."""
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out_dir = Path(out_dir)
    tokenizer = make_tiny_tokenizer(out_dir)
    tokenizer.add_tokens(QWEN_VISION_TOKENS, special_tokens=True)
    tokenizer.save_pretrained(str(out_dir))
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_VISION_TOKENS}
    pixels = image_px * image_px
    Qwen2VLImageProcessorPil(
        min_pixels=28 * 28, max_pixels=pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    ).save_pretrained(str(out_dir))
    prefix = "Qwen2_5_VL" if version == "2.5" else "Qwen2VL"
    # Qwen2-VL's tower is a plain ViT (LayerNorm, fc1/fc2); Qwen2.5-VL's has RMSNorm, a gated MLP, window attention.
    tower = (
        {"hidden_size": 32, "intermediate_size": 64, "out_hidden_size": 64, "window_size": 56}
        if version == "2.5"
        else {"embed_dim": 32, "mlp_ratio": 2, "hidden_size": 64}
    )
    config = getattr(transformers, f"{prefix}Config")(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 2,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "fullatt_block_indexes": [1],
            **tower,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, f"{prefix}ForConditionalGeneration")(config)
    model.save_pretrained(str(out_dir))
    return model


def make_tiny_llava(out_dir: str | Path, seed: int = 0, image_px: int = 56):
    """Save a random LlavaForConditionalGeneration (CLIP vision tower, Llama text model), the tiny tokenizer with
    `<image>` and a CLIP image processor (image_px square: 16 image tokens at 56 px) into out_dir."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out_dir = Path(out_dir)
    tokenizer = make_tiny_tokenizer(out_dir)
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_px}, crop_size={"height": image_px, "width": image_px}
    )
    LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, which the "default" strategy drops
    ).save_pretrained(str(out_dir))
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_px,
        patch_size=14,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.save_pretrained(str(out_dir))
    return model


def make_tiny_idefics3(out_dir: str | Path, seed: int = 0, image_px: int = 56):
    """Save a random Idefics3ForConditionalGeneration (SmolVLM's architecture: SigLIP-style tower, pixel-shuffle
    connector: 4 tokens per image at 56 px), the tiny tokenizer with its image tokens and an Idefics3 image processor
    that does not split images into tiles into out_dir."""
    import torch
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    out_dir = Path(out_dir)
    tokenizer = make_tiny_tokenizer(out_dir)
    tokenizer.add_tokens(
        ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"], special_tokens=True
    )
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": image_px}, max_image_size={"longest_edge": image_px}, do_image_splitting=False
    )
    Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4).save_pretrained(
        str(out_dir)
    )
    config = Idefics3Config(
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_px,
            "patch_size": 14,
        },
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    model.save_pretrained(str(out_dir))
    return model


GEMMA3_IMAGE_TOKENS = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}


def make_tiny_gemma3(out_dir: str | Path, seed: int = 0, image_px: int = 56):
    """Save a random Gemma3ForConditionalGeneration (SigLIP tower pooled to 4 tokens per image), the tiny tokenizer
    with Gemma's image and turn tokens, and a Gemma 3 image processor into out_dir."""
    import torch
    from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    out_dir = Path(out_dir)
    tokenizer = make_tiny_tokenizer(out_dir)
    tokenizer.add_tokens([*GEMMA3_IMAGE_TOKENS.values(), "<start_of_turn>", "<end_of_turn>"], special_tokens=True)
    tokenizer.save_pretrained(str(out_dir))
    # Gemma's processor reads its image tokens from the tokenizer's named special tokens.
    tokenizer = AutoTokenizer.from_pretrained(out_dir, extra_special_tokens=GEMMA3_IMAGE_TOKENS)
    image_processor = Gemma3ImageProcessorPil(size={"height": image_px, "width": image_px})
    Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4).save_pretrained(
        str(out_dir)
    )
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in GEMMA3_IMAGE_TOKENS.items()}
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "sliding_window": 64,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_px,
            "patch_size": 14,
        },
        mm_tokens_per_image=4,
        boi_token_index=ids["boi_token"],
        eoi_token_index=ids["eoi_token"],
        image_token_index=ids["image_token"],
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config)
    model.save_pretrained(str(out_dir))
    return model


def draw_shape(colour: str, shape: str, size: int = 56):
    """An image of one coloured shape on white (PIL)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    box = (size // 6, size // 6, size - size // 6, size - size // 6)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])
    return image


def make_tiny_qwen2_vl(out_dir: str | Path, seed: int = 0, image_px: int = 56):
    """make_tiny_qwen25_vl's Qwen2-VL (the first version: a plain ViT tower)."""
    return make_tiny_qwen25_vl(out_dir, seed=seed, image_px=image_px, version="2")
