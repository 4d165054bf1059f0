"""Vision language models (`processor_type:`): the login-node checks of the keys, the model family and the first
rows, and the one reading of a multimodal row that the preprocessing job uses too. Torch-free and PIL-free."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcft.core.dataset_cache import entry_name, local_files
from hpcft.core.errors import ConfigError
from hpcft.core.features.preference_fields import _json_rows
from hpcft.core.model_size import find_model_config
from hpcft.core.schema import DatasetConfig, TrainConfig

# model_type values of the image-text models transformers builds (its image-text-to-text families); a local
# base_model whose config names another model_type is refused before the queue.
VISION_MODEL_TYPES = frozenset(
    {
        "qwen2_vl",
        "qwen2_5_vl",
        "qwen3_vl",
        "qwen3_vl_moe",
        "qwen3_5",
        "qwen3_5_moe",
        "mllama",
        "llama4",
        "gemma3",
        "gemma3n",
        "gemma4",
        "gemma4_unified",
        "mistral3",
        "mistral4",
        "pixtral",
        "llava",
        "llava_next",
        "llava_onevision",
        "smolvlm",
        "idefics3",
        "internvl",
        "glm4v",
        "glm46v",
        "lfm2_vl",
        "paddleocr_vl",
    }
)
# Audio language models: their processors take audio clips, which hpcft's data pipeline does not read yet.
AUDIO_MODEL_TYPES = frozenset({"voxtral", "qwen2_audio", "granite_speech"})
_AUDIO_NAMES = ("voxtral", "qwen2-audio", "granite-speech")

MEDIA_KEYS = ("path", "url", "base64", "image")
ROWS_CHECKED = 5


@dataclass(frozen=True)
class ImageRef:
    """Where one image of a row comes from: `kind` is path | url | base64 | inline (bytes or a decoded image)."""

    kind: str
    value: Any


@dataclass
class MultimodalRow:
    """A row as the processor sees it: messages whose content is a list of parts (image parts hold no data), and
    the row's images in the order their parts appear."""

    messages: list[dict[str, Any]]
    images: list[ImageRef]


def check_multimodal(cfg: TrainConfig, where: str) -> list[str]:
    """Raise ConfigError for a multimodal config hpcft cannot run; return warnings. No-op without processor_type."""
    if not cfg.processor_type:
        if cfg.image_size is not None or cfg.freeze_mm_modules:
            return [f"{where}: image_size / freeze_mm_modules only apply with processor_type; ignored"]
        return []
    problems = [
        (cfg.rl, "rl: preference tuning of vision language models is not supported yet; remove rl"),
        (cfg.reward_model or cfg.process_reward_model, "reward models of vision language models are not supported"),
        (cfg.streaming or cfg.pretraining_dataset, "images are prepared ahead, not streamed; remove streaming"),
        (cfg.sample_packing, "samples with images are not packed (as in axolotl); set sample_packing: false"),
        (cfg.do_causal_lm_eval, "do_causal_lm_eval generates from text prompts only; remove it"),
        (cfg.diffusion, "diffusion training of vision language models is not supported; remove diffusion"),
    ]
    for bad, message in problems:
        if bad:
            raise ConfigError(f"{where}: processor_type: {message}")
    if not cfg.processor_type.isidentifier() or not cfg.processor_type.endswith("Processor"):
        raise ConfigError(
            f"{where}: processor_type: '{cfg.processor_type}' is not a processor class; use AutoProcessor"
        )
    _check_family(cfg, where)
    for index, ds in enumerate([*cfg.datasets, *(cfg.test_datasets or [])]):
        name = entry_name(where if index < len(cfg.datasets) else "test_datasets", index, ds)
        if ds.type not in ("chat_template", None):
            raise ConfigError(
                f"{name}: type '{ds.type}' with processor_type: multimodal datasets are read as "
                "type: chat_template (messages with image parts, or an images column)"
            )
        check_first_rows(ds, name)
    return []


def _check_family(cfg: TrainConfig, where: str) -> None:
    if any(part in cfg.base_model.lower() for part in _AUDIO_NAMES):
        raise ConfigError(f"{where}: base_model {cfg.base_model}: {_audio_refusal()}")
    try:
        config, source = find_model_config(cfg.base_model_config or cfg.base_model)
    except ConfigError:
        return  # a Hub model not in the cache: its family is known on the node (the preprocessing job loads it)
    model_type = str(config.get("model_type", ""))
    if model_type in AUDIO_MODEL_TYPES:
        raise ConfigError(f"{where}: {source}: model_type '{model_type}': {_audio_refusal()}")
    if model_type not in VISION_MODEL_TYPES:
        raise ConfigError(
            f"{where}: processor_type is set but {source} has model_type '{model_type}', not a vision language "
            f"model hpcft trains ({', '.join(sorted(VISION_MODEL_TYPES))}); remove processor_type for a text model"
        )


def _audio_refusal() -> str:
    return "audio language models are not supported yet (hpcft reads image parts only); use a vision model"


def check_first_rows(ds: DatasetConfig, name: str) -> None:
    """The first rows of a local JSON/JSONL file must parse as multimodal rows and their local images exist."""
    try:
        files = local_files(ds)
    except ConfigError:
        return  # the data-file checks elsewhere name a missing file
    for path in files:
        if path.suffix not in (".json", ".jsonl") and ds.ds_type not in ("json", "jsonl"):
            continue
        try:
            rows = list(itertools.islice(_json_rows(path), ROWS_CHECKED))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{name}: {path} is not JSON lines ({exc})") from None
        for row_no, row in rows:
            parsed = read_row(row, ds, f"{path}: row {row_no}")
            for image in parsed.images:
                check_image_ref(image, path.parent, f"{path}: row {row_no}")


def read_row(row: dict[str, Any], ds: DatasetConfig, where: str) -> MultimodalRow:
    """A row's messages (content as parts) and its images; ConfigError naming `where` when it has neither shape.

    As axolotl: `messages` (or field_messages), else ShareGPT `conversations` ({from, value}); string content is
    one text part; image parts carry path / url / base64 / image; bare `{type: image}` parts take the images of an
    `images` (or `image`) column in order, and a column image without a part goes first into the first user turn.
    """
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: a row must be a mapping, not {type(row).__name__}")
    field = ds.field_messages
    raw = row.get(field)
    if raw is None and row.get("conversations") is not None:
        raw = [{"role": m.get("from"), "content": m.get("value")} for m in row["conversations"]]
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"{where}: '{field}' is a string but not JSON") from None
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: no '{field}' list of messages (set field_messages:)")
    roles = {src: dst for dst, sources in ds.roles.items() for src in sources} if ds.roles else {}
    roles = {"human": "user", "gpt": "assistant", **roles}
    role_key, content_key = ds.role_key(), ds.content_key()
    messages, images, bare = [], [], []
    for j, message in enumerate(raw):
        if not isinstance(message, dict) or message.get(role_key) is None:
            raise ConfigError(f"{where}, message {j}: needs '{role_key}' and '{content_key}'")
        content = message.get(content_key)
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise ConfigError(f"{where}, message {j}: '{content_key}' must be text or a list of parts")
        out = []
        for k, part in enumerate(parts):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                out.append({"type": "text", "text": str(part.get("text") or "")})
            elif kind == "image":
                ref = _image_ref(part)
                if ref is None:
                    bare.append(len(images))
                images.append(ref)
                out.append({"type": "image"})
            elif kind in ("audio", "video"):
                raise ConfigError(f"{where}, message {j}: {kind} parts are not supported yet (images only)")
            else:
                raise ConfigError(f"{where}, message {j}, part {k}: 'type' must be text or image, not {kind!r}")
        messages.append({"role": roles.get(message[role_key], message[role_key]), "content": out})
    column = _column_images(row)
    if column and not bare:  # axolotl: the column's image goes to the end of the first user turn
        first_user = next((m for m in messages if m["role"] == "user"), messages[0])
        first_user["content"].append({"type": "image"})
        bare, images = [len(images)], [*images, None]
    if len(column) < len(bare):
        raise ConfigError(
            f"{where}: {len(bare)} image parts without path/url/base64 but {len(column)} images in the 'images' column"
        )
    for slot, ref in zip(bare, column, strict=False):
        images[slot] = ref
    return MultimodalRow(messages, images)


def _image_ref(part: dict[str, Any]) -> ImageRef | None:
    for key in MEDIA_KEYS:
        value = part.get(key)
        if value is not None:
            return as_image_ref(value) if key == "image" else ImageRef(key, value)
    return None


def as_image_ref(value: Any) -> ImageRef:
    """An image given as one value: a URL, a data: URI, a path, HF datasets' {bytes, path} or a decoded image."""
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            return ImageRef("url", value)
        if value.startswith("data:"):
            return ImageRef("base64", value)
        return ImageRef("path", value)
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return ImageRef("inline", value["bytes"])
        if value.get("path"):
            return as_image_ref(value["path"])
    return ImageRef("inline", value)


def _column_images(row: dict[str, Any]) -> list[ImageRef]:
    for key in ("images", "image"):
        value = row.get(key)
        if value is not None:
            values = value if isinstance(value, list) else [value]
            return [as_image_ref(v) for v in values if v is not None]
    return []


def base64_bytes(value: str) -> bytes:
    """The bytes of a base64 image (a bare string or a data: URI); ValueError when it does not decode."""
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"base64 image does not decode ({exc})") from None


def local_image_path(value: str, base: Path) -> Path:
    """A relative image path is taken from the data file's folder (where a dataset keeps its images)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def check_image_ref(image: ImageRef, base: Path, where: str) -> None:
    """Login-node check of one image: a local file exists, base64 decodes (URLs are fetched by the preprocessing
    job, where the network is)."""
    if image.kind == "path" and not local_image_path(image.value, base).is_file():
        raise ConfigError(f"{where}: image file not found: {local_image_path(image.value, base)}")
    if image.kind == "base64":
        try:
            base64_bytes(image.value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
