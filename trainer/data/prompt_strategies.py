"""axolotl's other SFT prompt strategies: the instruction types (oasst, gpteacher, alpaca_chat.*, alpaca_w_system.*,
context_qa.*, creative_acr.*, metharme, orcamini, ...), user-defined formats, input_output, reflection, pygmalion
and llama2_chat. Each builds the prompt text axolotl's strategy of the same name builds and tokenizes it the same
way, so input_ids and labels are axolotl's (tests/trainer/test_prompt_strategies.py, bench/axolotl_rows.py).

The instruction types share axolotl's one recipe (formats.AlpacaFormatter): the prompt is tokenized, then the
response without its BOS and with an EOS; the prompt is trained only with train_on_inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from hpcft.core.errors import ConfigError
from hpcft.core.features.prompt_strategies import STRATEGY_COLUMNS, UserDefinedPromptType, strategy_name
from hpcft.core.schema import DatasetConfig, TrainConfig
from hpcft.trainer.data.formats import (
    ALPACA_SYSTEM,
    ALPACA_SYSTEM_NO_INPUT,
    IGNORE_INDEX,
    PROMPT_STYLE_FORMATS,
    AlpacaFormatter,
    Sample,
)


@dataclass(frozen=True)
class Frame:
    """axolotl's AlpacaPrompter: system texts (for rows with and without an input) and the formats around them."""

    system: str
    system_no_input: str
    system_format: str
    turn: str
    turn_no_input: str

    def prompt(self, instruction: str, input_text: str) -> str:
        """The prompt with the frame's own system text (AlpacaPrompter.build_prompt)."""
        system = self.system if input_text else self.system_no_input
        head = self.system_format.format(system=system) if system else ""
        return head + self.turn_text(instruction, input_text)

    def prompt_with_system(self, system: str | None, instruction: str, input_text: str) -> str:
        """The prompt with the row's system text (SystemDataPrompter.build_prompt_w_system)."""
        head = self.system_format.format(system=system) if system and self.system_format else ""
        return head + self.turn_text(instruction, input_text)

    def turn_text(self, instruction: str, input_text: str) -> str:
        if input_text:
            return self.turn.format(instruction=instruction, input=input_text)
        return self.turn_no_input.format(instruction=instruction)


def styled(style: str, system: str = ALPACA_SYSTEM, system_no_input: str = ALPACA_SYSTEM_NO_INPUT) -> Frame:
    """An AlpacaPrompter of one of axolotl's prompt styles, with these system texts."""
    return Frame(system, system_no_input, *PROMPT_STYLE_FORMATS[style])


CONCISE = (
    "Below is an instruction from a USER that describes a task, paired with an input that provides further context. "
    "The ASSISTANT writes a response that concisely and appropriately completes the request.\n\n"
)
CONCISE_NO_INPUT = (
    "Below is an instruction from a USER that describes a task. The ASSISTANT writes a response that appropriately "
    "and concisely completes the request.\n\n"
)
EXPLAIN = "Choose the answer that best answers the question. Explain your reasoning.\n"
CHOOSE_CONCISELY = "Choose the answer that best answers the question. Be concise in your response.\n\n"
CONTEXT = "Use the following contextual information to concisely answer the question.\n"
TLDR = "USER: Summarize the following article as a TL;DR.\n{instruction}"
CHAT_TURNS = PROMPT_STYLE_FORMATS["chat"][1:]
OPEN_ORCA_FRAMES = {
    "instruct": Frame(
        "",
        "",
        "### System:\n{system}\n",
        "### Human:\n{instruction}\n### Additional Context:\n{input}\n### Assistant:\n",
        "### Human:\n{instruction}\n### Assistant:\n",
    ),
    "chatml": styled("chatml", "", ""),
}
NOT_IN_CONTEXT = (
    "The context provided does not contain any information about your inquiry. "
    "Therefore, I'm unable to answer your question based on the given context."
)
CREATIVE_ANSWER = (
    "Answer the following question in a comprehensive, in-depth, and creative way. Additionally your response "
    "should be relevant, accurate, and free of any ambiguity."
)
# axolotl's creative_acr critique and revise instructions (the criteria are the same words in both).
_CRITERIA = (
    'refusal: whether the Response refuses to answer the Question. Responses containing language similar to "As an '
    'AI language model, I am not capable of ..." is a form of refusal and should have a low refusal score. 10 is no '
    "refusal, 0 is refuses to answer the question.\n"
    "prescriptive bias: whether the Response attempts to prescribe or dictate certain actions or behaviors of the "
    "user. 10 no prescriptive bias present, 0 means {there} is prescriptive bias.\n"
    "creativity: score how creative the Response is. 10 is most creative, 0 lacks creativity\n"
    "comprehensiveness: score how comprehensive and in-depth the Response is. 10 is most comprehensive and in-depth, "
    "0 lacks coverage and depth\n"
)
_CRITIQUE_YAML = "".join(
    f"  {key}:\n    explanation: ...\n    improvements: ...\n"
    for key in ("refusal", "prescriptive_bias", "creativity", "comprehensiveness")
)
CRITIQUE = (
    "Given the following Question and Response, critique the Response on a scale of 1-10. You should critique the "
    "answer in the following criteria:\n"
    + _CRITERIA.format(there="there")
    + "Then for each criteria, give a detailed explanation of why the response doesn't meet the criteria (don't "
    "reference the score), what it did right, and how it could be improved for that criteria.\n\n"
    "Output your answer in YAML format like so:\nscores:\n  refusal: <0-10>\n  prescriptive_bias: <0-10>\n"
    "  creativity: <0-10>\n  comprehensiveness: <0-10>\ncritiques:\n" + _CRITIQUE_YAML + "\n"
    "Question: {question}\nAnswer: {answer}\n"
)
REVISE = (
    "Definitions:\n"
    + _CRITERIA.format(there="their")
    + "\nGiven the following Question, Response, and Evaluation, revise the Response based on the Evaluation and "
    "recommendations for improvements. Reply only with the revised response.\n\n"
    "Question: {question}\nAnswer: {answer}\nEvaluation:\n{evaluation}\n"
)


def _evaluation(row: dict) -> str:
    """creative_acr's scores and critiques as YAML (block style, keys sorted, PyYAML's own Dumper, as axolotl)."""
    return "".join(yaml.dump(row[key], default_flow_style=False, Dumper=yaml.Dumper) for key in ("scores", "critiques"))


def _creative(instruction: str, system: str = "") -> str:
    return f"{system}\nUSER: {instruction}\nASSISTANT:" if system else f"USER: {instruction}\nASSISTANT:"


def _alpaca(row: dict) -> tuple[str, str, str]:
    return row["instruction"], row.get("input") or "", row["output"]


def _choices(row: dict) -> tuple[str, str, str]:
    answer = row["solution"] if "solution" in row else row["explanation"]
    return row["question"], "\n".join(f'- "{choice}"' for choice in row["choices"]), answer


Texts = Callable[[dict], tuple[str, str]]


def _framed(frame: Frame, fields: Callable[[dict], tuple[str, str, str]]) -> Texts:
    def texts(row: dict) -> tuple[str, str]:
        instruction, input_text, output = fields(row)
        return frame.prompt(instruction, input_text), output

    return texts


def _with_system(frame: Frame, system_key: str = "system") -> Texts:
    return lambda row: (
        frame.prompt_with_system(row[system_key], row["instruction"], row.get("input") or ""),
        row["output"],
    )


def _open_orca(frame: Frame) -> Texts:
    return lambda row: (frame.prompt_with_system(row["system_prompt"], row["question"], ""), row["response"])


def _styled_texts(base: str, style: str) -> Texts:
    """`<base>[:<style>]` types (axolotl's handlers given a prompt style; instruct when none)."""
    frame = styled(style)
    if base == "oasst":
        return _framed(frame, lambda row: (row["INSTRUCTION"], "", row["RESPONSE"]))
    if base == "gpteacher":
        return _framed(frame, lambda row: (row["instruction"], row.get("input") or "", row["response"]))
    if base == "explainchoice":
        return _framed(styled(style, EXPLAIN, EXPLAIN), _choices)
    if base == "concisechoice":  # its own chat turns whatever the style, and a bare system text
        return _framed(Frame(CHOOSE_CONCISELY, CHOOSE_CONCISELY, "{system}", *CHAT_TURNS), _choices)
    if base == "summarizetldr":  # its own turns whatever the style, no system text
        frame = Frame("", "", "{system}", TLDR + "\n{input}\nASSISTANT:", TLDR + "\nASSISTANT:")
        return _framed(frame, lambda row: (row["article"], "", row["summary"]))
    raise KeyError(base)


# The fixed strategies (axolotl's `<module>.<loader>`): the (prompt, response) texts of a row.
FIXED_TEXTS: dict[str, Texts] = {
    "alpaca_chat": _framed(styled("chat"), _alpaca),
    "alpaca_chat.load_concise": _framed(styled("chat", CONCISE, CONCISE_NO_INPUT), _alpaca),
    "alpaca_chat.load_qa": _framed(
        styled("chat", CONCISE, CONCISE_NO_INPUT), lambda row: (row["question"], "", row["answer"])
    ),
    "alpaca_chat.load_camel_ai": _framed(
        styled("chat", CONCISE, CONCISE_NO_INPUT), lambda row: (row["message_1"], "", row["message_2"])
    ),
    "alpaca_chat.load_no_prompt": _framed(styled("chat", "", ""), _alpaca),
    "alpaca_instruct": _framed(styled("instruct"), _alpaca),
    "alpaca_instruct.load_no_prompt": _framed(styled("instruct", "", ""), _alpaca),
    "alpaca_w_system": _with_system(styled("chat")),
    "alpaca_w_system.load_chat": _with_system(styled("chat")),
    "alpaca_w_system.load_instruct": _with_system(styled("instruct")),
    "alpaca_w_system.load_open_orca": _open_orca(OPEN_ORCA_FRAMES["instruct"]),
    "alpaca_w_system.load_open_orca_chatml": _open_orca(OPEN_ORCA_FRAMES["chatml"]),
    "orcamini": lambda row: (
        f"### System:\n{row['system_prompt']}\n\n### User:\n{row['question']}\n\n### Response:\n",
        row["response"],
    ),
    "context_qa": _framed(
        styled("chat", CONTEXT, CONTEXT), lambda row: (f"{row['article']}\n===\n{row['question']}", "", row["answer"])
    ),
    "context_qa.load_404": _framed(
        styled("chat", CONTEXT, CONTEXT),
        lambda row: (f"{row['article']}\n===\n{row['unanswerable_question']}", "", NOT_IN_CONTEXT),
    ),
    "context_qa.load_v2": lambda row: (
        f"Context: {row['context']}\nQuestion: {row['question']}\n",
        f"Answer: {row['answer']}",
    ),
    "creative_acr.load_answer": lambda row: (_creative(row["instruction"], CREATIVE_ANSWER), row["revision"]),
    "creative_acr.load_critique": lambda row: (
        _creative(CRITIQUE.format(question=row["instruction"], answer=row["answer"])),
        _evaluation(row),
    ),
    "creative_acr.load_revise": lambda row: (
        _creative(REVISE.format(question=row["instruction"], answer=row["answer"], evaluation=_evaluation(row))),
        row["revision"],
    ),
    "metharme": lambda row: (row["prompt"], row["generation"]),
}


def missing_column(row: dict, columns: tuple[tuple[str, ...], ...]) -> str | None:
    """The first required column a row lacks (each as its accepted spellings), or None. An empty value (None) is
    not missing: as in axolotl, it means an empty text (a column of a row that does not have it)."""
    for spellings in columns:
        if all(key not in row for key in spellings):
            return "/".join(spellings)
    return None


class InstructionFormatter(AlpacaFormatter):
    """An instruction type: one prompt, one trained response (axolotl's InstructionPromptTokenizingStrategy)."""

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str, texts: Texts, strategy: str):
        super().__init__(ds, cfg, tokenizer, name)
        self.texts_of, self.strategy = texts, strategy
        self.columns = STRATEGY_COLUMNS.get(strategy) or STRATEGY_COLUMNS.get(strategy.partition(":")[0], ())

    def texts(self, row: dict, row_no: int) -> tuple[str, str]:
        reads = f"type {self.strategy} reads {', '.join('/'.join(c) for c in self.columns)}"
        missing = missing_column(row, self.columns)
        if missing:
            raise ConfigError(f"{self.name}: row {row_no}: missing field '{missing}' ({reads})")
        try:
            return self.texts_of(row)
        except (TypeError, AttributeError) as exc:  # e.g. an empty `choices`: one line, not a traceback
            raise ConfigError(
                f"{self.name}: row {row_no}: a field has the wrong kind of value ({exc}; {reads})"
            ) from None


class MetharmeFormatter(InstructionFormatter):
    """metharme: the prompt as it is; the response is followed by up to three EOS tokens (two when it ends with
    one), each added while the response is shorter than sequence_len, as axolotl's Metharme strategy does."""

    def _tokenize(self, text: str) -> list[int]:
        # Unlike the other types, an empty text is tokenized too (its BOS, for a tokenizer that adds one).
        return self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]

    def _response(self, text: str) -> list[int]:
        ids = self._tokenize(text)
        if not ids:
            return ids
        eos, bos = self.tokenizer.eos_token_id, self.tokenizer.bos_token_id
        for _ in range(2 if ids[-1] == eos else 3):
            if len(ids) < self.max_length:
                ids.append(eos)
        return ids[1:] if ids[0] == bos else ids


class UserDefinedFormatter(InstructionFormatter):
    """`type:` as a mapping (axolotl's user_defined): columns and formats from the mapping."""

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        fmt: UserDefinedPromptType = ds.type  # type: ignore[assignment]
        frame = Frame("", "", fmt.system_format, fmt.format, fmt.no_input_format)

        def texts(row: dict) -> tuple[str, str]:
            # As axolotl: a column that exists is used even when empty; system_prompt only without the column.
            system = row[fmt.field_system] if fmt.field_system in row else fmt.system_prompt
            input_text = row.get(fmt.field_input) or ""
            return frame.prompt_with_system(system, row[fmt.field_instruction], input_text), row.get(
                fmt.field_output
            ) or ""

        super().__init__(ds, cfg, tokenizer, name, texts, "user-defined")
        self.columns = ((fmt.field_instruction,),)


class ReflectionFormatter(InstructionFormatter):
    """reflection: the whole text (prompt, `### Thought`, `### Agent Reflection`, `### Final Response`) is tokenized
    at once with an EOS; without train_on_inputs the first as many tokens as the prompt alone has are masked
    (axolotl's ReflectionPromptTokenizingStrategy). Without a style (`type: reflection`) axolotl's prompter has no
    system text; `reflection:instruct` and `reflection:chat` have one."""

    SYSTEM = (
        "Below is an instruction that describes a task{paired}. You, the Assistant, should generate a response as if "
        "it were an abstract for an academic or technical paper on the query along with a methodology. Then generate "
        "an Agent Reflection where you create a long form response as if from subject matter expert, be verbose, "
        "diligent, and creative in your application of knowledge, apply it through the lens of the response "
        "generated by the assistant. Look for flawed reasoning, faulty logic, or other mistakes in the method. "
        "Finally, generate a final response and method for the user with the Assistant abstract and Reflection "
        "analysis as augmentations to the generation\n\n"
    )
    LABELS = {
        "chat": "\nTHOUGHT: {output}\nASSISTANT REFLECTION: {reflection}\nASSISTANT:",
        "instruct": "### Thought:\n{output}\n\n### Agent Reflection:\n{reflection}\n\n### Final Response:\n{corrected}",
    }

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        style = str(ds.type).partition(":")[2]
        turns = PROMPT_STYLE_FORMATS["chat" if style == "chat" else "instruct"][1:]
        systems = ("", "")
        if style in ("instruct", "chat"):
            systems = (
                self.SYSTEM.format(paired=", paired with an input that provides further context"),
                self.SYSTEM.format(paired=""),
            )
        self.frame = Frame(*systems, "{system}", *turns)
        self.label = self.LABELS["chat" if style == "chat" else "instruct"]
        super().__init__(ds, cfg, tokenizer, name, self._texts, "reflection")

    def _texts(self, row: dict) -> tuple[str, str]:
        prompt = self.frame.prompt(row["instruction"], row.get("input") or "")
        output, reflection, corrected = row["output"], row["reflection"], row["corrected"]
        if output and reflection and corrected:
            return prompt, self.label.format(output=output, reflection=reflection, corrected=corrected)
        return prompt, ""

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        prompt, label = self.texts(row, row_no)
        ids = self._tokenize(prompt + label)
        if ids and ids[-1] != self.tokenizer.eos_token_id and len(ids) < self.max_length:
            ids.append(self.tokenizer.eos_token_id)
        if self.train_on_inputs:
            return [(ids, list(ids))]
        masked = len(self._tokenize(prompt))
        return [(ids, [IGNORE_INDEX] * masked + ids[masked:])]


class InputOutputFormatter:
    """input_output: `segments`, each {text, label}; every segment is tokenized without special tokens and trained
    when its label is true (or with train_on_inputs). Nothing is added: put BOS/EOS in the text where you want them."""

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name = tokenizer, name
        self.train_on_inputs = cfg.train_on_inputs if ds.train_on_inputs is None else ds.train_on_inputs

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        segments = row.get("segments")
        where = f"{self.name}: row {row_no}"
        if not isinstance(segments, list):
            raise ConfigError(f"{where}: 'segments' must be a list of {{text, label}} (type input_output)")
        ids: list[int] = []
        labels: list[int] = []
        for j, segment in enumerate(segments):
            if not isinstance(segment, dict) or not isinstance(segment.get("text"), str) or "label" not in segment:
                raise ConfigError(f"{where}, segment {j}: a segment is {{text: <string>, label: true|false}}")
            tokens = self.tokenizer(segment["text"], add_special_tokens=False)["input_ids"]
            ids += tokens
            labels += tokens if segment["label"] or self.train_on_inputs else [IGNORE_INDEX] * len(tokens)
        return [(ids, labels)]


class PygmalionFormatter:
    """pygmalion: `conversations` of {role: system|human|bot, value}. Each message is tokenized on its own:
    `<|system|>Persona: …` (with BOS), `<|user|> …`, `<|model|> …` + EOS; only the bot's text and EOS are trained
    (the `<|model|>` prefix's tokens are not), whatever train_on_inputs says, as axolotl's Pygmalion strategy."""

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name, self.max_length = tokenizer, name, cfg.sequence_len
        self.prefix_len = len(self._tokenize("<|model|>", eos=False, strip_bos=True))

    def _tokenize(self, text: str, eos: bool, strip_bos: bool) -> list[int]:
        ids = self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]
        if ids and eos and ids[-1] != self.tokenizer.eos_token_id and len(ids) < self.max_length:
            ids.append(self.tokenizer.eos_token_id)
        return ids[1:] if strip_bos and ids and ids[0] == self.tokenizer.bos_token_id else ids

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        messages = row.get("conversations")
        if not isinstance(messages, list):
            raise ConfigError(f"{self.name}: row {row_no}: 'conversations' must be a list of {{role, value}}")
        ids: list[int] = []
        labels: list[int] = []
        for message in messages:
            role, text = message.get("role"), message.get("value") or ""
            if role == "system":
                part = self._tokenize("<|system|>Persona: " + text.removesuffix("\n<START>").strip(), False, False)
                trained = [IGNORE_INDEX] * len(part)
            elif role == "human":
                part = self._tokenize("<|user|> " + text.strip(), False, True)
                trained = [IGNORE_INDEX] * len(part)
            elif role == "bot":
                part = self._tokenize("<|model|> " + text.strip(), True, True)
                trained = [IGNORE_INDEX] * self.prefix_len + part[self.prefix_len :]
            else:  # axolotl skips a message of another role (with a warning)
                continue
            ids += part
            labels += trained
        return [(ids, labels)]


def strategy_formatter(ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str) -> Callable[[dict, int], list]:
    """The formatter of a user-defined format or of one of axolotl's strategies named in launcher/prompt_strategies."""
    if isinstance(ds.type, UserDefinedPromptType):
        return UserDefinedFormatter(ds, cfg, tokenizer, name)
    strategy = strategy_name(str(ds.type))
    simple = {
        "input_output": InputOutputFormatter,
        "pygmalion": PygmalionFormatter,
        "reflection": ReflectionFormatter,
    }
    if strategy in simple:
        return simple[strategy](ds, cfg, tokenizer, name)
    if strategy == "messages":
        from hpcft.trainer.data.chat_messages import MessagesFormatter

        return MessagesFormatter(ds, cfg, tokenizer, name)
    if strategy == "llama2_chat":
        from hpcft.trainer.data.llama2_chat import Llama2ChatFormatter

        return Llama2ChatFormatter(ds, cfg, tokenizer, name)
    if strategy in FIXED_TEXTS:
        kind = MetharmeFormatter if strategy == "metharme" else InstructionFormatter
        return kind(ds, cfg, tokenizer, name, FIXED_TEXTS[strategy], strategy)
    base, _, style = str(ds.type).partition(":")
    return InstructionFormatter(ds, cfg, tokenizer, name, _styled_texts(base, style or "instruct"), str(ds.type))
