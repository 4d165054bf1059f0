"""The chat templates that `chat_template:` can name (axolotl's names), shipped as hpcft's own Jinja files.

Torch-free: the launcher checks names with it on the login node; the trainer reads the template text from it.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources

# Every name axolotl's `chat_template` accepts that selects a bundled template (one file each under
# templates/chat/). `tokenizer_default`, `tokenizer_default_fallback_<name>` and `jinja` are the other choices.
CHAT_TEMPLATE_NAMES: tuple[str, ...] = (
    "alpaca",
    "aya",
    "chatml",
    "cohere",
    "command_a",
    "command_a_rag",
    "command_a_tool_use",
    "deepseek_v2",
    "deepseek_v3",
    "exaone",
    "exaone4",
    "falcon_h1",
    "gemma",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma4_unified",
    "jamba",
    "llama3",
    "llama3_2_vision",
    "llama4",
    "llava",
    "metharme",
    "mistral_v1",
    "mistral_v2v3",
    "mistral_v3_tekken",
    "mistral_v7_tekken",
    "nemotron_h",
    "phi_3",
    "phi_35",
    "phi_4",
    "pixtral",
    "qwen2_vl",
    "qwen3",
    "qwen3_5",
    "qwen_25",
)
# The token a shipped template writes at the end of a turn, where it writes a fixed one (the others write the
# tokenizer's own EOS, or nothing: llava). Training it needs it to be the tokenizer's EOS or in `eot_tokens`.
END_OF_TURN: dict[str, str] = {
    **dict.fromkeys(
        ("chatml", "nemotron_h", "falcon_h1", "qwen_25", "qwen2_vl", "qwen3", "qwen3_5", "phi_4"), "<|im_end|>"
    ),
    **dict.fromkeys(("llama3", "llama3_2_vision"), "<|eot_id|>"),
    "llama4": "<|eot|>",
    **dict.fromkeys(("gemma", "gemma3", "gemma3n"), "<end_of_turn>"),
    **dict.fromkeys(("gemma4", "gemma4_unified"), "<turn|>"),
    **dict.fromkeys(("phi_3", "phi_35"), "<|end|>"),
    "deepseek_v3": "<｜end▁of▁sentence｜>",
    **dict.fromkeys(("cohere", "aya", "command_a", "command_a_tool_use", "command_a_rag"), "<|END_OF_TURN_TOKEN|>"),
    "jamba": "<|eom|>",
    **dict.fromkeys(("exaone", "exaone4"), "[|endofturn|]"),
}
TOKENIZER_DEFAULT = "tokenizer_default"
FALLBACK_PREFIX = "tokenizer_default_fallback_"
JINJA = "jinja"


@cache
def chat_template_text(name: str) -> str:
    """The Jinja text of a named template (KeyError for a name not in CHAT_TEMPLATE_NAMES)."""
    if name not in CHAT_TEMPLATE_NAMES:
        raise KeyError(name)
    return resources.files("hpcft.templates").joinpath("chat", f"{name}.jinja").read_text(encoding="utf-8")


def chat_template_choice_error(choice: str) -> str | None:
    """Why `chat_template: <choice>` cannot work (None when it can), checked without a tokenizer."""
    if choice in CHAT_TEMPLATE_NAMES or choice in (TOKENIZER_DEFAULT, JINJA):
        return None
    if choice.startswith(FALLBACK_PREFIX):
        fallback = choice.removeprefix(FALLBACK_PREFIX)
        if fallback in CHAT_TEMPLATE_NAMES:
            return None
        return (
            f"chat_template '{choice}': '{fallback}' is not a chat template hpcft ships; use "
            f"{FALLBACK_PREFIX}<name> with one of: {', '.join(CHAT_TEMPLATE_NAMES)}"
        )
    close = difflib.get_close_matches(choice, [TOKENIZER_DEFAULT, JINJA, *CHAT_TEMPLATE_NAMES], n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return (
        f"unknown chat_template '{choice}'{hint} (use {TOKENIZER_DEFAULT}, {JINJA} with chat_template_jinja, "
        f"{FALLBACK_PREFIX}<name> or one of: {', '.join(CHAT_TEMPLATE_NAMES)})"
    )


def end_of_turn_token(template: str) -> str | None:
    """The fixed end-of-turn token of a shipped template given its text (None for other templates)."""
    return next((END_OF_TURN.get(name) for name in CHAT_TEMPLATE_NAMES if chat_template_text(name) == template), None)
