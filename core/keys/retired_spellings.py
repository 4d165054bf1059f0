"""Spellings axolotl once accepted and 0.19 refuses, still run: each retired dataset entry is rewritten, on the raw
config and before its keys are checked, into the modern form that trains the same tokens, and the warning prints
that form on one line, ready to paste in its place.

`type: sharegpt` (and `sharegpt:<conversation>`, `sharegpt.load_role`, `.load_guanaco`, `.load_ultrachat`, with
`conversation:`, `field_human`/`field_model`) was axolotl's conversation type until it moved to `type:
chat_template` with mappings. The old type rendered turns with a FastChat conversation format; the modern form
renders them with a chat template instead: `conversation: chatml` becomes `chat_template: chatml` (the same text),
other conversation names the template of the same name where hpcft ships one, else the config's chat_template.
"""

from __future__ import annotations

from typing import Any

import yaml

# sharegpt loader -> (field_messages, message_property_mappings, roles) of the modern form; None: the default.
_SHAREGPT_LOADERS: dict[str, tuple[str, dict[str, str], dict[str, list[str]] | None]] = {
    "sharegpt": ("conversations", {"role": "from", "content": "value"}, None),
    "sharegpt.load": ("conversations", {"role": "from", "content": "value"}, None),
    "sharegpt.load_role": ("conversations", {"role": "role", "content": "value"}, None),
    "sharegpt.load_guanaco": (
        "conversations",
        {"role": "role", "content": "text"},
        {"user": ["prompter"], "assistant": ["assistant"]},
    ),
    "sharegpt.load_ultrachat": ("messages", {"role": "role", "content": "content"}, None),
}
# FastChat conversation names whose text a chat template of hpcft's reproduces (templates/chat/).
_CONVERSATION_TEMPLATES = {"chatml": "chatml", "llama3": "llama3"}


# axolotl's unsloth_* switches, removed in favour of its own LoRA kernels (same effect: speed only).
_UNSLOTH_KERNELS = {
    "unsloth_lora_mlp": "lora_mlp_kernel",
    "unsloth_lora_qkv": "lora_qkv_kernel",
    "unsloth_lora_o": "lora_o_kernel",
    "unsloth_cross_entropy_loss": "cut_cross_entropy",
    "unsloth_rms_norm": "liger_rms_norm",
    "unsloth_rope": "liger_rope",
}


def translate_retired(raw: dict[str, Any], where: str) -> list[str]:
    """Rewrite retired spellings in place; one warning per retired line, with its modern form."""
    warnings = _retired_top_level(raw, where)
    for list_key in ("datasets", "test_datasets"):
        entries = raw.get(list_key)
        if not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and isinstance(entry.get("type"), str) and entry["type"].startswith("sharegpt"):
                note = _modern_sharegpt(entry, f"{where}: '{list_key}[{i}]'")
                warnings.append(
                    f"{where}: '{list_key}[{i}].type: {note} is a retired axolotl spelling (axolotl 0.19 refuses "
                    f"it); it runs as this modern form, which you can paste in its place: - {_one_line(entry)}"
                )
    return warnings


def _retired_top_level(raw: dict[str, Any], where: str) -> list[str]:
    warnings = []
    for old, new in _UNSLOTH_KERNELS.items():
        if raw.get(old):
            del raw[old]  # speed only: the model's own layers compute the same
            warnings.append(
                f"{where}: '{old}' is a retired axolotl spelling (axolotl 0.19 refuses it; its modern form is "
                f"'{new}: true'); it only changes speed, and has no effect in hpcft"
            )
    if raw.get("rope_scaling") is not None:
        warnings.append(
            f"{where}: top-level 'rope_scaling' is a retired axolotl spelling (axolotl 0.19 refuses it); it runs "
            f"as written; its modern form: model_config: {_one_line({'rope_scaling': raw['rope_scaling']})}"
        )
    if raw.get("max_packed_sequence_len"):
        length = raw["max_packed_sequence_len"]
        warnings.append(
            f"{where}: 'max_packed_sequence_len' is a retired axolotl spelling (axolotl 0.19 refuses it); it runs as "
            f"its modern form: sample_packing: true with sequence_len: {length} (or the smaller sequence_len set)"
        )
    return warnings


def _modern_sharegpt(entry: dict[str, Any], name: str) -> str:
    """Rewrite one sharegpt entry in place; returns the retired type as written."""
    retired = entry["type"]
    loader, _, conversation = retired.partition(":")
    if loader not in _SHAREGPT_LOADERS:
        raise ValueError(
            f"{name}: 'type: {retired}' is a retired axolotl type (axolotl 0.19 refuses it too) with no "
            "modern form hpcft can run; convert the rows to messages and use type: chat_template"
        )
    field_messages, mappings, roles = _SHAREGPT_LOADERS[loader]
    conversation = entry.pop("conversation", None) or conversation or None
    field_human, field_model = entry.pop("field_human", None), entry.pop("field_model", None)
    entry.pop("strict", None)  # the old loader's "take the rows as written": the mappings below say it
    entry["type"] = "chat_template"
    entry.setdefault("field_messages", field_messages)
    entry.setdefault("message_property_mappings", mappings)
    if field_human or field_model:  # the role names the data uses for the human and the model
        roles = {"user": [field_human or "human"], "assistant": [field_model or "gpt"], "system": ["system"]}
    if roles:
        entry.setdefault("roles", roles)
    if conversation in _CONVERSATION_TEMPLATES:
        entry.setdefault("chat_template", _CONVERSATION_TEMPLATES[conversation])
    elif conversation:
        return (
            f"{retired}' with 'conversation: {conversation}' (no chat template of that name: the config's "
            "chat_template, else the tokenizer's own, renders the turns)"
        )
    return retired + "'"


def _one_line(entry: dict[str, Any]) -> str:
    return yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=10_000).strip()
