"""type: messages — axolotl's message format (prompt_strategies/messages): each message is framed as ChatML or
Llama 3 writes it, and its pieces (role header, content, end of turn, newline) are tokenized as axolotl's
Messages.tokenized does: the text so far is tokenized again after each piece and a piece keeps as many tokens as it
had, so a piece's tokens follow how the whole text tokenizes. A message is trained (content and end of turn, not
its header) when its weight is 1: the message's own `train` or `weight` key, else assistant messages only (every
message with train_on_inputs).
"""

from __future__ import annotations

from typing import Any

from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig, TrainConfig
from hpcft.trainer.data.formats import IGNORE_INDEX, Sample

ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "tool": "tool",
    "ipython": "ipython",
}
ROLE_KEYS, CONTENT_KEYS, WEIGHT_KEYS = ("role", "from"), ("value", "text", "content"), ("train", "weight")
Piece = tuple[str, bool]  # (text, trained)


def chatml_pieces(role: str, content: str, trained: bool, first: bool) -> list[Piece]:
    return [(f"<|im_start|>{role}\n", False), (content, trained), ("<|im_end|>", trained), ("\n", False)]


def llama3_pieces(role: str, content: str, trained: bool, first: bool) -> list[Piece]:
    header = f"<|start_header_id|>{'ipython' if role == 'tool' else role}<|end_header_id|>\n\n"
    pieces = [(header, False), (content, trained), ("<|eot_id|>", trained)]
    return [("<|begin_of_text|>", False), *pieces] if first else pieces


def message_format(choice: str | None) -> Any:
    """The framing axolotl's messages strategy uses for a chat_template choice (default chatml), or None."""
    choice = choice or "chatml"
    if choice == "chatml":
        return chatml_pieces
    if choice.startswith("llama3"):
        return llama3_pieces
    return None


class MessagesFormatter:
    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name, self.field = tokenizer, name, ds.field_messages
        mappings = ds.message_property_mappings or {}
        self.role_keys = (mappings["role"],) if "role" in mappings else ROLE_KEYS
        self.content_keys = (mappings["content"],) if "content" in mappings else CONTENT_KEYS
        self.train_on_inputs = cfg.train_on_inputs if ds.train_on_inputs is None else ds.train_on_inputs
        self.pieces = message_format(ds.chat_template or cfg.chat_template)
        if self.pieces is None:  # checked on the login node too (core/features/prompt_strategies.py)
            raise ConfigError(f"{name}: type messages writes chatml or llama3 only (chat_template:)")

    def _key(self, message: dict, keys: tuple[str, ...]) -> str | None:
        return next((key for key in keys if key in message), None)

    def messages_pieces(self, messages: list[dict], where: str) -> list[list[Piece]]:
        """Each message as its pieces."""
        # As axolotl: which keys hold role, content and weight is decided by the first message.
        role_key, content_key = self._key(messages[0], self.role_keys), self._key(messages[0], self.content_keys)
        weight_key = self._key(messages[0], WEIGHT_KEYS)
        if role_key is None or content_key is None:
            raise ConfigError(
                f"{where}: the first message has no role ({'/'.join(self.role_keys)}) or content "
                f"({'/'.join(self.content_keys)}) key (set message_property_mappings:)"
            )
        out = []
        for j, message in enumerate(messages):
            role, content = ROLES.get(message.get(role_key)), message.get(content_key)
            if role is None or not isinstance(content, str):
                raise ConfigError(f"{where}, message {j}: role must be one of {', '.join(ROLES)} and content a string")
            if weight_key and not isinstance(message.get(weight_key), (bool, int, float)):
                raise ConfigError(
                    f"{where}, message {j}: '{weight_key}' must be a number or true/false, as in message 0"
                )
            trained = bool(int(message[weight_key])) if weight_key else role == "assistant" or self.train_on_inputs
            out.append(self.pieces(role, content, trained, j == 0))
        return out

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        where = f"{self.name}: row {row_no}"
        messages = row.get(self.field)
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ConfigError(f"{where}: '{self.field}' must be a non-empty list of messages (set field_messages:)")
        ids: list[int] = []
        labels: list[int] = []
        for pieces in self.messages_pieces(messages, where):  # each message is tokenized on its own
            message_ids, message_labels = self._tokenize(pieces)
            ids += message_ids
            labels += message_labels
        return [(ids, labels)]

    def _tokenize(self, pieces: list[Piece]) -> tuple[list[int], list[int]]:
        """A piece's tokens are read off the tokens of the text up to the next piece, as many as it had alone with
        the text before it: a token shared across a boundary is counted with the earlier piece."""
        ids: list[int] = []
        labels: list[int] = []
        text, pending, pending_trained = "", [], False
        for piece, trained in pieces:
            text += piece
            tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if pending:
                pending = tokens[len(ids) : len(ids) + len(pending)]
                labels += pending if pending_trained else [IGNORE_INDEX] * len(pending)
                ids += pending
            pending, pending_trained = tokens[len(ids) :], trained
        labels += pending if pending_trained else [IGNORE_INDEX] * len(pending)
        return ids + pending, labels
