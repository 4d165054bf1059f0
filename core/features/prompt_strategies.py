"""axolotl's other SFT prompt strategies (oasst, alpaca_chat.load_qa, context_qa.load_v2, input_output, user-defined
formats, ...): their `type:` names, the columns each reads, and the user-defined format (`type:` as a mapping).

Torch-free, for the login node: names, columns and formats are checked here; trainer/data/prompt_strategies.py turns
rows into tokens as axolotl's strategy of the same name does.
"""

from __future__ import annotations

import difflib
import string
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

# axolotl's prompt styles (`type: oasst:chat`) and the types that take one (its handlers given `<base>:<style>`).
PROMPT_STYLES = ("instruct", "chat", "chatml", "phi")
STYLED_BASES = (
    "alpaca",
    "jeopardy",
    "oasst",
    "gpteacher",
    "explainchoice",
    "concisechoice",
    "summarizetldr",
    "reflection",
)

_ALPACA = (("instruction",), ("output",))
_CHOICE = (("question",), ("choices",), ("solution", "explanation"))
_ORCA = (("question",), ("response",), ("system_prompt",))
# Each strategy hpcft runs (axolotl's names, `<module>.load` written as `<module>`) -> the columns a row needs,
# each as its accepted spellings.
STRATEGY_COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "oasst": (("INSTRUCTION",), ("RESPONSE",)),
    "gpteacher": (("instruction",), ("response",)),
    "explainchoice": _CHOICE,
    "concisechoice": _CHOICE,
    "summarizetldr": (("article",), ("summary",)),
    "reflection": (("instruction",), ("output",), ("reflection",), ("corrected",)),
    "alpaca_chat": _ALPACA,
    "alpaca_chat.load_concise": _ALPACA,
    "alpaca_chat.load_qa": (("question",), ("answer",)),
    "alpaca_chat.load_camel_ai": (("message_1",), ("message_2",)),
    "alpaca_chat.load_no_prompt": _ALPACA,
    "alpaca_instruct": _ALPACA,
    "alpaca_instruct.load_no_prompt": _ALPACA,
    "alpaca_w_system": (*_ALPACA, ("system",)),
    "alpaca_w_system.load_chat": (*_ALPACA, ("system",)),
    "alpaca_w_system.load_instruct": (*_ALPACA, ("system",)),
    "alpaca_w_system.load_open_orca": _ORCA,
    "alpaca_w_system.load_open_orca_chatml": _ORCA,
    "orcamini": _ORCA,
    "context_qa": (("article",), ("question",), ("answer",)),
    "context_qa.load_404": (("article",), ("unanswerable_question",)),
    "context_qa.load_v2": (("context",), ("question",), ("answer",)),
    "creative_acr.load_answer": (("instruction",), ("revision",)),
    "creative_acr.load_critique": (("instruction",), ("answer",), ("scores",), ("critiques",)),
    "creative_acr.load_revise": (("instruction",), ("answer",), ("scores",), ("critiques",), ("revision",)),
    "metharme": (("prompt",), ("generation",)),
    "input_output": (("segments",),),
    "pygmalion": (("conversations",),),
    "llama2_chat": (("conversations",),),
    "messages": (("messages",),),  # field_messages names the column
}
_MODULES = {name.split(".")[0] for name in STRATEGY_COLUMNS}


def strategy_name(value: str) -> str | None:
    """The strategy a `type:` names (`context_qa.load` is `context_qa`, `oasst:chat` is `oasst`), or None."""
    name = value.removesuffix(".load")
    base, _, style = name.partition(":")
    if base in STYLED_BASES and style in PROMPT_STYLES:
        return base
    return name if name in STRATEGY_COLUMNS else None


def strategy_type_error(value: str) -> str | None:
    """Why a `type:` that looks like one of these strategies is wrong (a loader or style axolotl lacks), or None."""
    if value.split(".")[0] == "user_defined":
        return (
            f"type '{value}': write a user-defined format as a mapping under type: (field_instruction, "
            "field_output, format, no_input_format, ...; docs/datasets.md)"
        )
    base, colon, style = value.partition(":")
    if colon and base in STYLED_BASES:
        return f"type '{value}': unknown prompt style '{style}'; use {base}:" + f", {base}:".join(PROMPT_STYLES)
    module = value.split(".")[0].split(":")[0]
    if module not in _MODULES or value in STRATEGY_COLUMNS:
        return None
    loaders = sorted(n for n in STRATEGY_COLUMNS if n.split(".")[0] == module)
    close = difflib.get_close_matches(value.replace(":", "."), loaders, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"type '{value}': axolotl's {module} has no such loader; {hint}(its loaders: {', '.join(loaders)})"


_FORMAT_PLACEHOLDERS = {
    "format": ("instruction", "input"),
    "no_input_format": ("instruction",),
    "system_format": ("system",),
}


class UserDefinedPromptType(BaseModel):
    """`type:` as a mapping without `rl:` (axolotl's user-defined format): the prompt is `system_format` (when the
    row has a system text) + `format` (`no_input_format` when the input is empty); the output is trained."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    system_prompt: str = ""
    """System text for rows without a `field_system` column."""
    system_format: str = "{system}"
    """How the system text is written; `{system}` is replaced."""
    field_system: str = "system"
    """Column with the system text."""
    field_instruction: str = "instruction"
    """Column with the instruction."""
    field_input: str = "input"
    """Column with the input (optional in a row)."""
    field_output: str = "output"
    """Column with the output (the trained text)."""
    format: str = "{instruction} {input} "
    """The prompt of a row with an input; `{instruction}` and `{input}` are replaced."""
    no_input_format: str = "{instruction} "
    """The prompt of a row without an input; `{instruction}` is replaced."""

    @field_validator("format", "system_format", "no_input_format")
    @classmethod
    def _placeholders(cls, value: str, info: Any) -> str:
        allowed = _FORMAT_PLACEHOLDERS[info.field_name]
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            raise ValueError(f"{exc} (write a literal brace as {{{{ or }}}})") from None
        for name in names:
            if name not in allowed:
                raise ValueError(
                    f"it may use {' and '.join('{' + a + '}' for a in allowed)} only, not {{{name}}} (write a "
                    "literal brace as {{ or }})"
                )
        return value


FORMAT_KEYS = tuple(UserDefinedPromptType.model_fields)
_PREFERENCE_KEYS = ("field_prompt", "field_chosen", "field_rejected", "field_completion", "field_label")


def check_format_mapping(mapping: dict[str, Any], where: str) -> None:
    """Raise ValueError naming the first key a user-defined format does not have."""
    for key in mapping:
        if key in FORMAT_KEYS:
            continue
        if key in _PREFERENCE_KEYS or key.endswith("_format"):
            raise ValueError(f"{where}: '{key}' is a key of a user-defined preference type; it needs rl: (dpo, kto)")
        close = difflib.get_close_matches(str(key), FORMAT_KEYS, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else f" (a user-defined format has {', '.join(FORMAT_KEYS)})"
        raise ValueError(f"{where}: unknown key '{key}'{hint}")


def move_flat_format_fields(entry: dict[str, Any], where: str) -> list[str]:
    """The user-defined format's keys written on a dataset entry itself (a `type:` mapping whose indentation was
    lost). axolotl reads them only under `type:` and drops them here: without a `type` hpcft reads them as that
    mapping (axolotl stops on such an entry); next to a named or mapped `type` they have no effect, as in axolotl.
    Mutates `entry`; returns the warnings."""
    flat = [key for key in FORMAT_KEYS if key in entry]
    if not flat:
        return []
    shown = ", ".join(flat)
    if entry.get("type") is None:
        entry["type"] = {key: entry.pop(key) for key in flat}
        return [
            f"{where}: {shown} written on the dataset entry are read as its type: mapping (axolotl reads them only "
            "under type:; indent them below it)"
        ]
    for key in flat:
        del entry[key]
    return [
        f"{where}: {shown} have no effect next to type: {entry['type']!r} (as in axolotl); for your own format, "
        "write them under type: instead of a type name"
    ]


# Keys only chat_template (or completion) reads: set on an entry of these types they change nothing, in axolotl too.
CHAT_ONLY_KEYS = (
    "field_messages",
    "message_property_mappings",
    "message_field_role",
    "message_field_content",
    "roles",
    "roles_to_train",
    "train_on_eos",
    "train_on_eot",
    "chat_template",
    "chat_template_jinja",
    "drop_system_message",
    "split_thinking",
    "field_thinking",
    "template_thinking_key",
    "field",
)


# The ones type: messages reads.
MESSAGES_KEYS = ("field_messages", "message_property_mappings", "chat_template")


def keys_without_effect(entry: dict[str, Any], where: str) -> list[str]:
    """A warning naming the chat_template/completion keys set on an entry of one of these strategies."""
    kind = entry.get("type")
    if not (isinstance(kind, dict) or isinstance(kind, str) and strategy_name(kind)):
        return []
    read = MESSAGES_KEYS if kind == "messages" else ()
    unused = [key for key in CHAT_ONLY_KEYS if entry.get(key) is not None and key not in read]
    if not unused:
        return []
    shown = "a user-defined format" if isinstance(kind, dict) else f"type: {kind}"
    one = len(unused) == 1
    return [
        f"{where}: {', '.join(unused)} {'has' if one else 'have'} no effect with {shown} (as in axolotl, where "
        f"only chat_template reads {'it' if one else 'them'}; train_on_inputs says whether the prompt is trained)"
    ]


def check_messages_template(datasets: list[Any], chat_template: str | None, where: str) -> None:
    """type: messages frames messages as ChatML or Llama 3 only (axolotl's two formats for it)."""
    for i, ds in enumerate(datasets):
        choice = (ds.chat_template or chat_template or "chatml") if ds.type == "messages" else "chatml"
        if choice != "chatml" and not choice.startswith("llama3"):
            raise ValueError(
                f"{where}[{i}]: type messages writes chatml or llama3 only, not chat_template '{choice}'; "
                "set chat_template: chatml or llama3 on the entry, or use type: chat_template"
            )


def alpaca_chat_conversation(entry: dict[str, Any], where: str) -> None:
    """axolotl's `type: alpaca_chat` reads `conversation:` as its prompt style: that is `type: alpaca:<style>`
    (the same prompter and rows), written so here. Mutates `entry`."""
    if entry.get("type") not in ("alpaca_chat", "alpaca_chat.load") or entry.get("conversation") is None:
        return
    style = entry.pop("conversation")
    if style not in PROMPT_STYLES:
        raise ValueError(
            f"{where}: conversation: {style!r} is not a prompt style of type alpaca_chat; use one of "
            f"{', '.join(PROMPT_STYLES)}"
        )
    entry["type"] = f"alpaca:{style}"
