"""Preference datasets (`rl:`): each row becomes prompt/chosen/rejected text (KTO: prompt/completion/label) with
axolotl's meaning for every dataset type, then token ids, in the preprocessing step (cached like SFT data).

Tokenization follows TRL's preference trainers: the prompt is tokenized alone and with each answer (the tokenizer's
own special tokens, e.g. BOS, included), the answer starts where the two diverge, and the EOS token is appended to
an answer text that does not end with it. A pair whose prompt + answer exceeds sequence_len is dropped (axolotl's
default for rl), never truncated; every drop is counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets

from hpcft.core.errors import ConfigError
from hpcft.core.features.preference_fields import first_missing, required_fields
from hpcft.core.schema import DatasetConfig, TrainConfig, UserDefinedPreferenceType, preference_type_name
from hpcft.trainer.data.formats import KEPT, TOO_LONG, TOO_SHORT, map_keeping_kept, resolve_chat_template

Texts = dict[str, Any]  # {"prompt", "chosen", "rejected"} or {"prompt", "completion", "label"}


@dataclass(frozen=True)
class Family:
    """The hand-written prompt format of axolotl's `chatml.*` / `llama3.*` preference types."""

    system: tuple[str, str]
    user: tuple[str, str]
    assistant: str  # what opens the answer (the generation prompt)
    end: str  # what closes the answer

    def prompt(self, user: str, system: str | None = None) -> str:
        head = self.system[0] + system + self.system[1] if system else ""
        return head + self.user[0] + user + self.user[1] + self.assistant


FAMILIES = {
    "chatml": Family(
        ("<|im_start|>system\n", "<|im_end|>\n"),
        ("<|im_start|>user\n", "<|im_end|>\n"),
        "<|im_start|>assistant\n",
        "<|im_end|>",
    ),
    "llama3": Family(
        ("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"),
        ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|eot_id|>",
    ),
}
_DUMMY_USER = {"role": "user", "content": "[[dummy_message]]"}
DEFAULT_PREFERENCE_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "tool": "tool"}


def _first_present(row: dict, keys: tuple[str, ...]) -> Any:
    return next(row[k] for k in keys if row.get(k) is not None)


def _content(value: Any, index: int, field: str, where: str) -> str:
    """value[index]['content'] of a conversation column, with a clear error when it is not one."""
    try:
        content = value[index]["content"]
    except (IndexError, KeyError, TypeError):
        raise ConfigError(
            f"{where}: '{field}' must be a list of messages with 'content' and at least "
            f"{index + 1 if index >= 0 else 1} entries"
        ) from None
    if not isinstance(content, str):
        raise ConfigError(f"{where}: '{field}'[{index}]['content'] must be a string")
    return content


def family_paired(family: Family, kind: str) -> Callable[[dict, str], Texts]:
    """axolotl's dpo `<family>.<kind>`: a hand-written prompt; answers closed with the family's end token."""

    def texts(row: dict, where: str) -> Texts:
        system = row.get("system") or None
        if kind == "argilla_chat":
            return {
                "prompt": family.prompt(_content(row["chosen"], 0, "chosen", where)),
                "chosen": _content(row["chosen"], 1, "chosen", where) + family.end,
                "rejected": _content(row["rejected"], 1, "rejected", where) + family.end,
            }
        if kind == "ultra":
            return {
                "prompt": family.prompt(row["prompt"], system),
                "chosen": _content(row["chosen"], 1, "chosen", where) + family.end,
                "rejected": _content(row["rejected"], 1, "rejected", where) + family.end,
            }
        prompt_key = {"icr": ("input",), "intel": ("question",), "prompt_pairs": ("prompt",)}.get(
            kind, ("prompt", "input", "question", "instruction")
        )
        return {
            "prompt": family.prompt(_first_present(row, prompt_key), system),
            "chosen": _first_present(row, ("chosen", "chosen_response")) + family.end,
            "rejected": _first_present(row, ("rejected", "rejected_response")) + family.end,
        }

    return texts


def family_kto(family: Family, kind: str) -> Callable[[dict, str], Texts]:
    """axolotl's kto `<family>.<kind>`: prompt and completion as the dpo types, the row's label kept."""

    def texts(row: dict, where: str) -> Texts:
        if kind == "argilla_chat":
            prompt = family.prompt(_content(row["completion"], 0, "completion", where))
            completion = _content(row["completion"], 1, "completion", where)
        else:
            user = row[{"argilla": "instruction", "intel": "question"}.get(kind, "prompt")]
            prompt, completion = family.prompt(user, row.get("system") or None), row["completion"]
        return {"prompt": prompt, "completion": completion + family.end, "label": _label(row["label"], where)}

    return texts


def _label(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) or (isinstance(value, str) and value.lower() in ("true", "false")):
        return value is True or value == 1 or str(value).lower() == "true"
    raise ConfigError(f"{where}: 'label' must be true (desirable) or false (undesirable), got {value!r}")


def zephyr_nectar(row: dict, where: str) -> Texts:
    """axolotl's zephyr.nectar: answers sorted by rank; like axolotl, the last two after sorting are the pair."""
    answers = row["answers"]
    if (
        not isinstance(answers, list)
        or len(answers) < 2
        or not all(isinstance(a, dict) and "answer" in a and "rank" in a for a in answers)
    ):
        raise ConfigError(f"{where}: 'answers' must be a list of at least two {{answer, rank}} objects")
    ranked = sorted(answers, key=lambda a: a["rank"])
    return {
        "prompt": f"<|system|>\n</s>\n<|user|>\n{row['prompt']}</s>\n<|assistant|>\n",
        "chosen": ranked[-1]["answer"],
        "rejected": ranked[-2]["answer"],
    }


def user_defined(spec: UserDefinedPreferenceType, kto: bool) -> Callable[[dict, str], Texts]:
    """axolotl's user_defined.default: the mapping's columns put into its format strings."""
    prompt_format = spec.prompt_format or "{prompt}"

    def texts(row: dict, where: str) -> Texts:
        try:
            if "{system}" in prompt_format and (not kto or row.get(spec.field_system)):
                prompt = prompt_format.format(system=row.get(spec.field_system) or "", prompt=row[spec.field_prompt])
            else:
                prompt = prompt_format.format(prompt=row[spec.field_prompt])
            if kto:
                return {
                    "prompt": prompt,
                    "completion": (spec.completion_format or "{completion}").format(
                        completion=row[spec.field_completion]
                    ),
                    "label": _label(row[spec.field_label], where),
                }
            return {
                "prompt": prompt,
                "chosen": (spec.chosen_format or "{chosen}").format(chosen=row[spec.field_chosen]),
                "rejected": (spec.rejected_format or "{rejected}").format(rejected=row[spec.field_rejected]),
            }
        except (KeyError, IndexError) as exc:
            raise ConfigError(
                f"{where}: a format string of the user-defined type names {exc}, which is not one of "
                "its placeholders ({prompt}, {system}, {chosen}, {rejected}, {completion})"
            ) from None

    return texts


class ChatTemplatePreference:
    """axolotl's chat_template.default / .argilla_chat (dpo) and chat_template.argilla (orpo): the chat template
    renders the prompt with the generation prompt; each answer is the template's rendering of that one assistant
    turn, from its content on (right-stripped), as axolotl cuts it."""

    def __init__(self, kind: str, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.kind, self.tokenizer = kind, tokenizer
        self.template = resolve_chat_template(ds, cfg, tokenizer, name)
        self.field_messages = ds.field_messages
        self.field_chosen, self.field_rejected = ds.field_chosen or "chosen", ds.field_rejected or "rejected"
        self.role_key, self.content_key = ds.role_key(), ds.content_key()
        self.roles = (
            {src: dst for dst, sources in ds.roles.items() for src in sources} if ds.roles else DEFAULT_PREFERENCE_ROLES
        )

    def _message(self, raw: Any, where: str, field: str) -> dict[str, str]:
        if isinstance(raw, str):
            return {"role": "assistant", "content": raw}
        if isinstance(raw, list):
            if not raw:
                raise ConfigError(f"{where}: '{field}' is an empty list")
            raw = raw[-1]
        if not isinstance(raw, dict) or raw.get(self.role_key) is None or raw.get(self.content_key) is None:
            raise ConfigError(
                f"{where}: '{field}' needs '{self.role_key}' and '{self.content_key}' (set message_property_mappings:)"
            )
        role = raw[self.role_key]
        if role not in self.roles:
            raise ConfigError(
                f"{where}: '{field}' has role '{role}', which roles: does not map ({', '.join(self.roles)})"
            )
        return {"role": self.roles[role], "content": raw[self.content_key]}

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, tokenize=False, add_generation_prompt=generation_prompt
        )

    def _answer(self, message: dict[str, str]) -> str:
        text = self._render([_DUMMY_USER, message], False)
        return text[text.find(message["content"]) :].rstrip()

    def _orpo_prompt(self, row: dict, where: str) -> list[dict[str, str]]:
        chosen = row[self.field_chosen]
        if not isinstance(chosen, list) or len(chosen) % 2:
            raise ConfigError(f"{where}: '{self.field_chosen}' must alternate user/assistant turns (an even number)")
        messages = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        for turn in range(len(chosen) // 2):
            user = row["prompt"] if row.get("prompt") is not None else _content(chosen, 2 * turn, "chosen", where)
            messages.append({"role": "user", "content": user})
            if turn < len(chosen) // 2 - 1:
                messages.append({"role": "assistant", "content": _content(chosen, 2 * turn + 1, "chosen", where)})
        return messages

    def __call__(self, row: dict, where: str) -> Texts:
        chosen_raw, rejected_raw = row[self.field_chosen], row[self.field_rejected]
        if self.kind == "default":
            raw = row[self.field_messages]
            raw = [{self.role_key: "user", self.content_key: raw}] if isinstance(raw, str) else raw
            if not isinstance(raw, list):
                raise ConfigError(f"{where}: '{self.field_messages}' must be a list of messages or a string")
            messages = [self._message(m, where, f"{self.field_messages}[{i}]") for i, m in enumerate(raw)]
        elif self.kind == "argilla_chat":
            if not isinstance(chosen_raw, list) or len(chosen_raw) < 2:
                raise ConfigError(f"{where}: '{self.field_chosen}' must be a conversation of at least two messages")
            messages = [self._message(m, where, f"{self.field_chosen}[{i}]") for i, m in enumerate(chosen_raw[:-1])]
        else:  # argilla (orpo)
            messages = self._orpo_prompt(row, where)
        return {
            "prompt": self._render(messages, True),
            "chosen": self._answer(self._message(chosen_raw, where, self.field_chosen)),
            "rejected": self._answer(self._message(rejected_raw, where, self.field_rejected)),
        }


def make_text_builder(ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str) -> Callable[[dict, str], Texts]:
    """The row -> texts function of a preference dataset entry."""
    kto = cfg.rl == "kto"
    if isinstance(ds.type, UserDefinedPreferenceType):
        return user_defined(ds.type, kto)
    type_name = preference_type_name(ds.type) or ""
    family, _, kind = type_name.partition(".")
    if family in FAMILIES:
        return family_kto(FAMILIES[family], kind) if kto else family_paired(FAMILIES[family], kind)
    if type_name == "zephyr.nectar":
        return zephyr_nectar
    if family == "chat_template":
        return ChatTemplatePreference(kind, ds, cfg, tokenizer, name)
    raise ConfigError(f"{name}: no preference dataset type '{type_name}'")  # the schema admits no other


def _with_eos(text: str, eos: str) -> str:
    return text if text.endswith(eos) else text + eos


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tokenize_texts(texts: Texts, tokenizer: Any) -> dict[str, Any]:
    """prompt_ids plus chosen_ids/rejected_ids (or completion_ids/label), split where the prompt's ids end."""
    encode = lambda text: tokenizer(text)["input_ids"]  # noqa: E731 - the tokenizer's own special tokens (BOS)
    prompt_ids = encode(texts["prompt"])
    answers = ("completion",) if "completion" in texts else ("chosen", "rejected")
    full = {key: encode(texts["prompt"] + _with_eos(texts[key], tokenizer.eos_token)) for key in answers}
    # A merge across the prompt/answer boundary moves it: the answer starts where all tokenizations diverge.
    cut = min([len(prompt_ids)] + [_common_prefix(prompt_ids, ids) for ids in full.values()])
    out: dict[str, Any] = {"prompt_ids": prompt_ids[:cut]}
    out.update({f"{key}_ids": ids[cut:] for key, ids in full.items()})
    if "label" in texts:
        out["label"] = texts["label"]
    return out


def preference_status(sample: dict[str, Any], sequence_len: int) -> str:
    """Kept, or why dropped: longer than sequence_len (prompt + answer), or an empty prompt/answer."""
    answers = [v for k, v in sample.items() if k.endswith("_ids") and k != "prompt_ids"]
    if any(len(sample["prompt_ids"]) + len(ids) > sequence_len for ids in answers):
        return TOO_LONG
    if not sample["prompt_ids"] or any(not ids for ids in answers):
        return TOO_SHORT
    return KEPT


def preference_columns(rl: str) -> tuple[str, ...]:
    return ("prompt_ids", "completion_ids", "label") if rl == "kto" else ("prompt_ids", "chosen_ids", "rejected_ids")


def tokenize_preference_dataset(
    dataset: datasets.Dataset,
    ds: DatasetConfig,
    cfg: TrainConfig,
    tokenizer: Any,
    name: str,
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, Counter]:
    """Format and tokenize every row of one preference entry; return the kept rows and the counts per status."""
    assert cfg.rl is not None
    build = make_text_builder(ds, cfg, tokenizer, name)
    required = required_fields(cfg.rl, ds)
    type_name = preference_type_name(ds.type)
    columns = preference_columns(cfg.rl)

    def format_batch(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {column: [] for column in (*columns, "status")}
        for position, index in enumerate(indices):
            row = {key: values[position] for key, values in batch.items()}
            where = f"{name}: row {index + 1}"  # 1-based, as in an editor
            missing = first_missing(row, required)
            if missing:
                raise ConfigError(f"{where}: missing field {missing} (type {type_name} with rl: {cfg.rl})")
            sample = tokenize_texts(build(row, where), tokenizer)
            for column in columns:
                out[column].append(sample[column])
            out["status"].append(preference_status(sample, cfg.sequence_len))
        return out

    return map_keeping_kept(dataset, format_batch, name, num_proc)
