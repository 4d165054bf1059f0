"""Turn raw rows into input_ids/labels/attention_mask with axolotl's semantics for each dataset `type`.

Labels are -100 exactly on the tokens not trained. Length policy (axolotl's default excess_length_strategy
"drop"): a chat_template/alpaca/pretokenized sample longer than sequence_len is DROPPED (never truncated, so no
answer is cut in half); a `completion` text is split into sequence_len chunks, as axolotl does. Samples shorter
than 2 tokens (axolotl's min_sample_len) and samples with no trained token are dropped too; all drops are counted.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import datasets

from hpcft.launcher.errors import ConfigError
from hpcft.launcher.schema import DatasetConfig, TrainConfig

IGNORE_INDEX = -100
MIN_SAMPLE_LEN = 2  # axolotl's min_sample_len default
KEPT, TOO_LONG, NO_TRAINABLE, TOO_SHORT = "kept", "dropped_too_long", "dropped_no_trainable", "dropped_too_short"
STATUSES = (KEPT, TOO_LONG, NO_TRAINABLE, TOO_SHORT)

# Chat templates that can be named in `chat_template:` (as axolotl's). Others: chat_template: jinja.
NAMED_CHAT_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
}
# axolotl's default role names (replaced, not extended, when `roles:` is set).
DEFAULT_ROLES = {"human": "user", "user": "user", "assistant": "assistant", "gpt": "assistant",
                 "system": "system", "tool": "tool"}
# axolotl's alpaca prompt (AlpacaPrompter, instruct style).
ALPACA_SYSTEM = ("Below is an instruction that describes a task, paired with an input that provides further "
                 "context. Write a response that appropriately completes the request.")
ALPACA_SYSTEM_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately "
                          "completes the request.")
# A character no real message starts or ends with: rendering it in place of a turn's content shows where the
# template put that content.
_SENTINEL = "\ue000"

Sample = tuple[list[int], list[int]]  # (input_ids, labels)


def resolve_chat_template(ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str) -> str:
    """The Jinja chat template for a dataset: the dataset's choice, else the config's, else the tokenizer's."""
    choice, jinja = (ds.chat_template, ds.chat_template_jinja) if (
        ds.chat_template or ds.chat_template_jinja) else (cfg.chat_template, cfg.chat_template_jinja)
    if choice in (None, "jinja") and jinja:
        return jinja
    choice = choice or "tokenizer_default"
    if choice.startswith("tokenizer_default"):
        if tokenizer.chat_template:
            return tokenizer.chat_template
        fallback = choice.removeprefix("tokenizer_default_fallback_")
        if fallback != choice and fallback in NAMED_CHAT_TEMPLATES:
            return NAMED_CHAT_TEMPLATES[fallback]
        raise ConfigError(f"{name}: the tokenizer has no chat_template; set chat_template: chatml, or "
                          "chat_template: jinja with chat_template_jinja")
    if choice in NAMED_CHAT_TEMPLATES:
        return NAMED_CHAT_TEMPLATES[choice]
    raise ConfigError(f"{name}: unknown chat_template '{choice}'; use tokenizer_default, "
                      f"{', '.join(NAMED_CHAT_TEMPLATES)} or jinja (with chat_template_jinja)")


class ChatTemplateFormatter:
    """type: chat_template — render the conversation with the template; train the content of roles_to_train turns.

    A turn's content span is found by rendering the conversation again with that content replaced by a sentinel:
    the common prefix and suffix of the two renderings bound the content in characters, and the tokenizer's offset
    mapping turns characters into tokens (any token overlapping the content is trained, as axolotl's token diff
    does). This needs no assumption that the template renders prefixes of a conversation stably.
    """

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name, self.field = tokenizer, name, ds.field_messages
        self.template = resolve_chat_template(ds, cfg, tokenizer, name)
        self.role_key, self.content_key = ds.role_key(), ds.content_key()
        self.roles = {src: dst for dst, sources in ds.roles.items() for src in sources} if ds.roles else DEFAULT_ROLES
        self.roles_to_train = {self.roles.get(r, r) for r in (ds.roles_to_train or ["assistant"])}
        self.train_on_eos = ds.train_on_eos or "turn"  # axolotl's default
        self.train_on_inputs = cfg.train_on_inputs if ds.train_on_inputs is None else ds.train_on_inputs
        self.drop_system_message = bool(ds.drop_system_message)
        self.eos_id = tokenizer.eos_token_id
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"{name}: type chat_template needs a fast tokenizer (tokenizer_use_fast: true)")

    def turns(self, row: dict, row_no: int) -> list[dict[str, str]]:
        messages = row.get(self.field)
        where = f"{self.name}: row {row_no}"
        if messages is None:
            raise ConfigError(f"{where}: missing field '{self.field}' (set field_messages:)")
        if isinstance(messages, str):  # some datasets store the conversation as a JSON string
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: '{self.field}' is a string but not JSON ({exc})") from None
        if not isinstance(messages, list) or not messages:
            raise ConfigError(f"{where}: '{self.field}' must be a non-empty list of messages")
        turns = []
        for j, message in enumerate(messages):
            if not isinstance(message, dict):
                raise ConfigError(f"{where}, message {j}: a message must be a mapping, not {type(message).__name__}")
            role, content = message.get(self.role_key), message.get(self.content_key)
            if role is None or content is None:
                missing = self.role_key if role is None else self.content_key
                raise ConfigError(f"{where}, message {j}: missing key '{missing}' (set message_property_mappings:)")
            if not isinstance(content, str):
                raise ConfigError(f"{where}, message {j}: '{self.content_key}' must be a string")
            turns.append({"role": self.roles.get(role, role), "content": content})
        if turns[0]["role"] != "system" and row.get("system"):  # axolotl's field_system
            turns.insert(0, {"role": "system", "content": row["system"]})
        if self.drop_system_message and turns[0]["role"] == "system":
            turns = turns[1:]
        return turns

    def render(self, turns: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(turns, chat_template=self.template, tokenize=False,
                                                  add_generation_prompt=False)

    def content_span(self, turns: list[dict[str, str]], index: int, text: str) -> tuple[int, int]:
        """Characters [start, end) of turns[index]'s content in the rendered text."""
        probe = self.render([*turns[:index], {**turns[index], "content": _SENTINEL}, *turns[index + 1:]])
        limit = min(len(text), len(probe))
        start = next((i for i in range(limit) if text[i] != probe[i]), limit)
        suffix = next((i for i in range(limit - start) if text[-1 - i] != probe[-1 - i]), limit - start)
        return start, len(text) - suffix

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        turns = self.turns(row, row_no)
        text = self.render(turns)
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        token_starts, token_ends = [a for a, _ in offsets], [b for _, b in offsets]
        labels = [IGNORE_INDEX] * len(ids)
        last_eos = -1
        for index, turn in enumerate(turns):
            train = self.train_on_inputs or turn["role"] in self.roles_to_train
            if not train and self.train_on_eos != "all":
                continue
            start, end = self.content_span(turns, index, text)
            if end <= start:  # empty content: nothing to train, no end-of-turn to find (as axolotl)
                continue
            # Tokens overlapping [start, end): from the first ending after `start` to the last starting before `end`.
            first, after = bisect.bisect_right(token_ends, start), bisect.bisect_left(token_starts, end)
            if train:
                labels[first:after] = ids[first:after]
            # The end-of-turn token: the first EOS within 3 tokens after the content (axolotl's tolerance).
            eos = next((t for t in range(after, min(after + 4, len(ids))) if ids[t] == self.eos_id), -1)
            if eos != -1:
                last_eos = eos
                if self.train_on_eos == "all" or (self.train_on_eos == "turn" and train):
                    labels[eos] = ids[eos]
        if self.train_on_eos == "last" and last_eos != -1:
            labels[last_eos] = ids[last_eos]
        return [(ids, labels)]


class CompletionFormatter:
    """type: completion — raw text (`field`, default "text"), BOS + text + EOS, every token trained.

    Long texts are split into sequence_len chunks (axolotl tokenizes up to 64 x sequence_len, then chunks).
    """

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name, self.field = tokenizer, name, ds.field or "text"
        self.sequence_len = cfg.sequence_len

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        text = row.get(self.field)
        if text is None:
            raise ConfigError(f"{self.name}: row {row_no}: missing field '{self.field}' (set field:)")
        max_length = self.sequence_len * 64
        ids = self.tokenizer(text, truncation=True, max_length=max_length)["input_ids"] if text else []
        if ids and ids[-1] != self.tokenizer.eos_token_id and len(ids) < max_length:
            ids = ids + [self.tokenizer.eos_token_id]
        chunks = [ids[i:i + self.sequence_len] for i in range(0, len(ids), self.sequence_len)] or [[]]
        return [(chunk, list(chunk)) for chunk in chunks]


class AlpacaFormatter:
    """type: alpaca — axolotl's instruct prompt; the response (+EOS) is trained, the prompt only if train_on_inputs."""

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name = tokenizer, name
        self.train_on_inputs = cfg.train_on_inputs if ds.train_on_inputs is None else ds.train_on_inputs

    @staticmethod
    def prompt(instruction: str, input_text: str) -> str:
        if input_text:
            return f"{ALPACA_SYSTEM}\n\n### Instruction:\n{instruction}\n\n### Input:\n{input_text}\n\n### Response:\n"
        return f"{ALPACA_SYSTEM_NO_INPUT}\n\n### Instruction:\n{instruction}\n\n### Response:\n"

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        for key in ("instruction", "output"):
            if row.get(key) is None:
                raise ConfigError(f"{self.name}: row {row_no}: missing field '{key}' (alpaca rows need "
                                  "instruction, output and optionally input)")
        prompt_ids = self.tokenizer(self.prompt(row["instruction"], row.get("input") or ""))["input_ids"]
        response_ids = self.tokenizer(row["output"], add_special_tokens=False)["input_ids"]
        response_ids = response_ids + [self.tokenizer.eos_token_id]
        ids = prompt_ids + response_ids
        prompt_labels = list(prompt_ids) if self.train_on_inputs else [IGNORE_INDEX] * len(prompt_ids)
        return [(ids, prompt_labels + response_ids)]


class PretokenizedFormatter:
    """No type — rows already hold input_ids (and optionally labels, attention_mask); passed through."""

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.name = name

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        ids = row.get("input_ids")
        if ids is None:
            raise ConfigError(f"{self.name}: row {row_no}: no input_ids; set type: (chat_template, completion, "
                              "alpaca) for raw data")
        labels = row.get("labels")
        labels = list(ids) if labels is None else labels
        mask = row.get("attention_mask")
        if len(labels) != len(ids) or (mask is not None and len(mask) != len(ids)):
            raise ConfigError(f"{self.name}: row {row_no}: labels/attention_mask length differs from input_ids")
        if mask is not None:  # a pretokenized row may carry its own padding: never train on it
            labels = [lab if m else IGNORE_INDEX for lab, m in zip(labels, mask, strict=True)]
        return [(list(ids), list(labels))]


FORMATTERS: dict[str | None, type] = {"chat_template": ChatTemplateFormatter, "completion": CompletionFormatter,
                                      "alpaca": AlpacaFormatter, None: PretokenizedFormatter}


def make_formatter(ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str) -> Callable[[dict, int], list]:
    """The row -> [(input_ids, labels), ...] function for a dataset entry's type."""
    return FORMATTERS[ds.type](ds, cfg, tokenizer, name)


def sample_status(ids: list[int], labels: list[int], sequence_len: int, min_len: int = MIN_SAMPLE_LEN) -> str:
    """Why a formatted sample is kept or dropped (axolotl's order: length first, then trainable tokens)."""
    if len(ids) > sequence_len:
        return TOO_LONG
    if len(ids) < min_len:
        return TOO_SHORT
    if all(label == IGNORE_INDEX for label in labels):
        return NO_TRAINABLE
    return KEPT


def tokenize_dataset(dataset: datasets.Dataset, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str,
                     num_proc: int | None = None) -> tuple[datasets.Dataset, Counter]:
    """Format every row of one entry; return the kept samples and the counts per status (see STATUSES)."""
    formatter = make_formatter(ds, cfg, tokenizer, name)

    def format_batch(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": [], "labels": [], "status": []}
        for position, index in enumerate(indices):
            row = {key: values[position] for key, values in batch.items()}
            for ids, labels in formatter(row, index + 1):  # row numbers are 1-based, as in an editor
                out["input_ids"].append(ids)
                out["labels"].append(labels)
                out["status"].append(sample_status(ids, labels, cfg.sequence_len, cfg.min_sample_len))
        return out

    formatted = dataset.map(format_batch, batched=True, with_indices=True, remove_columns=dataset.column_names,
                            num_proc=num_proc if num_proc and num_proc > 1 and len(dataset) > 1000 else None,
                            desc=f"Tokenizing {name}")
    counts = Counter(formatted["status"])
    kept = formatted.filter(lambda status: status == KEPT, input_columns="status")
    return kept.remove_columns("status"), counts
