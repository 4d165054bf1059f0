"""Turn raw config mappings and pydantic errors into one clear line each: the key, what is wrong, how to fix."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError

from hpcft.core.axolotl_keys import (
    ATTENTION_KERNELS_WITHOUT_EFFECT,
    AXOLOTL_VALUES,
    PLUGINS_WITHOUT_EFFECT,
    REFUSED_DATASET_KEYS,
    REFUSED_KEYS,
    WARN_ONLY_DATASET_KEYS,
    WARN_ONLY_KEYS,
    axolotl_key_space,
    refusal_message,
)
from hpcft.core.errors import ConfigError
from hpcft.core.features.objectives import objective_warnings
from hpcft.core.features.prompt_strategies import (
    alpaca_chat_conversation,
    check_format_mapping,
    keys_without_effect,
    move_flat_format_fields,
)
from hpcft.core.keys.deprecated_keys import translate_deprecated
from hpcft.core.keys.key_policy import no_effect_hint, no_effect_message, strict_refusal, typo_of
from hpcft.core.keys.retired_spellings import translate_retired
from hpcft.core.schema import (
    RL_NEEDS_GENERATION,
    DatasetConfig,
    LaunchConfig,
    TrainConfig,
    TrlConfig,
    UserDefinedPreferenceType,
    field_aliases,
    rl_refusal,
)


def known_keys(model: type[BaseModel]) -> set[str]:
    """The keys a schema model accepts: field names and their aliases."""
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        keys.update(field_aliases(name, field))
    return keys


def _is_unset(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {} or value == ""


def check_keys(raw: dict[str, Any], where: str, strict: bool = False) -> list[str]:
    """Check every key of a raw training config; return warnings, raise ValueError on the first bad key.

    Blank values (`lora_r:`) mean unset, as in axolotl: they are dropped so the default applies. Keys that only
    tune axolotl's kernels are dropped with a warning; refused axolotl keys are errors naming them. Keys axolotl
    lacks too are dropped with a warning (core/keys/key_policy.py), unless a near-certain typo or `strict`.
    """
    space = axolotl_key_space()
    warnings: list[str] = translate_retired(raw, where) + translate_deprecated(raw, where)
    no_effect: list[tuple[str, str]] = []  # (key, hint)
    # Refused by name first: its own keys (ebft:, trl.vllm_*) are moot. (A list or mapping is the schema's to refuse.)
    if isinstance(raw.get("rl"), str) and raw["rl"] in RL_NEEDS_GENERATION:
        raise ValueError(f"{where}: {rl_refusal(raw['rl'])}")
    _check_mapping(
        raw, known_keys(TrainConfig), space.top, WARN_ONLY_KEYS, REFUSED_KEYS, where, "", warnings, no_effect
    )
    for list_key in ("datasets", "test_datasets", "pretraining_dataset"):
        entries = raw.get(list_key)
        if entries is None or (list_key == "pretraining_dataset" and isinstance(entries, str)):
            continue
        if not isinstance(entries, list):
            raise ValueError(
                f"{where}: key '{list_key}' must be a list of dataset entries, e.g. "
                f"'{list_key}: [{{path: data.jsonl, type: chat_template}}]'"
            )
        for i, entry in enumerate(entries):
            name = f"{list_key}[{i}]"
            if not isinstance(entry, dict):
                raise ValueError(
                    f"{where}: key '{name}' must be a mapping with path: (and type:), got {type(entry).__name__}"
                )
            warnings += move_flat_format_fields(entry, f"{where}: {name}")
            alpaca_chat_conversation(entry, f"{where}: {name}")
            _check_mapping(
                entry,
                known_keys(DatasetConfig),
                space.dataset,
                WARN_ONLY_DATASET_KEYS,
                REFUSED_DATASET_KEYS,
                where,
                f"{name}.",
                warnings,
                no_effect,
            )
            if isinstance(entry.get("type"), dict) and not raw.get("rl"):  # a user-defined prompt format
                check_format_mapping(entry["type"], f"{where}: {name}.type")
            if not raw.get("rl"):
                warnings += keys_without_effect(entry, f"{where}: {name}")
            elif isinstance(entry.get("type"), dict):  # a user-defined preference type (see docs/preference-tuning.md)
                _check_mapping(
                    entry["type"],
                    known_keys(UserDefinedPreferenceType),
                    frozenset(),
                    {},
                    {},
                    where,
                    f"{name}.type.",
                    warnings,
                )
    attention = raw.get("attn_implementation")
    # `org/name`: an attention kernel from the Hub (gpt-oss's kernels-community/vllm-flash-attn3), the same attention.
    hub_kernel = isinstance(attention, str) and re.fullmatch(r"[\w.-]+/[\w.-]+(?::[\w.-]+)?", attention) is not None
    if attention in ATTENTION_KERNELS_WITHOUT_EFFECT or hub_kernel:
        warnings.append(
            f"{where}: 'attn_implementation: {attention}' has no effect in hpcft (the same attention "
            "runs with PyTorch sdpa)"
        )
        raw["attn_implementation"] = "sdpa"
    plugins = raw.get("plugins")
    if plugins is not None and not (isinstance(plugins, list) and all(isinstance(p, str) for p in plugins)):
        raise ValueError(f"{where}: key 'plugins' must be a list of plugin names")
    for plugin in plugins or []:
        if plugin in PLUGINS_WITHOUT_EFFECT:
            warnings.append(f"{where}: plugin '{plugin}' has no effect in hpcft ({PLUGINS_WITHOUT_EFFECT[plugin]})")
    warnings += objective_warnings(raw, where)
    if raw.get("rl") == "ipo":
        warnings.append(f"{where}: rl: ipo is deprecated (as in axolotl); it runs as rl: dpo with dpo_loss_type: [ipo]")
    if isinstance(raw.get("trl"), dict):
        for key in list(raw["trl"]):
            if key not in known_keys(TrlConfig):
                raise ValueError(
                    f"{where}: 'trl.{key}' does not apply to rl: dpo/ipo/orpo/kto/simpo (axolotl uses it "
                    "for GRPO, which hpcft does not run); remove it"
                )
    launch = raw.get("launch")
    if isinstance(launch, dict):
        _check_mapping(launch, known_keys(LaunchConfig), frozenset(), {}, {}, where, "launch.", warnings)
    if strict and no_effect:
        raise ValueError(strict_refusal(where, no_effect))
    return warnings


def _check_mapping(
    raw: dict[str, Any],
    known: set[str],
    axolotl: frozenset[str],
    warn_only: dict[str, str],
    refused: dict[str, str],
    where: str,
    prefix: str,
    warnings: list[str],
    no_effect: list[tuple[str, str]] | None = None,
) -> None:
    """no_effect: collects the keys axolotl lacks too (dropped with a warning); None: such keys are errors (the
    launch: block and other mappings that are hpcft's own)."""
    for key in list(raw):
        if not isinstance(key, str):
            raise ValueError(
                f"{where}: {prefix}{key!r} is not a key name; config keys are names like "
                "learning_rate (quote it if it is meant as text)"
            )
        value = raw[key]
        if value is None:
            del raw[key]  # a blank value means unset, as in axolotl
            continue
        if key in known:
            continue
        if key in warn_only:
            if not _is_unset(value):
                warnings.append(f"{where}: '{prefix}{key}' has no effect in hpcft ({warn_only[key]})")
            del raw[key]
            continue
        if key in refused or key in axolotl:
            if _is_unset(value):
                del raw[key]
                continue
            raise ValueError(f"{where}: {refusal_message(key, value, prefix)}")
        candidates = known | set(warn_only) | axolotl
        typo = typo_of(key, candidates, raw)
        if typo or no_effect is None:
            hint = f"; did you mean '{typo}'?" if typo else no_effect_hint(key, candidates, "[" in prefix)
            raise ValueError(f"{where}: unknown key '{prefix}{key}'{hint}")
        hint = no_effect_hint(key, candidates, "[" in prefix)
        warnings.append(no_effect_message(where, prefix + key, hint))
        no_effect.append((prefix + key, hint))
        del raw[key]


def as_list(value: Any, key: str) -> list[Any]:
    """A list option given as one string (`mounts: /data`) is a one-element list, not its characters."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"key '{key}' must be a list (e.g. [{value!r}]), not {type(value).__name__}")


def format_validation_error(exc: ValidationError, where: str) -> str:
    """The first pydantic error as one line naming the key."""
    err = exc.errors()[0]
    loc = ""
    for part in err["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "missing":
        return f"{where}: required key '{loc}' is missing"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key '{loc}'"
    value = err.get("input")
    if isinstance(value, str) and value in AXOLOTL_VALUES.get(str(err["loc"][-1]), ()):
        return f"{where}: '{loc}: {value}' is an axolotl option hpcft does not support yet; {msg}"
    shown = "" if isinstance(value, (dict, list)) or not loc else f" (got {_short(value)})"
    key = f"key '{loc}': " if loc else ""
    return f"{where}: {key}{msg}{shown}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
