"""Turn raw rows into input_ids/labels/attention_mask with axolotl's semantics for each dataset `type`.

Labels are -100 exactly on the tokens not trained. Length policy (axolotl's default excess_length_strategy
"drop"): a chat_template/alpaca/pretokenized sample longer than sequence_len is DROPPED (never truncated, so no
answer is cut in half); a `completion` text is split into sequence_len chunks, as axolotl does. Samples shorter
than 2 tokens (axolotl's min_sample_len) and samples with no trained token are dropped too; all drops are counted.
"""

from __future__ import annotations

import bisect
import json
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import datasets

from hpcft.core.chat_templates import (
    FALLBACK_PREFIX,
    JINJA,
    TOKENIZER_DEFAULT,
    chat_template_choice_error,
    chat_template_text,
    end_of_turn_token,
)
from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig, TrainConfig

IGNORE_INDEX = -100
MIN_SAMPLE_LEN = 2  # axolotl's min_sample_len default
KEPT, TOO_LONG, NO_TRAINABLE, TOO_SHORT = "kept", "dropped_too_long", "dropped_no_trainable", "dropped_too_short"
STATUSES = (KEPT, TOO_LONG, NO_TRAINABLE, TOO_SHORT)

# axolotl's default role names (replaced, not extended, when `roles:` is set).
DEFAULT_ROLES = {
    "human": "user",
    "user": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "system": "system",
    "tool": "tool",
}
# axolotl's alpaca prompt (AlpacaPrompter, instruct style).
ALPACA_SYSTEM = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request."
)
ALPACA_SYSTEM_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)
# split_thinking (axolotl's pairs): the reasoning markers an answer may carry, and the optional solution markers.
THINKING_PAIRS = (
    ("<think>", "</think>"),
    ("<reasoning>", "</reasoning>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
)
SOLUTION_PAIR = ("<|begin_of_solution|>", "<|end_of_solution|>")
# A character no real message starts or ends with: rendering it in place of a turn's content shows where the
# template put that content.
_SENTINEL = "\ue000"

Sample = tuple[list[int], list[int]]  # (input_ids, labels)


def resolve_chat_template(ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str) -> str:
    """The Jinja chat template for a dataset: the dataset's choice, else the config's, else the tokenizer's."""
    choice, jinja = (
        (ds.chat_template, ds.chat_template_jinja)
        if (ds.chat_template or ds.chat_template_jinja)
        else (cfg.chat_template, cfg.chat_template_jinja)
    )
    if choice in (None, JINJA) and jinja:
        return jinja
    choice = choice or TOKENIZER_DEFAULT
    error = chat_template_choice_error(choice)
    if error:
        raise ConfigError(f"{name}: {error}")
    if choice == JINJA:
        raise ConfigError(f"{name}: chat_template: jinja needs chat_template_jinja (the template text)")
    if choice.startswith(TOKENIZER_DEFAULT):
        if tokenizer.chat_template:
            return tokenizer.chat_template
        if choice.startswith(FALLBACK_PREFIX):
            return chat_template_text(choice.removeprefix(FALLBACK_PREFIX))
        raise ConfigError(
            f"{name}: the tokenizer has no chat_template; name one (e.g. chat_template: chatml), "
            f"use {FALLBACK_PREFIX}<name>, or chat_template: jinja with chat_template_jinja"
        )
    return chat_template_text(choice)


def split_thinking(content: str, thinking_key: str = "reasoning_content") -> dict[str, str]:
    """axolotl's split_thinking: the first marked reasoning becomes `thinking_key` (the dataset's
    template_thinking_key), the rest the content (the text between solution markers, when it has them). Nothing
    when the answer carries no reasoning markers."""
    for opening, closing in THINKING_PAIRS:
        if opening in content and closing in content:
            start, end = content.find(opening), content.find(closing)
            rest = content[end + len(closing) :].lstrip()
            if SOLUTION_PAIR[0] in rest and SOLUTION_PAIR[1] in rest:
                rest = rest[rest.find(SOLUTION_PAIR[0]) + len(SOLUTION_PAIR[0]) : rest.find(SOLUTION_PAIR[1])].strip()
            return {thinking_key: content[start + len(opening) : end].strip(), "content": rest}
    return {}


class ChatTemplateFormatter:
    """type: chat_template — render the conversation with the template; train the content of roles_to_train turns.

    A turn's span is found by rendering the conversation again with that turn replaced by one holding only its role
    and a sentinel content (as axolotl's dummy turn: whatever else the template renders from the message, such as
    its reasoning_content, belongs to the span too): the common prefix and suffix of the two renderings bound the
    span in characters, and the tokenizer's offset mapping turns characters into tokens (any token overlapping the
    span is trained, as axolotl's token diff does). This needs no assumption that the template renders prefixes of
    a conversation stably.

    End of turn (axolotl's eot_tokens/train_on_eot): the first of `eot_tokens` (default: the EOS token) within 3
    tokens after a span is trained as `train_on_eot` says (default: as train_on_eos); the EOS token as
    `train_on_eos` says.
    """

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name, self.field = tokenizer, name, ds.field_messages
        self.template = resolve_chat_template(ds, cfg, tokenizer, name)
        # target key -> key in the data (axolotl: role and content always mapped, defaults to themselves). The
        # reasoning trace is read from field_thinking and handed to the template as template_thinking_key, unless
        # message_property_mappings maps that key itself.
        field_thinking, self.thinking_key = ds.thinking_keys()
        self.mappings = {
            self.thinking_key: field_thinking,
            **(ds.message_property_mappings or {}),
            "role": ds.role_key(),
            "content": ds.content_key(),
        }
        self.roles = {src: dst for dst, sources in ds.roles.items() for src in sources} if ds.roles else DEFAULT_ROLES
        self.roles_to_train = {self.roles.get(r, r) for r in (ds.roles_to_train or ["assistant"])}
        self.train_on_eos = ds.train_on_eos or "turn"  # axolotl's default
        self.train_on_eot = ds.train_on_eot or self.train_on_eos
        self.train_on_inputs = cfg.train_on_inputs if ds.train_on_inputs is None else ds.train_on_inputs
        self.drop_system_message = bool(ds.drop_system_message)
        self.split_thinking = bool(ds.split_thinking)
        self.eos_ids = {tokenizer.eos_token_id} - {None}
        self.eot_ids = self._eot_token_ids(cfg.eot_tokens)
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"{name}: type chat_template needs a fast tokenizer (tokenizer_use_fast: true)")

    def _eot_token_ids(self, eot_tokens: list[str] | None) -> set[int]:
        """Token ids that end a turn; axolotl's checks: tokens missing from the template are ignored (with a
        warning), a token the tokenizer splits is an error, and so is EOS among them with another train_on_eot."""
        eos = self.tokenizer.eos_token
        if eot_tokens is None or eot_tokens == [eos]:  # axolotl's default, and its one unchecked case
            if eos and eos not in self.template and "eos_token" not in self.template:
                token = end_of_turn_token(self.template)
                hint = f"eot_tokens: ['{token}']" if token else "eot_tokens: to the template's end-of-turn token(s)"
                warnings.warn(
                    f"{self.name}: the EOS token '{eos}' does not occur in the chat template, so no end of "
                    f"turn is trained; set {hint}",
                    stacklevel=2,
                )
            return set(self.eos_ids)
        ids, kept = set(), []
        for token in eot_tokens:
            if token not in self.template:  # literally, as axolotl checks (a template's `eos_token` does not count)
                warnings.warn(
                    f"{self.name}: eot_tokens: '{token}' does not occur in the chat template; ignored", stacklevel=2
                )
                continue
            kept.append(token)
            encoded = self.tokenizer.encode(token, add_special_tokens=False)
            if len(encoded) != 1:
                raise ConfigError(
                    f"{self.name}: eot_tokens: '{token}' is {len(encoded)} tokens for this tokenizer, "
                    f"not one; add it to the vocabulary with tokens: ['{token}'] (or use a token it "
                    "already has)"
                )
            ids.add(encoded[0])
        if eos in kept and self.train_on_eos != self.train_on_eot:
            raise ConfigError(
                f"{self.name}: the EOS token '{eos}' is in eot_tokens, so train_on_eos "
                f"({self.train_on_eos}) and train_on_eot ({self.train_on_eot}) must be the same; "
                "set them equal or remove the EOS token from eot_tokens"
            )
        return ids

    def turns(self, row: dict, row_no: int) -> list[dict[str, Any]]:
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
        sources = set(self.mappings.values())
        turns = []
        for j, message in enumerate(messages):
            if not isinstance(message, dict):
                raise ConfigError(f"{where}, message {j}: a message must be a mapping, not {type(message).__name__}")
            turn = {key: message[source] for key, source in self.mappings.items() if message.get(source) is not None}
            for key in ("role", "content"):
                if key not in turn:
                    raise ConfigError(
                        f"{where}, message {j}: missing key '{self.mappings[key]}' (set message_property_mappings:)"
                    )
            if not isinstance(turn["content"], str):
                raise ConfigError(f"{where}, message {j}: '{self.mappings['content']}' must be a string")
            # Other keys (reasoning_content, name, ...) reach the template as they are, as in axolotl; columnar
            # formats fill absent keys with None, which means absent.
            for key, value in message.items():
                if key not in sources and value is not None:
                    turn.setdefault(key, value)
            turn["role"] = self.roles.get(turn["role"], turn["role"])
            if self.split_thinking and turn["role"] == "assistant":
                turn.update(split_thinking(turn["content"], self.thinking_key))
            turns.append(turn)
        # axolotl's field_system: a `system` column becomes the system turn, even when it is empty.
        if turns[0]["role"] != "system" and row.get("system") is not None:
            turns.insert(0, {"role": "system", "content": row["system"]})
        if self.drop_system_message and turns[0]["role"] == "system":
            turns = turns[1:]
        return turns

    def render(self, turns: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(
            turns, chat_template=self.template, tokenize=False, add_generation_prompt=False
        )

    def content_span(self, turns: list[dict[str, Any]], index: int, text: str) -> tuple[int, int]:
        """Characters [start, end) of what turns[index] adds to the rendered text beyond its role's frame."""
        probe = self.render([*turns[:index], {"role": turns[index]["role"], "content": _SENTINEL}, *turns[index + 1 :]])
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
        ends = ((self.eot_ids, self.train_on_eot), (self.eos_ids, self.train_on_eos))
        last = [-1] * len(ends)
        for index, turn in enumerate(turns):
            train = self.train_on_inputs or turn["role"] in self.roles_to_train
            if not train and self.train_on_eos != "all" and self.train_on_eot != "all":
                continue
            start, end = self.content_span(turns, index, text)
            if end <= start:  # empty content: nothing to train, no end-of-turn to find (as axolotl)
                continue
            # Tokens overlapping [start, end): from the first ending after `start` to the last starting before `end`.
            first, after = bisect.bisect_right(token_ends, start), bisect.bisect_left(token_starts, end)
            if train:
                labels[first:after] = ids[first:after]
            # The end-of-turn token: the first EOT (then EOS) within 3 tokens after the span (axolotl's tolerance).
            for k, (end_ids, option) in enumerate(ends):
                hit = next((t for t in range(after, min(after + 4, len(ids))) if ids[t] in end_ids), -1)
                if hit != -1:
                    last[k] = hit
                    if option == "all" or (option == "turn" and train):
                        labels[hit] = ids[hit]
        for (_, option), hit in zip(ends, last, strict=True):
            if option == "last" and hit != -1:
                labels[hit] = ids[hit]
        return [(ids, labels)]


class CompletionFormatter:
    """type: completion — raw text (`field`, default "text"), BOS + text + EOS, every token trained.

    Long texts are split into sequence_len chunks (axolotl tokenizes up to 64 x sequence_len, then chunks).
    """

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        # text_column: the spelling of axolotl's pretraining_dataset entries (`type: completion` there too)
        self.tokenizer, self.name, self.field = tokenizer, name, ds.field or ds.text_column or "text"
        self.sequence_len = cfg.sequence_len

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        text = row.get(self.field)
        if text is None:
            raise ConfigError(f"{self.name}: row {row_no}: missing field '{self.field}' (set field:)")
        max_length = self.sequence_len * 64
        ids = self.tokenizer(text, truncation=True, max_length=max_length)["input_ids"] if text else []
        if ids and ids[-1] != self.tokenizer.eos_token_id and len(ids) < max_length:
            ids = ids + [self.tokenizer.eos_token_id]
        chunks = [ids[i : i + self.sequence_len] for i in range(0, len(ids), self.sequence_len)] or [[]]
        return [(chunk, list(chunk)) for chunk in chunks]


# axolotl's prompt styles for instruction types (`type: alpaca:chat`): (system frame, turn with input, turn without).
PROMPT_STYLE_FORMATS = {
    "instruct": (
        "{system}\n\n",
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
        "### Instruction:\n{instruction}\n\n### Response:\n",
    ),
    "chat": ("SYSTEM: {system}\n", "USER: {instruction}\n{input}\nASSISTANT:", "USER: {instruction}\nASSISTANT:"),
    "chatml": (
        "<|im_start|>system\n{system}<|im_end|>\n",
        "<|im_start|>user\n{instruction}\n{input}<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n",
    ),
    # As axolotl writes it (no newline around a given input).
    "phi": (
        "<|system|>\n{system}<|end|>\n",
        "<|user|>\n{instruction}<|end|>{input}<|assistant|>",
        "<|user|>\n{instruction}<|end|>\n<|assistant|>\n",
    ),
}


class AlpacaFormatter:
    """type: alpaca — axolotl's instruct prompt; the response (+EOS) is trained, the prompt only if train_on_inputs.
    `alpaca:chat` (`:chatml`, `:phi`, `:instruct`) frames the same prompt in another of axolotl's prompt styles.

    As axolotl: prompt and response are each tokenized with truncation at sequence_len, the response's BOS is
    dropped, and EOS is appended only to a non-empty response that does not already end with it and was not cut
    (so an empty output adds no EOS: such a row has nothing to train and is dropped).
    """

    fields = ("instruction", "output")
    help = "alpaca rows need instruction, output and optionally input"

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name, self.max_length = tokenizer, name, cfg.sequence_len
        self.train_on_inputs = cfg.train_on_inputs if ds.train_on_inputs is None else ds.train_on_inputs
        self.style = str(ds.type).partition(":")[2] or "instruct"

    def prompt(self, instruction: str, input_text: str) -> str:
        system, with_input, without_input = PROMPT_STYLE_FORMATS[self.style]
        if input_text:
            return system.format(system=ALPACA_SYSTEM) + with_input.format(instruction=instruction, input=input_text)
        return system.format(system=ALPACA_SYSTEM_NO_INPUT) + without_input.format(instruction=instruction)

    def parts(self, row: dict) -> tuple[str, str, str]:
        """(instruction, input, output) of a row."""
        return row["instruction"], row.get("input") or "", row["output"]

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"] if text else []

    def texts(self, row: dict, row_no: int) -> tuple[str, str]:
        """(prompt, response) of a row."""
        for key in self.fields:
            if row.get(key) is None:
                raise ConfigError(f"{self.name}: row {row_no}: missing field '{key}' ({self.help})")
        instruction, input_text, output = self.parts(row)
        return self.prompt(instruction, input_text), output

    def _response(self, text: str) -> list[int]:
        ids = self._tokenize(text)
        eos, bos = self.tokenizer.eos_token_id, self.tokenizer.bos_token_id
        if ids and ids[-1] != eos and len(ids) < self.max_length:
            ids.append(eos)
        return ids[1:] if ids and ids[0] == bos else ids

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        prompt, output = self.texts(row, row_no)
        prompt_ids = self._tokenize(prompt)
        response_ids = self._response(output)
        ids = prompt_ids + response_ids
        prompt_labels = list(prompt_ids) if self.train_on_inputs else [IGNORE_INDEX] * len(prompt_ids)
        return [(ids, prompt_labels + response_ids)]


class JeopardyFormatter(AlpacaFormatter):
    """type: jeopardy — axolotl's Jeopardy rows: the question is the instruction, the category the input, and the
    answer is trained as "what is <answer>" (alpaca prompt and masking otherwise)."""

    fields = ("question", "category", "answer")
    help = "jeopardy rows need question, category and answer"

    def parts(self, row: dict) -> tuple[str, str, str]:
        return row["question"], row["category"], "what is " + row["answer"]


class PretrainFormatter:
    """type: pretrain — raw text (`text_column`, default "text") cut into windows, as axolotl's pretraining strategy:
    windows of sequence_len - 1 tokens (the tokenizer's BOS included) that overlap by min(256, (sequence_len - 1) // 2)
    tokens, each followed by EOS; every token is trained."""

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name = tokenizer, name
        self.field = ds.text_column or ds.field or "text"
        self.max_length = cfg.sequence_len

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        text = row.get(self.field)
        if text is None:
            raise ConfigError(f"{self.name}: row {row_no}: missing field '{self.field}' (set text_column:)")
        windows = self.tokenizer(
            text,
            truncation=True,
            max_length=self.max_length - 1,
            return_overflowing_tokens=True,
            stride=min(256, (self.max_length - 1) // 2),
        )["input_ids"]
        if windows and isinstance(windows[0], int):  # a slow tokenizer returns one window
            windows = [windows]
        return [(ids + [self.tokenizer.eos_token_id], ids + [self.tokenizer.eos_token_id]) for ids in windows]


class PretokenizedFormatter:
    """No type — rows already hold input_ids (and optionally labels, attention_mask); passed through.

    Labels given in the data are used exactly as they are (axolotl does not touch them). Without labels every
    token is trained, except positions the row's attention_mask marks as padding.
    """

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.name = name

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        ids = row.get("input_ids")
        if ids is None:
            raise ConfigError(
                f"{self.name}: row {row_no}: no input_ids; set type: (chat_template, completion, alpaca) for raw data"
            )
        labels, mask = row.get("labels"), row.get("attention_mask")
        if (labels is not None and len(labels) != len(ids)) or (mask is not None and len(mask) != len(ids)):
            raise ConfigError(f"{self.name}: row {row_no}: labels/attention_mask length differs from input_ids")
        if labels is None:
            labels = [token if mask is None or mask[i] else IGNORE_INDEX for i, token in enumerate(ids)]
        return [(list(ids), list(labels))]


FORMATTERS: dict[str | None, type] = {
    "chat_template": ChatTemplateFormatter,
    "completion": CompletionFormatter,
    "alpaca": AlpacaFormatter,
    "jeopardy": JeopardyFormatter,
    "pretrain": PretrainFormatter,
    None: PretokenizedFormatter,
}


def make_formatter(ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str) -> Callable[[dict, int], list]:
    """The row -> [(input_ids, labels), ...] function for a dataset entry's type (`alpaca:chat`: alpaca's)."""
    if ds.type == "chat_template" and cfg.tokenizer_use_mistral_common:
        from hpcft.trainer.data.mistral_common import MistralChatFormatter  # imports this module

        return MistralChatFormatter(ds, cfg, tokenizer, name)
    base = ds.type.partition(":")[0] if isinstance(ds.type, str) else ds.type
    if base is not None and not (isinstance(base, str) and base in FORMATTERS):  # other strategies, own formats
        from hpcft.trainer.data.prompt_strategies import strategy_formatter  # imports this module

        return strategy_formatter(ds, cfg, tokenizer, name)
    return FORMATTERS[base](ds, cfg, tokenizer, name)


def sample_status(ids: list[int], labels: list[int], sequence_len: int, min_len: int = MIN_SAMPLE_LEN) -> str:
    """Why a formatted sample is kept or dropped (axolotl's order: length first, then trainable tokens)."""
    if len(ids) > sequence_len:
        return TOO_LONG
    if len(ids) < min_len:
        return TOO_SHORT
    if all(label == IGNORE_INDEX for label in labels):
        return NO_TRAINABLE
    return KEPT


def tokenize_dataset(
    dataset: datasets.Dataset,
    ds: DatasetConfig,
    cfg: TrainConfig,
    tokenizer: Any,
    name: str,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, Counter]:
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

    return map_keeping_kept(dataset, format_batch, name, num_proc)


def map_keeping_kept(
    dataset: datasets.Dataset, format_batch: Any, name: str, num_proc: int | None
) -> tuple[datasets.Dataset, Counter]:
    """Run `format_batch` (rows in, samples with a `status` column out) over the dataset, with row indices; return
    the KEPT samples without their status, and the counts per status."""
    formatted = dataset.map(
        format_batch,
        batched=True,
        with_indices=True,
        remove_columns=dataset.column_names,
        num_proc=num_proc if num_proc and num_proc > 1 and len(dataset) > 1000 else None,
        desc=f"Tokenizing {name}",
    )
    counts = Counter(formatted["status"])
    kept = formatted.filter(lambda status: status == KEPT, input_columns="status")
    return kept.remove_columns("status"), counts
