"""The config reference, generated from the schema so that the docs cannot drift from the code."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from hpcft.launcher.schema import (
    PLUGINS_WITHOUT_EFFECT,
    UNSUPPORTED_AXOLOTL_KEYS,
    UNSUPPORTED_DATASET_KEYS,
    WARN_ONLY_KEYS,
    DatasetConfig,
    LaunchConfig,
    TrainConfig,
    TrlConfig,
    UserDefinedPreferenceType,
)


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("hpcft.launcher.schema.", "").replace("NoneType", "null")
    for noise in ("<class '", "'>"):
        text = text.replace(noise, "")
    return text


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.default_factory() if field.default_factory else field.default
    if value is PydanticUndefined or value is None or value in ([], {}):
        return ""
    return f"`{value}`"


def _table(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        alias = f" (or `{prefix}{field.alias}`)" if field.alias else ""
        kind = _type_name(field.annotation).replace(" | None", " | null").replace("|", "\\|")
        rows.append(f"| `{prefix}{name}`{alias} | {kind} | {_default(field)} | {field.description or ''} |")
    return rows


def config_reference_markdown() -> str:
    parts = [
        "# Config reference",
        "",
        "Generated from `launcher/schema.py` by `hpcft reference`; do not edit by hand.",
        "Keys have axolotl's names and meaning. Relative paths are taken from the config file's folder.",
        "",
        "## Training keys",
        "",
        *_table(TrainConfig),
        "",
        "## Dataset keys (each entry of `datasets:` and `test_datasets:`)",
        "",
        *_table(DatasetConfig, "datasets[].") ,
        "",
        "## Job options (`launch:` in the config, the profile's `launch:`, or command-line flags)",
        "",
        "Precedence: profile < config `launch:` < command line (`--nodes`, `--time`, ...).",
        "",
        *_table(LaunchConfig, "launch."),
        "",
        "## Preference tuning (`rl:`; see docs/preference-tuning.md)",
        "",
        "`trl:` keys that apply to dpo/ipo/orpo/kto/simpo:",
        "",
        *_table(TrlConfig, "trl."),
        "",
        "A user-defined preference dataset type (`type:` as a mapping):",
        "",
        *_table(UserDefinedPreferenceType, "datasets[].type."),
        "",
        "## axolotl keys accepted without effect (a warning names them)",
        "",
        *[f"- `{key}`: {why}" for key, why in sorted(WARN_ONLY_KEYS.items())],
        *[f"- plugin `{key}`: {why}" for key, why in sorted(PLUGINS_WITHOUT_EFFECT.items())],
        "",
        "## axolotl keys not supported yet (setting one is an error that names it)",
        "",
        ", ".join(f"`{k}`" for k in sorted(UNSUPPORTED_AXOLOTL_KEYS)),
        "",
        "In dataset entries: " + ", ".join(f"`{k}`" for k in sorted(UNSUPPORTED_DATASET_KEYS)),
        "",
    ]
    return "\n".join(parts)
