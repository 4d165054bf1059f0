"""Side by side with axolotl: the same rows, tokenizer and template through axolotl's tokenizing strategies and
through hpcft's formatters; input_ids and labels compared row by row.

Each named chat template is compared twice: masking (axolotl's ChatTemplateStrategy given hpcft's template text
as `chat_template: jinja`, so only the label logic differs) and rendering (hpcft's template against axolotl's
template of the same name). The tokenizer is the tiny BPE with the template's special tokens added and its
end-of-turn token as EOS. Every other SFT prompt strategy (oasst, alpaca_chat.load_qa, user-defined formats, ...)
is compared on one row each, through axolotl's own loader or handler. axolotl's code needs only two small packages
beyond hpcft's:
    pip install --target /tmp/axdeps colorama addict
    PYTHONPATH=/tmp/axdeps python bench/axolotl_rows.py --axolotl /path/to/axolotl [--commit SHA] [--record]
        [--strategies]   (only the prompt strategies' table)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import record, table  # noqa: E402

S, Q1, A1, Q2, A2, R = (
    "You are a tiny assistant.",
    "What is two plus three?",
    "two plus three is five.",
    "What does the cow say?",
    "The cow says moo.",
    "The cow is an animal.",
)
CHAT = [
    {"from": "system", "value": S},
    {"from": "human", "value": Q1},
    {"from": "gpt", "value": A1},
    {"from": "human", "value": Q2},
    {"from": "gpt", "value": A2},
]
NO_SYSTEM = CHAT[1:]
THINKING = [*CHAT[:4], {"from": "gpt", "value": A2, "thinking": R}]
MAPPED = {"field_messages": "conversations", "message_property_mappings": {"role": "from", "content": "value"}}
# Special tokens as the families' tokenizers have them: <|x|>, <|x>, <x|>, <｜x｜>, [X], [/X], [|x|], <x_of_turn>.
SPECIAL_RE = re.compile(
    r"<\|[^<>|\s']+\|>|<\|[a-z]+>|<[a-z]+\|>|<｜[^｜']+｜>|\[/?[A-Z_]+\]|\[\|[a-z]+\|\]|"
    r"<(?:start|end)_of_turn>|</?think>"
)


def family_tokenizer(base: str, template: str, eos: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    specials = sorted(set(SPECIAL_RE.findall(template)) - {eos})
    tokenizer.add_special_tokens({"eos_token": eos, "additional_special_tokens": specials})
    return tokenizer


def axolotl_chat(tokenizer: Any, row: dict, ds: dict, cfg: dict) -> tuple[list[int], list[int]]:
    from axolotl.prompt_strategies.chat_template import load
    from axolotl.utils.dict import DictDefault

    ds = {"type": "chat_template", "roles_to_train": ["assistant"], "train_on_eos": "turn", **ds}
    strategy = load(tokenizer, DictDefault({"sequence_len": 2048, "train_on_inputs": False, **cfg}), ds)
    out = strategy.tokenize_prompt(row)
    return out["input_ids"], out["labels"]


def hpcft_rows(kind: str | None, tokenizer: Any, row: dict, ds: dict, cfg: dict) -> tuple[list[int], list[int]]:
    from hpcft.core.schema import TrainConfig
    from hpcft.trainer.data.formats import make_formatter

    config = TrainConfig.model_validate(
        {"base_model": "unused", "datasets": [{"path": "x.jsonl", "type": kind, **ds}], **cfg}
    )
    [(ids, labels)] = make_formatter(config.datasets[0], config, tokenizer, "datasets[0]")(row, 1)
    return ids, labels


def compare(got: tuple[list[int], list[int]], want: tuple[list[int], list[int]]) -> tuple[str, str]:
    ids = "same" if got[0] == want[0] else "DIFFERENT"
    labels = ("same" if got[1] == want[1] else "DIFFERENT") if ids == "same" else "-"
    return ids, labels


# axolotl's other SFT prompt strategies: one row each (with and without train_on_inputs), through axolotl's own
# loader (`axolotl.prompt_strategies.load`, as its dataset wrapper calls it) or its handler's prompter/strategy.
SCORES = {"refusal": 9, "creativity": 4}
CRITIQUES = {"refusal": {"explanation": "It answers.", "improvements": "None."}}
STRATEGY_ROWS: dict[str, dict[str, Any]] = {
    "oasst": {"INSTRUCTION": "What does the cow say?", "RESPONSE": "The cow says moo."},
    "gpteacher": {"instruction": "Add the numbers.", "input": "two and three", "response": "five"},
    "explainchoice": {"question": "What does the cow say?", "choices": ["moo", "woof"], "solution": "moo"},
    "concisechoice": {"question": "What does the cow say?", "choices": ["moo", "woof"], "explanation": "moo"},
    "summarizetldr": {"article": "The cow says moo. The dog says woof.", "summary": "Animals talk."},
    "reflection": {
        "instruction": "Add the numbers.",
        "input": "two and three",
        "output": "five",
        "reflection": "two plus three is five.",
        "corrected": "5",
    },
    "alpaca_chat": {"instruction": "Add the numbers.", "input": "two and three", "output": "five"},
    "alpaca_chat.load_concise": {"instruction": "Add the numbers.", "output": "five"},
    "alpaca_chat.load_qa": {"question": "What does the cow say?", "answer": "moo"},
    "alpaca_chat.load_camel_ai": {"message_1": "What does the cow say?", "message_2": "moo"},
    "alpaca_chat.load_no_prompt": {"instruction": "Add the numbers.", "input": "two and three", "output": "five"},
    "alpaca_instruct": {"instruction": "Add the numbers.", "output": "five"},
    "alpaca_instruct.load_no_prompt": {"instruction": "Add the numbers.", "output": "five"},
    "alpaca_w_system": {"instruction": "Add.", "input": "two and three", "output": "five", "system": S},
    "alpaca_w_system.load_instruct": {"instruction": "Add.", "output": "five", "system": S},
    "alpaca_w_system.load_open_orca": {"question": Q1, "response": A1, "system_prompt": S},
    "alpaca_w_system.load_open_orca_chatml": {"question": Q1, "response": A1, "system_prompt": S},
    "orcamini": {"question": Q1, "response": A1, "system_prompt": S},
    "context_qa": {"article": "The cow says moo.", "question": Q2, "answer": "moo"},
    "context_qa.load_404": {"article": "The cow says moo.", "unanswerable_question": "What does the dog say?"},
    "context_qa.load_v2": {"context": "The cow says moo.", "question": Q2, "answer": "moo"},
    "creative_acr.load_answer": {"instruction": Q2, "revision": A2},
    "creative_acr.load_critique": {"instruction": Q2, "answer": A2, "scores": SCORES, "critiques": CRITIQUES},
    "creative_acr.load_revise": {
        "instruction": Q2,
        "answer": "moo",
        "scores": SCORES,
        "critiques": CRITIQUES,
        "revision": A2,
    },
    "metharme": {"prompt": "<|user|>What does the cow say?<|model|>", "generation": "moo"},
    "input_output": {
        "segments": [
            {"label": False, "text": "<s>Hello\n"},
            {"label": True, "text": "hi there!. "},
            {"label": False, "text": "goodbye "},
            {"label": True, "text": "farewell</s>"},
        ]
    },
    "llama2_chat": {
        "conversations": [
            {"from": "system", "value": S},
            {"from": "human", "value": Q1},
            {"from": "gpt", "value": A1},
            {"from": "human", "value": Q2},
            {"from": "gpt", "value": A2},
        ]
    },
    "pygmalion": {
        "conversations": [
            {"role": "system", "value": "A tiny cow.\n<START>"},
            {"role": "human", "value": Q2},
            {"role": "bot", "value": A2},
            {"role": "human", "value": Q1},
            {"role": "bot", "value": A1},
        ]
    },
}
USER_DEFINED = {
    "system_prompt": S,
    "field_instruction": "q",
    "field_output": "a",
    "format": "[INST] {instruction} {input} [/INST]",
    "no_input_format": "[INST] {instruction} [/INST]",
    "system_format": "<<SYS>>{system}<</SYS>>",
}


def axolotl_strategy(type_: Any, tokenizer: Any, train_on_inputs: bool) -> Any:
    """axolotl's tokenizing strategy for a dataset type, found as its get_dataset_wrapper finds it."""
    from axolotl import prompt_tokenizers as tokenizers
    from axolotl import prompters
    from axolotl.prompt_strategies import load
    from axolotl.utils.dict import DictDefault

    cfg = DictDefault({"sequence_len": 2048, "train_on_inputs": train_on_inputs})
    if isinstance(type_, dict):
        return load("user_defined", tokenizer, cfg, type_)
    base, _, style = type_.partition(":")
    handlers = {  # axolotl's DATASET_HANDLERS (utils/data/wrappers.py): prompter and strategy per base type
        "oasst": (prompters.AlpacaPrompter, tokenizers.OpenAssistantPromptTokenizingStrategy),
        "gpteacher": (prompters.GPTeacherPrompter, tokenizers.GPTeacherPromptTokenizingStrategy),
        "explainchoice": (
            prompters.MultipleChoiceExplainPrompter,
            tokenizers.AlpacaMultipleChoicePromptTokenizingStrategy,
        ),
        "concisechoice": (
            prompters.MultipleChoiceConcisePrompter,
            tokenizers.AlpacaMultipleChoicePromptTokenizingStrategy,
        ),
        "summarizetldr": (prompters.SummarizeTLDRPrompter, tokenizers.SummarizeTLDRPromptTokenizingStrategy),
        "reflection": (prompters.ReflectAlpacaPrompter, tokenizers.AlpacaReflectionPTStrategy),
    }
    if base in handlers:
        prompter, strategy = handlers[base]
        return strategy(prompter(style or None), tokenizer, train_on_inputs, 2048)
    return load(type_, tokenizer, cfg, DictDefault({"type": type_}))


def messages_cases(base: str) -> list[list[str]]:
    """type: messages (axolotl's message format), ChatML and Llama 3 framing, with role defaults and weights."""
    from axolotl.core.chat.messages import ChatFormattedChats
    from axolotl.prompt_strategies import load
    from axolotl.utils.dict import DictDefault

    weighted = [{**m, "weight": int(m["from"] != "human")} for m in CHAT]
    out = []
    for template, eos in (("chatml", "<|im_end|>"), ("llama3", "<|eot_id|>")):
        specials = "<|im_start|><|im_end|><|begin_of_text|><|start_header_id|><|end_header_id|><|eot_id|>"
        tokenizer = family_tokenizer(base, specials, eos)
        for label, messages in (("", CHAT), (", weights", weighted)):
            cells = []
            for train_on_inputs in (False, True):
                cfg = DictDefault({"sequence_len": 2048, "train_on_inputs": train_on_inputs})
                ds = {"type": "messages", "field_messages": "conversations", "chat_template": template}
                strategy = load("messages", tokenizer, cfg, DictDefault(ds))
                row = {"conversations": messages}
                chats = ChatFormattedChats(formatter=strategy.formatter, **strategy.message_transform(row))
                theirs = chats.tokenized(tokenizer)
                ours = hpcft_rows("messages", tokenizer, row, ds, {"train_on_inputs": train_on_inputs})
                cells += compare(ours, (theirs["input_ids"], theirs["labels"]))
            out.append([f"messages, {template}{label}", *cells])
    return out


def strategy_cases(tokenizer: Any) -> list[list[str]]:
    cases: list[tuple[str, Any, dict]] = [(name, name, row) for name, row in STRATEGY_ROWS.items()]
    cases += [
        (f"{name}:chat", f"{name}:chat", STRATEGY_ROWS[name]) for name in ("oasst", "explainchoice", "reflection")
    ]
    cases += [
        ("reflection:instruct", "reflection:instruct", STRATEGY_ROWS["reflection"]),
        ("user-defined, system column", USER_DEFINED, {"q": Q2, "a": A2, "system": "Be a cow.", "input": "moo?"}),
        ("user-defined, system_prompt", USER_DEFINED, {"q": Q2, "a": A2}),
        ("user-defined, defaults", {}, {"instruction": Q2, "output": A2}),
        ("llama2_chat, no system", "llama2_chat", {"conversations": CHAT[1:]}),
    ]
    out = []
    for label, type_, row in cases:
        cells = []
        for train_on_inputs in (False, True):
            theirs = axolotl_strategy(type_, tokenizer, train_on_inputs).tokenize_prompt(dict(row))
            # llama2_chat pads to sequence_len (attention 0, untrained); hpcft leaves the padding out.
            kept = sum(theirs["attention_mask"]) if type_ == "llama2_chat" else len(theirs["input_ids"])
            ours = hpcft_rows(type_, tokenizer, row, {}, {"train_on_inputs": train_on_inputs})
            cells += compare(ours, (theirs["input_ids"][:kept], theirs["labels"][:kept]))
        out.append([label, *cells])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--axolotl", required=True, help="an axolotl checkout (its src/ is imported)")
    parser.add_argument("--commit", help="the checkout's commit, when it is not a git work tree")
    parser.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    parser.add_argument("--strategies", action="store_true", help="only the prompt strategies' table")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.axolotl) / "src"))
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.WARNING)
    from axolotl.prompt_strategies.completion import load as load_completion
    from axolotl.prompt_strategies.pretrain import load as load_pretrain
    from axolotl.prompt_tokenizers import AlpacaPromptTokenizingStrategy, JeopardyPromptTokenizingStrategy
    from axolotl.prompters import AlpacaPrompter, JeopardyPrompter
    from axolotl.utils.chat_templates import _CHAT_TEMPLATES
    from axolotl.utils.dict import DictDefault

    from hpcft.core.chat_templates import CHAT_TEMPLATE_NAMES, END_OF_TURN, chat_template_text
    from hpcft.core.schema import TrainConfig
    from hpcft.trainer.data.formats import make_formatter
    from hpcft.trainer.tiny import make_tiny_tokenizer

    base = tempfile.mkdtemp()
    make_tiny_tokenizer(base)
    commit = (
        args.commit
        or subprocess.run(
            ["git", "-C", args.axolotl, "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )

    strategy_headers = ["type", "input_ids", "labels", "train_on_inputs: input_ids", "train_on_inputs: labels"]
    strategy_notes = (
        f"axolotl commit {commit}. One row per type through axolotl's own loader or handler and through hpcft, "
        "without and with train_on_inputs; the tiny BPE tokenizer (BOS added, EOS </s>). llama2_chat: axolotl's "
        "row up to its padding (hpcft does not pad; docs/datasets.md)."
    )
    if args.strategies:
        strategies = strategy_cases(family_tokenizer(base, "", "</s>")) + messages_cases(base)
        if args.record:
            record("axolotl_rows (prompt strategies)", strategy_headers, strategies, strategy_notes, ["transformers"])
        else:
            print(table(strategy_headers, strategies))
        return 0

    masking, rendering = [], []
    for name in CHAT_TEMPLATE_NAMES:
        ours = chat_template_text(name)
        tokenizer = family_tokenizer(base, ours + _CHAT_TEMPLATES[name], END_OF_TURN.get(name, "</s>"))
        for label, rows, keys in (
            ("system + 2 turns", CHAT, {}),
            ("no system", NO_SYSTEM, {}),
            ("train_on_eos: all", CHAT, {"train_on_eos": "all"}),
            ("train_on_eos: last", CHAT, {"train_on_eos": "last"}),
            ("train_on_inputs", CHAT, {"train_on_inputs": True}),
        ):
            keys = dict(keys)
            cfg = {"train_on_inputs": keys.pop("train_on_inputs")} if "train_on_inputs" in keys else {}
            row = {"conversations": rows}
            cells = []
            # As a user configures it (chat_template: <name> in both), then both on hpcft's template text.
            for ds in (
                {**MAPPED, "chat_template": name, **keys},
                {**MAPPED, "chat_template": "jinja", "chat_template_jinja": ours, **keys},
            ):
                try:
                    got = hpcft_rows("chat_template", tokenizer, row, ds, cfg)
                    cells += compare(got, axolotl_chat(tokenizer, row, ds, cfg))
                except Exception as exc:  # noqa: BLE001 - a failing template is a row of the table, not a crash
                    cells += [f"error: {type(exc).__name__}", "-"]
            masking.append([name, label, *cells])
        messages = [
            {"role": {"human": "user", "gpt": "assistant"}.get(m["from"], m["from"]), "content": m["value"]}
            for m in CHAT
        ]
        try:
            theirs = tokenizer.apply_chat_template(messages, chat_template=_CHAT_TEMPLATES[name], tokenize=False)
            mine = tokenizer.apply_chat_template(messages, chat_template=ours, tokenize=False)
            rendering.append([name, "same" if mine == theirs else "different"])
        except Exception as exc:  # noqa: BLE001
            rendering.append([name, f"axolotl's raises {type(exc).__name__}: {str(exc)[:60]}"])

    # Reasoning mapped from a `thinking` field, eot_tokens, an empty system column.
    extra = []
    for name in ("qwen3", "exaone4", "command_a"):
        ours = chat_template_text(name)
        tokenizer = family_tokenizer(base, ours, END_OF_TURN[name])
        ds = {
            **MAPPED,
            "chat_template": "jinja",
            "chat_template_jinja": ours,
            "message_property_mappings": {"role": "from", "content": "value", "reasoning_content": "thinking"},
        }
        theirs = axolotl_chat(tokenizer, {"conversations": THINKING}, ds, {})
        extra.append(
            [
                f"{name}: reasoning mapped from 'thinking'",
                *compare(hpcft_rows("chat_template", tokenizer, {"conversations": THINKING}, ds, {}), theirs),
            ]
        )
    qwen3 = family_tokenizer(base, chat_template_text("qwen3"), "<|im_end|>")
    marked = [*CHAT[:4], {"from": "gpt", "value": f"<think>{R}</think>{A2}"}]
    ds = {**MAPPED, "chat_template": "qwen3", "split_thinking": True}
    extra.append(
        [
            "qwen3: split_thinking",
            *compare(
                hpcft_rows("chat_template", qwen3, {"conversations": marked}, ds, {}),
                axolotl_chat(qwen3, {"conversations": marked}, ds, {}),
            ),
        ]
    )
    # gpt-oss style: the reasoning in a `trace` field, read by the template as `thinking` (field_thinking /
    # template_thinking_key; no message_property_mappings, the one case where axolotl's loader applies them).
    harmony = (
        "{% for m in messages %}{{ '<|im_start|>' + m.role }}{% if m.thinking is defined %}"
        "{{ ' thinking: ' + m.thinking }}{% endif %}{{ '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    )
    thinking_tok = family_tokenizer(base, harmony, "<|im_end|>")
    traced = {"messages": [{"role": "user", "content": Q1}, {"role": "assistant", "content": A1, "trace": R}]}
    ds = {"chat_template": "jinja", "chat_template_jinja": harmony, "field_thinking": "trace"}
    ds["template_thinking_key"] = "thinking"
    extra.append(
        [
            "field_thinking: trace, template_thinking_key: thinking",
            *compare(
                hpcft_rows("chat_template", thinking_tok, traced, ds, {}), axolotl_chat(thinking_tok, traced, ds, {})
            ),
        ]
    )
    llama3 = chat_template_text("llama3")
    base_llama = family_tokenizer(base, llama3 + "<|end_of_text|>", "<|end_of_text|>")
    for keys, cfg in (
        ({}, {}),
        ({}, {"eot_tokens": ["<|eot_id|>"]}),
        ({"train_on_eot": "last"}, {"eot_tokens": ["<|eot_id|>"]}),
    ):
        ds = {**MAPPED, "chat_template": "jinja", "chat_template_jinja": llama3, **keys}
        theirs = axolotl_chat(base_llama, {"conversations": CHAT}, ds, cfg)
        extra.append(
            [
                f"llama3, EOS <|end_of_text|>, {cfg or 'no eot_tokens'} {keys or ''}".strip(),
                *compare(hpcft_rows("chat_template", base_llama, {"conversations": CHAT}, ds, cfg), theirs),
            ]
        )
    chatml = family_tokenizer(base, chat_template_text("chatml"), "<|im_end|>")
    row = {"system": "", "messages": [{"role": "user", "content": Q1}, {"role": "assistant", "content": A1}]}
    ds = {"chat_template": "chatml", "field_messages": "messages"}
    extra.append(
        [
            "chatml: empty system column",
            *compare(hpcft_rows("chat_template", chatml, row, ds, {}), axolotl_chat(chatml, row, ds, {})),
        ]
    )

    alpaca_tok = family_tokenizer(base, "", "</s>")
    for label, row, train_on_inputs in (
        ("alpaca", {"instruction": "Add the numbers.", "input": "two and three", "output": "five"}, False),
        ("alpaca, no input", {"instruction": "Add the numbers.", "output": "five"}, False),
        ("alpaca, empty output", {"instruction": "Add the numbers.", "output": ""}, False),
        ("alpaca, train_on_inputs", {"instruction": "Add.", "input": "two", "output": "five"}, True),
    ):
        strategy = AlpacaPromptTokenizingStrategy(AlpacaPrompter("instruct"), alpaca_tok, train_on_inputs, 2048)
        out = strategy.tokenize_prompt(dict(row))
        extra.append(
            [
                label,
                *compare(
                    hpcft_rows("alpaca", alpaca_tok, row, {}, {"train_on_inputs": train_on_inputs}),
                    (out["input_ids"], out["labels"]),
                ),
            ]
        )
    # axolotl's `type: alpaca:<style>` (its alpaca handler with that prompt style) and `type: jeopardy`.
    for style in ("chat", "chatml", "phi"):
        for label, row in (
            ("", {"instruction": "Add the numbers.", "input": "two and three", "output": "five"}),
            (", no input", {"instruction": "Add the numbers.", "output": "five"}),
        ):
            strategy = AlpacaPromptTokenizingStrategy(AlpacaPrompter(style), alpaca_tok, False, 2048)
            out = strategy.tokenize_prompt(dict(row))
            extra.append(
                [
                    f"alpaca:{style}{label}",
                    *compare(hpcft_rows(f"alpaca:{style}", alpaca_tok, row, {}, {}), (out["input_ids"], out["labels"])),
                ]
            )
    jeopardy_row = {"question": "It says moo", "category": "ANIMALS", "answer": "the cow"}
    out = JeopardyPromptTokenizingStrategy(JeopardyPrompter(None), alpaca_tok, False, 2048).tokenize_prompt(
        dict(jeopardy_row)
    )
    ours_jeopardy = hpcft_rows("jeopardy", alpaca_tok, jeopardy_row, {}, {})
    extra.append(["jeopardy", *compare(ours_jeopardy, (out["input_ids"], out["labels"]))])
    # axolotl's pretraining strategy: overlapping windows of sequence_len - 1 tokens plus EOS (labels = input_ids).
    pretrain_cfg = DictDefault(
        {"sequence_len": 32, "train_on_inputs": False, "pretraining_dataset": [{"text_column": "text"}]}
    )
    long_text = " ".join(f"The {a} says {b}." for a, b in [("cow", "moo"), ("dog", "woof"), ("cat", "meow")] * 6)
    windows = load_pretrain(alpaca_tok, pretrain_cfg).tokenize_prompt({"text": [long_text]})["input_ids"]
    config = TrainConfig.model_validate(
        {"base_model": "unused", "sequence_len": 32, "datasets": [{"path": "x.jsonl", "type": "pretrain"}]}
    )
    ours = make_formatter(config.datasets[0], config, alpaca_tok, "d")({"text": long_text}, 1)
    extra.append(
        [
            f"pretrain ({len(windows)} windows)",
            "same" if [ids for ids, _ in ours] == windows else "DIFFERENT",
            "same" if all(ids == labels for ids, labels in ours) else "DIFFERENT",
        ]
    )
    completion = load_completion(alpaca_tok, DictDefault({"sequence_len": 2048, "train_on_inputs": False}), {})
    text = "The cow says moo. The dog says woof."
    out = completion.tokenize_prompt({"text": [text]})
    extra.append(
        [
            "completion",
            *compare(
                hpcft_rows("completion", alpaca_tok, {"text": text}, {}, {}), (out["input_ids"][0], out["labels"][0])
            ),
        ]
    )

    strategies = strategy_cases(alpaca_tok) + messages_cases(base)

    # One row per template: how many of the cases match, and which do not.
    summary = []
    for name, (shown,) in zip(CHAT_TEMPLATE_NAMES, [[r[1]] for r in rendering], strict=True):
        rows = [r for r in masking if r[0] == name]
        same_name = sum(r[2] == r[3] == "same" for r in rows)
        same_text = sum(r[4] == r[5] == "same" for r in rows)
        differing = ", ".join(r[1] for r in rows if not r[2] == r[3] == r[4] == r[5] == "same") or "-"
        summary.append([name, shown, f"{same_name}/{len(rows)}", f"{same_text}/{len(rows)}", differing])
    headers = [
        "template",
        "rendering vs axolotl's",
        "same name: ids+labels equal",
        "hpcft's text in both: equal",
        "cases with a difference",
    ]
    notes = (
        f"axolotl commit {commit}. Cases: system + 2 turns, no system, train_on_eos all, train_on_eos last, "
        "train_on_inputs. 'same name': both given chat_template: <name> (each its own template); 'hpcft's text "
        "in both': both given hpcft's template text as chat_template: jinja, so only the label logic differs. "
        "Differences are explained in docs/datasets.md."
    )
    extra = [[str(cell).replace("|", "\\|") for cell in row] for row in extra]  # markdown table cells
    print(table(headers, summary))
    print(table(["case", "input_ids", "labels"], extra))
    print(table(strategy_headers, strategies))
    if args.record:
        record("axolotl_rows (chat templates)", headers, summary, notes=notes, packages=["transformers"])
        record(
            "axolotl_rows (other rows)",
            ["case", "input_ids", "labels"],
            extra,
            notes=f"axolotl commit {commit}.",
            packages=["transformers"],
        )
        record("axolotl_rows (prompt strategies)", strategy_headers, strategies, strategy_notes, ["transformers"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
