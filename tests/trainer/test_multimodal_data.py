"""Multimodal rows through a real tiny Qwen2.5-VL processor: tokens and labels pinned for the qwen2_vl template,
pixel values equal to the image processor's own, images from files, URLs, base64 and the legacy column, and every
unreadable image reported with its row before anything trains."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
from pathlib import Path

import pytest
import torch

from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig
from hpcft.trainer.data.formats import IGNORE_INDEX
from hpcft.trainer.data.multimodal_data import MEDIA, MultimodalFormatter, multimodal_collator, unpack_media
from hpcft.trainer.data.prepare import build_datasets
from hpcft.trainer.model.multimodal_model import load_processor
from hpcft.trainer.tiny_vlm import draw_shape


def _config(model: Path, data: Path, **extra) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "base_model": str(model),
            "processor_type": "AutoProcessor",
            "chat_template": "qwen2_vl",
            "datasets": [{"path": str(data), "type": "chat_template"}],
            "dataset_prepared_path": str(data.parent / "prepared"),
            "sequence_len": 256,
            **extra,
        }
    )


def _row(image: dict, answer: str = "red") -> dict:
    question = [image, {"type": "text", "text": "What colour is it?"}]
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def _png(colour: str, shape: str = "square") -> bytes:
    out = io.BytesIO()
    draw_shape(colour, shape).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def processor(tiny_vlm_dir):
    return load_processor(_config(tiny_vlm_dir, Path("unused.jsonl")))


def test_tokens_and_labels_of_the_qwen2_vl_template(tiny_vlm_dir, processor, tmp_path):
    (tmp_path / "red.png").write_bytes(_png("red"))
    data = tmp_path / "d.jsonl"
    data.write_text("")
    cfg = _config(tiny_vlm_dir, data)
    ids, labels, media = MultimodalFormatter(cfg.datasets[0], cfg, processor, "d")(
        _row({"type": "image", "path": "red.png"}), 1
    )
    tokens = processor.tokenizer.convert_ids_to_tokens(ids)
    # A 56 px image is 4x4 patches of 14 px, merged 2x2: four image tokens between the vision markers.
    prompt = "<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|>What colour is it?<|im_end|>"
    text = processor.tokenizer.convert_tokens_to_string(tokens)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        + prompt
        + "\n<|im_start|>assistant\nred<|im_end|>\n"
    )
    trained = [t for t, label in zip(tokens, labels, strict=True) if label != IGNORE_INDEX]
    assert trained == ["red", "<|im_end|>"]  # the assistant turn and its end (train_on_eos: turn)
    assert all(label == token for label, token in zip(labels, ids, strict=True) if label != IGNORE_INDEX)
    tensors = unpack_media(media)
    expected = processor.image_processor(images=[draw_shape("red", "square")], return_tensors="pt")
    assert torch.equal(tensors["pixel_values"], expected["pixel_values"])
    assert tensors["image_grid_thw"].tolist() == [[1, 4, 4]]


def _serve(folder: Path):
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_images_from_files_urls_base64_and_the_images_column_are_prepared(tiny_vlm_dir, tmp_path):
    web = tmp_path / "web"
    web.mkdir()
    (web / "green.png").write_bytes(_png("green"))
    (tmp_path / "blue.png").write_bytes(_png("blue"))
    server = _serve(web)
    try:
        rows = [
            _row({"type": "image", "path": "blue.png"}, "blue"),
            _row({"type": "image", "url": f"http://127.0.0.1:{server.server_port}/green.png"}, "green"),
            _row({"type": "image", "base64": base64.b64encode(_png("yellow")).decode()}, "yellow"),
            {
                **_row({"type": "image"}, "red"),
                "images": [f"data:image/png;base64,{base64.b64encode(_png('red')).decode()}"],
            },
            {"messages": [{"role": "user", "content": "No image here"}, {"role": "assistant", "content": "ok"}]},
        ]
        data = tmp_path / "d.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        cfg = _config(tiny_vlm_dir, data, shuffle_merged_datasets=False)
        prepared = build_datasets(cfg, load_processor(cfg))
    finally:
        server.shutdown()
    assert prepared.stats["kept"] == 5
    processor = load_processor(cfg)
    for sample, colour in zip(prepared.train, ["blue", "green", "yellow", "red"], strict=False):
        pixels = unpack_media(sample[MEDIA])["pixel_values"]
        expected = processor.image_processor(images=[draw_shape(colour, "square")], return_tensors="pt")
        assert torch.equal(pixels, expected["pixel_values"]), colour
    assert "pixel_values" not in unpack_media(prepared.train[4][MEDIA])  # a text-only row carries no image
    batch = multimodal_collator(processor)([prepared.train[i] for i in (0, 4, 1)])
    assert batch["pixel_values"].shape == (32, 1176) and batch["image_grid_thw"].shape == (2, 3)
    assert batch["input_ids"].shape == batch["mm_token_type_ids"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][1].sum() == len(prepared.train[4]["input_ids"])


def test_every_unreadable_image_is_named_with_its_row(tiny_vlm_dir, tmp_path):
    (tmp_path / "ok.png").write_bytes(_png("red"))
    (tmp_path / "corrupt.png").write_bytes(_png("red")[:40])  # a truncated download
    rows = [
        _row({"type": "image", "path": "ok.png"}),
        _row({"type": "image", "path": "corrupt.png"}),
        _row({"type": "image", "url": "http://127.0.0.1:9/gone.png"}),  # nothing listens on the discard port
        _row({"type": "image", "path": "missing.png"}),
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _config(tiny_vlm_dir, data)
    with pytest.raises(ConfigError) as error:
        build_datasets(cfg, load_processor(cfg))
    message = str(error.value)
    assert f"datasets[0] ('{data}'): 3 rows cannot be used" in message
    assert f"row 2: {tmp_path / 'corrupt.png'} is not a readable image" in message
    assert "row 3: cannot download http://127.0.0.1:9/gone.png" in message
    assert f"row 4: image file not found: {tmp_path / 'missing.png'}" in message
    assert "row 1" not in message


def test_image_size_pads_to_a_square_as_axolotl(tiny_vlm_dir, processor, tmp_path):
    from PIL import Image

    wide = Image.new("RGB", (112, 56), (255, 0, 0))
    wide.save(tmp_path / "wide.png")
    data = tmp_path / "d.jsonl"
    data.write_text("")
    cfg = _config(tiny_vlm_dir, data, image_size=56, image_resize_algorithm="bicubic")
    _, _, media = MultimodalFormatter(cfg.datasets[0], cfg, processor, "d")(
        _row({"type": "image", "path": "wide.png"}), 1
    )
    from PIL import ImageOps

    padded = ImageOps.pad(wide, (56, 56), method=Image.Resampling.BICUBIC, color=(0, 0, 0))
    expected = processor.image_processor(images=[padded], return_tensors="pt")
    assert torch.equal(unpack_media(media)["pixel_values"], expected["pixel_values"])


FAMILIES = {
    # LLaVA 1.5 (CLIP tower): `<image>` becomes one token per 14 px patch (CLIP's class token dropped); its
    # template writes no end of turn, so only the answer trains.
    "llava": (
        "make_tiny_llava",
        {"chat_template": "llava"},
        "USER: " + "<image>" * 16 + "What colour is it? ASSISTANT: red ",
        ["Ġred"],
        "multi_modal_projector",
    ),
    # Gemma 3 (SigLIP tower pooled to 4 tokens): the begin-of-image token becomes the whole image sequence.
    "gemma3": (
        "make_tiny_gemma3",
        {"chat_template": "gemma3", "eot_tokens": ["<end_of_turn>"]},
        "<s><start_of_turn>user\n\n\n<start_of_image>"
        + "<image_soft_token>" * 4
        + "<end_of_image>\n\nWhat colour is it?<end_of_turn>\n<start_of_turn>model\nred<end_of_turn>\n",
        ["red", "<end_of_turn>"],
        "multi_modal_projector",
    ),
    # Qwen2-VL: Qwen2.5-VL's tokens, a plain ViT tower.
    "qwen2_vl": (
        "make_tiny_qwen2_vl",
        {"chat_template": "qwen2_vl"},
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
        + "<|image_pad|>" * 4
        + "<|vision_end|>What colour is it?<|im_end|>\n<|im_start|>assistant\nred<|im_end|>\n",
        ["red", "<|im_end|>"],
        "visual",
    ),
    # Idefics3 (SmolVLM's architecture): the image between fake tokens, pixel values per sample with a pixel mask.
    "idefics3": (
        "make_tiny_idefics3",
        {"chat_template": "chatml"},
        "<|im_start|>user\n<fake_token_around_image><global-img>"
        + "<image>" * 4
        + "<fake_token_around_image>What colour is it?<|im_end|>\n<|im_start|>assistant\nred<|im_end|>\n",
        ["red", "<|im_end|>"],
        "connector",
    ),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_other_families_tokens_labels_and_a_training_step(family, tmp_path):
    """The same code for other families: tokens and labels pinned, pixel values as the image processor makes
    them, and a backward pass that reaches the projector."""
    import warnings

    from transformers import AutoModelForImageTextToText

    from hpcft.trainer import tiny_vlm

    builder, extra, expected_text, expected_trained, projector_name = FAMILIES[family]
    getattr(tiny_vlm, builder)(tmp_path / family)
    (tmp_path / "red.png").write_bytes(_png("red"))
    data = tmp_path / "d.jsonl"
    data.write_text("")
    cfg = _config(tmp_path / family, data, **extra)
    processor = load_processor(cfg)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no end of turn is trained")  # llava: as its template
        formatter = MultimodalFormatter(cfg.datasets[0], cfg, processor, "d")
    ids, labels, media = formatter(_row({"type": "image", "path": "red.png"}), 1)
    tokens = processor.tokenizer.convert_ids_to_tokens(ids)
    assert processor.tokenizer.convert_tokens_to_string(tokens) == expected_text
    assert [t for t, label in zip(tokens, labels, strict=True) if label != IGNORE_INDEX] == expected_trained
    tensors = unpack_media(media)
    expected = processor.image_processor(images=[draw_shape("red", "square")], return_tensors="pt")
    assert torch.equal(tensors["pixel_values"], expected["pixel_values"])
    batch = multimodal_collator(processor)([{"input_ids": ids, "labels": labels, MEDIA: media}] * 2)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / family)
    loss = model(**batch).loss
    loss.backward()
    projector = getattr(model.model, projector_name)
    assert torch.isfinite(loss) and sum(p.grad.abs().sum() for p in projector.parameters()) > 0


def test_a_saved_dataset_with_an_image_feature_as_the_hub_stores_llava_instruct_mix(tiny_vlm_dir, tmp_path):
    """HuggingFaceH4/llava-instruct-mix-vsft's layout: bare image parts (their other keys null, as arrow stores a
    struct) and a list of images in an `images` column of datasets' Image feature, decoded to PIL on reading."""
    import datasets

    part_text = {"type": "text", "text": "What colour is it?", "index": None}
    rows = {
        "messages": [
            [
                {"role": "user", "content": [{"type": "image", "text": None, "index": 0}, part_text]},
                {"role": "assistant", "content": [{"type": "text", "text": colour, "index": None}]},
            ]
            for colour in ("red", "blue")
        ],
        "images": [[draw_shape("red", "square")], [draw_shape("blue", "square")]],
    }
    features = datasets.Features(
        {
            "messages": [
                {
                    "role": datasets.Value("string"),
                    "content": [
                        {
                            "type": datasets.Value("string"),
                            "text": datasets.Value("string"),
                            "index": datasets.Value("int64"),
                        }
                    ],
                }
            ],
            "images": datasets.Sequence(datasets.Image()),
        }
    )
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "saved"))
    cfg = _config(tiny_vlm_dir, tmp_path / "saved", shuffle_merged_datasets=False)
    processor = load_processor(cfg)
    prepared = build_datasets(cfg, processor)
    assert prepared.stats["kept"] == 2
    for sample, colour in zip(prepared.train, ("red", "blue"), strict=True):
        expected = processor.image_processor(images=[draw_shape(colour, "square")], return_tensors="pt")
        assert torch.equal(unpack_media(sample[MEDIA])["pixel_values"], expected["pixel_values"])
        trained = [t for t, label in zip(sample["input_ids"], sample["labels"], strict=True) if label != IGNORE_INDEX]
        assert processor.tokenizer.decode(trained) == f"{colour}<|im_end|>"
