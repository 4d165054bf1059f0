"""Names accepted for `chat_template:`, torch-free, so the login node refuses an unknown name before the queue.

The templates themselves live with the trainer (trainer/formats.py); tests/trainer/test_chat_template_names.py
checks that both name the same set.
"""

from __future__ import annotations

# Named templates hpcft ships.
CHAT_TEMPLATE_NAMES: tuple[str, ...] = ("chatml",)
# Values that are not a shipped template: the tokenizer's own (optionally falling back to a named one), or the
# Jinja text in chat_template_jinja.
SPECIAL_CHAT_TEMPLATES: tuple[str, ...] = ("tokenizer_default", "jinja")
FALLBACK_PREFIX = "tokenizer_default_fallback_"
