"""Vision language model data: a row's images loaded (file, URL, base64), resized as configured and run through the
model's processor with the conversation; labels masked as for text (trained turns only) and never on image tokens.

The processor's tensors (pixel values, grid sizes, ...) are stored with each sample as one safetensors blob, so the
prepared dataset holds everything training reads: no image is decoded or downloaded on the GPU nodes.
"""

from __future__ import annotations

import difflib
import io
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from hpcft.core.dataset_cache import local_files
from hpcft.core.errors import ConfigError
from hpcft.core.features.multimodal import ImageRef, base64_bytes, local_image_path, read_row
from hpcft.core.schema import DatasetConfig, TrainConfig
from hpcft.trainer.data.formats import IGNORE_INDEX, KEPT, ChatTemplateFormatter, sample_status

MEDIA = "media"  # the column holding a sample's processor tensors (safetensors bytes; empty for text-only rows)
URL_TIMEOUT_S = 30
ERRORS_SHOWN = 20
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.LANCZOS}
# Processors whose image token is wrapped in start/end markers that the chat template must write around it.
_WRAPPED = {"<|image_pad|>": ("<|vision_start|>", "<|vision_end|>")}


def image_placeholder(processor: Any) -> str:
    """What the rendered text holds where an image goes; the processor expands it into the image's tokens."""
    token = getattr(processor, "boi_token", None) or getattr(processor, "image_token", None)
    if not token:
        raise ConfigError(f"{type(processor).__name__} names no image token; it is not an image processor")
    start, end = _WRAPPED.get(token, ("", ""))
    return f"{start}{token}{end}"


def media_token_ids(processor: Any) -> set[int]:
    """Token ids that stand for image content (never trained, as in axolotl)."""
    tokenizer = processor.tokenizer
    names = [getattr(processor, attr, None) for attr in ("image_token", "boi_token", "eoi_token", "video_token")]
    ids = {tokenizer.convert_tokens_to_ids(name) for name in names if name}
    ids |= {getattr(processor, attr, None) for attr in ("image_token_id", "video_token_id")}
    return ids - {None, tokenizer.unk_token_id}


def fetch_url(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:  # noqa: S310 - http(s) only, checked
        return response.read()


def load_image(ref: ImageRef, base: Path, cfg: TrainConfig) -> Image.Image:
    """The RGB image behind `ref`, resized as image_size says; ValueError saying what is wrong with it."""
    if isinstance(ref.value, Image.Image):
        return resize(ref.value.convert("RGB"), cfg)
    what, source = image_source(ref, base)
    try:
        image = Image.open(source)
        image.load()  # decode now: a truncated file fails here, not in the first training step
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{what} is not a readable image ({exc})") from None
    return resize(image.convert("RGB"), cfg)


def image_source(ref: ImageRef, base: Path) -> tuple[str, Path | io.BytesIO]:
    """How errors name the image, and what PIL opens: a local file, or the downloaded / decoded bytes."""
    if ref.kind == "path":
        path = local_image_path(ref.value, base)
        if not path.is_file():
            raise ValueError(f"image file not found: {path}")
        return str(path), path
    if ref.kind == "url":
        try:
            return ref.value, io.BytesIO(fetch_url(ref.value))
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ValueError(
                f"cannot download {ref.value} ({reason}); where the nodes have no internet, download the "
                "images next to the data and give their paths"
            ) from None
    if ref.kind == "base64":
        return "base64 image", io.BytesIO(base64_bytes(ref.value))
    return "image bytes", io.BytesIO(bytes(ref.value))


def resize(image: Image.Image, cfg: TrainConfig) -> Image.Image:
    """axolotl's image_size: an integer pads to a square keeping the aspect ratio (black), a pair is exact."""
    if cfg.image_size is None:
        return image
    method = _RESAMPLE[cfg.image_resize_algorithm or "bilinear"]
    if isinstance(cfg.image_size, int):
        return ImageOps.pad(image, (cfg.image_size, cfg.image_size), method=method, color=(0, 0, 0))
    return image.resize(tuple(cfg.image_size), method)


def align_labels(plain_ids: list[int], plain_labels: list[int], expanded: list[int]) -> list[int]:
    """Labels for the processor's ids, from the labels of the same text tokenized without image expansion: tokens
    the two share keep their label, tokens the processor added (the image's) get none."""
    labels = [IGNORE_INDEX] * len(expanded)
    matcher = difflib.SequenceMatcher(a=plain_ids, b=expanded, autojunk=False)
    for block in matcher.get_matching_blocks():
        labels[block.b : block.b + block.size] = plain_labels[block.a : block.a + block.size]
    return labels


class MultimodalFormatter:
    """A multimodal row -> (input_ids, labels, processor tensors). The conversation is rendered by the configured
    chat template with each image part as the processor's placeholder, and its labels come from the text formatter
    (roles_to_train, train_on_eos, ... as for text)."""

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, processor: Any, name: str):
        self.ds, self.cfg, self.processor, self.name = ds, cfg, processor, name
        self.placeholder = image_placeholder(processor)
        self.media_ids = media_token_ids(processor)
        # The rows reach the text formatter already normalised: `messages` with role/content strings.
        plain = ds.model_copy(update={"field_messages": "messages", "message_property_mappings": None, "roles": None})
        self.text = ChatTemplateFormatter(plain, cfg, processor.tokenizer, name)
        files = local_files(ds)
        self.base = files[0].parent if files else Path.cwd()

    def text_row(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        def content(parts: list[dict[str, Any]]) -> str:
            return "".join(self.placeholder if p["type"] == "image" else p["text"] for p in parts)

        return {"messages": [{"role": m["role"], "content": content(m["content"])} for m in messages]}

    def __call__(self, row: dict, row_no: int) -> tuple[list[int], list[int], bytes]:
        where = f"{self.name}: row {row_no}"
        parsed = read_row(row, self.ds, where)
        images = []
        for ref in parsed.images:
            try:
                images.append(load_image(ref, self.base, self.cfg))
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        text_row = self.text_row(parsed.messages)
        [(plain_ids, plain_labels)] = self.text(text_row, row_no)
        text = self.text.render(self.text.turns(text_row, row_no))
        encoded = self.processor(text=[text], images=images or None, return_tensors="pt", add_special_tokens=False)
        ids = encoded.pop("input_ids")[0].tolist()
        encoded.pop("attention_mask", None)
        labels = align_labels(plain_ids, plain_labels, ids)
        labels = [IGNORE_INDEX if t in self.media_ids else label for t, label in zip(ids, labels, strict=True)]
        media = {key: value.contiguous() for key, value in encoded.items() if isinstance(value, torch.Tensor)}
        return ids, labels, save_tensors(media) if media else b""


def tokenize_multimodal_dataset(
    dataset: datasets.Dataset,
    ds: DatasetConfig,
    cfg: TrainConfig,
    processor: Any,
    name: str,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, Counter]:
    """Format every row; a row whose images cannot be read is collected, and all of them (file and row) are
    reported in one error after the whole entry was read, so one preprocessing run names every bad row."""
    formatter = MultimodalFormatter(ds, cfg, processor, name)

    def format_batch(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": [], "labels": [], MEDIA: [], "status": [], "error": []}
        for position, index in enumerate(indices):
            row = {key: values[position] for key, values in batch.items()}
            try:
                ids, labels, media = formatter(row, index + 1)  # 1-based row numbers, as in an editor
                status, error = sample_status(ids, labels, cfg.sequence_len, cfg.min_sample_len), ""
            except ConfigError as exc:
                ids, labels, media, status, error = [], [], b"", "error", str(exc)
            for key, value in zip(out, (ids, labels, media, status, error), strict=True):
                out[key].append(value)
        return out

    formatted = dataset.map(
        format_batch,
        batched=True,
        with_indices=True,
        remove_columns=dataset.column_names,
        num_proc=num_proc if num_proc and num_proc > 1 and len(dataset) > 1000 else None,
        desc=f"Processing {name}",
    )
    failed = [e for e in formatted["error"] if e]
    if failed:
        more = f"\n  ... and {len(failed) - ERRORS_SHOWN} more" if len(failed) > ERRORS_SHOWN else ""
        raise ConfigError(f"{name}: {len(failed)} rows cannot be used:\n  " + "\n  ".join(failed[:ERRORS_SHOWN]) + more)
    counts = Counter(formatted["status"])
    kept = formatted.filter(lambda status: status == KEPT, input_columns="status")
    return kept.remove_columns(["status", "error"]), counts


def unpack_media(blob: bytes) -> dict[str, torch.Tensor]:
    return load_tensors(bytes(blob)) if blob else {}


class MultimodalCollator:
    """Pad input_ids/labels to the longest sample (attention_mask) and join the samples' processor tensors: those
    with one value per token (e.g. token_type_ids) are padded like input_ids, the others (pixel values, grid
    sizes: one entry per image or patch) are concatenated in sample order, which is how the models read them."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        media = [unpack_media(f.get(MEDIA, b"")) for f in features]
        batch: dict[str, Any] = {"input_ids": [], "labels": [], "attention_mask": []}
        for f in features:
            pad = width - len(f["input_ids"])
            batch["input_ids"].append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            batch["labels"].append(list(f["labels"]) + [IGNORE_INDEX] * pad)
            batch["attention_mask"].append([1] * len(f["input_ids"]) + [0] * pad)
        out = {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
        for key in sorted({k for m in media for k in m}):
            per_token = all(
                key not in m or (m[key].dim() == 2 and m[key].shape == (1, len(f["input_ids"])))
                for m, f in zip(media, features, strict=True)
            )
            if per_token:
                rows = [
                    m[key] if key in m else torch.zeros(1, len(f["input_ids"]), dtype=torch.long)
                    for m, f in zip(media, features, strict=True)
                ]
                out[key] = torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[1])) for r in rows])
            else:
                out[key] = torch.cat([m[key] for m in media if key in m])
        return out


def multimodal_collator(processor: Any) -> MultimodalCollator:
    """The collator for a processor: pads with its tokenizer's pad token (EOS if it has none)."""
    tokenizer = processor.tokenizer
    return MultimodalCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
