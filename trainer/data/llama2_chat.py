"""type: llama2_chat — axolotl's Llama 2 chat strategy (after FastChat's): `conversations` of {from, value} written as
`[INST] <<SYS>>\\n…\\n<</SYS>>\\n\\nQ [/INST] A </s><s>[INST] Q [/INST] A </s><s>`, the answers trained.

The masking is axolotl's arithmetic, which assumes Llama 2's tokenizer (`</s><s>` as two tokens, a BOS on every
piece): each turn's length is counted on its own and the spans are laid out by those counts; when the total does
not come out equal to the tokens of the whole text, axolotl trains nothing in that row (and hpcft, like for any
row with nothing to train, drops it). axolotl pads each row to sequence_len; hpcft leaves the padding out (those
positions are neither attended nor trained there, so the loss is the same).
"""

from __future__ import annotations

from typing import Any

from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig, TrainConfig
from hpcft.trainer.data.formats import IGNORE_INDEX, Sample

DEFAULT_SYSTEM = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering "
    "something not correct. If you don't know the answer to a question, please don't share false information."
)
USER, ASSISTANT = "[INST]", "[/INST]"
TURN_END = " </s><s>"
# axolotl's fix for Llama 2's vocabulary: "▁[" (29961) inside the text is written as "[" (518).
LLAMA_SPACE_BRACKET, LLAMA_BRACKET = 29961, 518


def conversation_text(messages: list[dict[str, Any]], where: str) -> str:
    """The conversation as axolotl's Llama2ChatConversation.get_prompt writes it."""
    system = DEFAULT_SYSTEM
    if messages and messages[0].get("from") == "system":
        system, messages = messages[0].get("value"), messages[1:]
    if len(messages) < 2:
        raise ConfigError(f"{where}: llama2_chat needs a human message and a gpt answer")
    roles = {"human": USER, "gpt": ASSISTANT}
    if roles.get(messages[0].get("from")) != USER:  # axolotl skips a first message that is not the human's
        messages = messages[1:]
    turns = []
    for j, message in enumerate(messages):
        role = roles.get(message.get("from"))
        if role != (USER, ASSISTANT)[j % 2]:
            raise ConfigError(f"{where}, message {j}: roles must alternate human, gpt (after an optional system)")
        if message.get("value"):
            turns.append((role, message["value"]))
    text = ""
    for i, (role, message) in enumerate(turns):
        if i == len(turns) - 1 and role == USER:  # a last question without an answer is left out
            break
        if i == 0:
            text += f"{USER} <<SYS>>\n{system}\n<</SYS>>\n\n{message.strip()}"
        else:
            text += f"{role} {message.strip()}{(' ', TURN_END)[i % 2]}"
    return text


class Llama2ChatFormatter:
    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name, self.max_length = tokenizer, name, cfg.sequence_len

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        where = f"{self.name}: row {row_no}"
        messages = row.get("conversations")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ConfigError(f"{where}: 'conversations' must be a list of {{from, value}} (type llama2_chat)")
        text = conversation_text(messages, where)
        ids = self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]
        pad = self.tokenizer.pad_token_id
        total = sum(token != pad for token in ids)
        labels = list(ids)

        def mask(start: int, stop: int) -> None:
            for k in range(start, min(stop, len(labels))):
                labels[k] = IGNORE_INDEX

        length = 1
        mask(0, 1)
        for turn in text.split(TURN_END):
            parts = turn.split(ASSISTANT)
            if turn == "" or len(parts) != 2:
                break
            instruction = self._count(parts[0] + ASSISTANT) - 1  # "-1": axolotl's offset for Llama's tokenizer
            mask(length - 1, length + instruction)
            length += self._count(turn) + 2  # "+2": </s><s> as Llama 2 tokenizes them
        mask(length, len(labels))
        if length < self.max_length and length != total:  # axolotl's "tokenization mismatch": nothing trained
            labels = [IGNORE_INDEX] * len(labels)
        for i in range(2, total - 2):
            ids[i] = LLAMA_BRACKET if ids[i] == LLAMA_SPACE_BRACKET else ids[i]
            labels[i] = LLAMA_BRACKET if labels[i] == LLAMA_SPACE_BRACKET else labels[i]
        return [(ids, labels)]
