"""axolotl's other SFT prompt strategies, token by token: the prompt text each of axolotl's strategies builds (written
out here from reading its code), which tokens are trained, and the row errors. bench/axolotl_rows.py runs the same
kinds of rows through axolotl itself (bench/RESULTS.md: all equal)."""

from __future__ import annotations

import pytest

from hpcft.core.errors import ConfigError
from hpcft.core.features.prompt_strategies import UserDefinedPromptType
from hpcft.core.validation import check_keys
from hpcft.trainer.data.formats import IGNORE_INDEX, make_formatter

from .test_data_tokens import expected_tokens, readable

ALPACA = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request."
)
CONCISE = (
    "Below is an instruction from a USER that describes a task. The ASSISTANT writes a response that appropriately "
    "and concisely completes the request.\n\n"
)
ADD = {"instruction": "Add the numbers.", "input": "two and three", "output": "five"}
ADD_NO_INPUT = {"instruction": "Add the numbers.", "output": "five"}
CHOICES = {"question": "What does the cow say?", "choices": ["moo", "woof"]}
CONTEXT = "Use the following contextual information to concisely answer the question.\n"

# (type, row, expected): <s> is the tokenizer's BOS, </s> its EOS; ⟦…⟧ marks the trained tokens.
CASES = [
    (
        "alpaca_instruct",
        ADD_NO_INPUT,
        f"<s>{ALPACA}\n\n### Instruction:\nAdd the numbers.\n\n### Response:\n⟦five</s>⟧",
    ),
    (
        "alpaca_instruct.load_no_prompt",
        ADD_NO_INPUT,
        "<s>### Instruction:\nAdd the numbers.\n\n### Response:\n⟦five</s>⟧",
    ),
    ("alpaca_chat", ADD, f"<s>SYSTEM: {ALPACA_INPUT}\nUSER: Add the numbers.\ntwo and three\nASSISTANT:⟦five</s>⟧"),
    ("alpaca_chat.load_no_prompt", ADD, "<s>USER: Add the numbers.\ntwo and three\nASSISTANT:⟦five</s>⟧"),
    ("alpaca_chat.load_concise", ADD_NO_INPUT, f"<s>SYSTEM: {CONCISE}\nUSER: Add the numbers.\nASSISTANT:⟦five</s>⟧"),
    (
        "alpaca_chat.load_qa",
        {"question": "Why?", "answer": "moo"},
        f"<s>SYSTEM: {CONCISE}\nUSER: Why?\nASSISTANT:⟦moo</s>⟧",
    ),
    (
        "alpaca_chat.load_camel_ai",
        {"message_1": "Why?", "message_2": "moo"},
        f"<s>SYSTEM: {CONCISE}\nUSER: Why?\nASSISTANT:⟦moo</s>⟧",
    ),
    (
        "oasst",
        {"INSTRUCTION": "Why?", "RESPONSE": "moo"},
        f"<s>{ALPACA}\n\n### Instruction:\nWhy?\n\n### Response:\n⟦moo</s>⟧",
    ),
    ("oasst:chat", {"INSTRUCTION": "Why?", "RESPONSE": "moo"}, f"<s>SYSTEM: {ALPACA}\nUSER: Why?\nASSISTANT:⟦moo</s>⟧"),
    (
        "gpteacher",
        {"instruction": "Add.", "input": "two", "response": "five"},
        f"<s>{ALPACA_INPUT}\n\n### Instruction:\nAdd.\n\n### Input:\ntwo\n\n### Response:\n⟦five</s>⟧",
    ),
    (
        "explainchoice",
        {**CHOICES, "solution": "moo"},
        "<s>Choose the answer that best answers the question. Explain your reasoning.\n\n\n### Instruction:\nWhat "
        'does the cow say?\n\n### Input:\n- "moo"\n- "woof"\n\n### Response:\n⟦moo</s>⟧',
    ),
    (
        "concisechoice:chatml",  # its chat turns whatever the style
        {**CHOICES, "explanation": "moo"},
        "<s>Choose the answer that best answers the question. Be concise in your response.\n\nUSER: What does the "
        'cow say?\n- "moo"\n- "woof"\nASSISTANT:⟦moo</s>⟧',
    ),
    (
        "summarizetldr",
        {"article": "The cow says moo.", "summary": "Moo."},
        "<s>USER: Summarize the following article as a TL;DR.\nThe cow says moo.\nASSISTANT:⟦Moo.</s>⟧",
    ),
    (
        "alpaca_w_system",
        {**ADD_NO_INPUT, "system": "Be brief."},
        "<s>SYSTEM: Be brief.\nUSER: Add the numbers.\nASSISTANT:⟦five</s>⟧",
    ),
    (
        "alpaca_w_system.load_instruct",
        {**ADD, "system": ""},  # an empty system text writes no system line
        "<s>### Instruction:\nAdd the numbers.\n\n### Input:\ntwo and three\n\n### Response:\n⟦five</s>⟧",
    ),
    (
        "alpaca_w_system.load_open_orca",
        {"question": "Why?", "response": "moo", "system_prompt": "Be brief."},
        "<s>### System:\nBe brief.\n### Human:\nWhy?\n### Assistant:\n⟦moo</s>⟧",
    ),
    (
        "alpaca_w_system.load_open_orca_chatml",
        {"question": "Why?", "response": "moo", "system_prompt": "Be brief."},
        "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
        "⟦moo</s>⟧",
    ),
    (
        "orcamini",
        {"question": "Why?", "response": "moo", "system_prompt": ""},  # the system line is always written
        "<s>### System:\n\n\n### User:\nWhy?\n\n### Response:\n⟦moo</s>⟧",
    ),
    (
        "context_qa",
        {"article": "The cow says moo.", "question": "Why?", "answer": "moo"},
        f"<s>SYSTEM: {CONTEXT}\nUSER: The cow says moo.\n===\nWhy?\nASSISTANT:⟦moo</s>⟧",
    ),
    (
        "context_qa.load_404",
        {"article": "The cow says moo.", "unanswerable_question": "Why?"},
        f"<s>SYSTEM: {CONTEXT}\nUSER: The cow says moo.\n===\nWhy?\nASSISTANT:⟦The context provided does not contain "
        "any information about your inquiry. Therefore, I'm unable to answer your question based on the given "
        "context.</s>⟧",
    ),
    (
        "context_qa.load_v2",
        {"context": "The cow says moo.", "question": "Why?", "answer": "moo"},
        "<s>Context: The cow says moo.\nQuestion: Why?\n⟦Answer: moo</s>⟧",
    ),
    (
        "creative_acr.load_answer",
        {"instruction": "Why?", "revision": "moo"},
        "<s>Answer the following question in a comprehensive, in-depth, and creative way. Additionally your response "
        "should be relevant, accurate, and free of any ambiguity.\nUSER: Why?\nASSISTANT:⟦moo</s>⟧",
    ),
    # metharme: the prompt as written, up to three EOS after the generation.
    ("metharme", {"prompt": "Why?", "generation": "moo"}, "<s>Why?⟦moo</s></s></s>⟧"),
    ("metharme", {"prompt": "Why?", "generation": "moo</s>"}, "<s>Why?⟦moo</s></s></s>⟧"),
    # reflection without a style: axolotl's prompter then has no system text; trained after the prompt's length.
    (
        "reflection",
        {"instruction": "Add.", "output": "five", "reflection": "ok", "corrected": "5"},
        "<s>### Instruction:\nAdd.\n\n### Response:\n⟦### Thought:\nfive\n\n### Agent Reflection:\nok\n\n### Final "
        "Response:\n5</s>⟧",
    ),
    (
        "reflection:chat",
        {"instruction": "Add.", "output": "five", "reflection": "ok", "corrected": "5"},
        "<s>Below is an instruction that describes a task. You, the Assistant, should generate a response as if it "
        "were an abstract for an academic or technical paper on the query along with a methodology. Then generate an "
        "Agent Reflection where you create a long form response as if from subject matter expert, be verbose, "
        "diligent, and creative in your application of knowledge, apply it through the lens of the response "
        "generated by the assistant. Look for flawed reasoning, faulty logic, or other mistakes in the method. "
        "Finally, generate a final response and method for the user with the Assistant abstract and Reflection "
        "analysis as augmentations to the generation\n\nUSER: Add.\nASSISTANT:⟦\nTHOUGHT: five\nASSISTANT "
        "REFLECTION: ok\nASSISTANT:</s>⟧",
    ),
    (
        "input_output",
        {"segments": [{"text": "<s>Why?\n", "label": False}, {"text": "moo", "label": True}]},
        "<s>Why?\n⟦moo⟧",
    ),
]


@pytest.fixture(scope="module")
def eos_tokenizer(tiny_model_dir):
    """The tiny tokenizer (it adds BOS <s>) with EOS </s>, as Llama-style tokenizers are."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens({"eos_token": "</s>"})
    return tokenizer


def format_row(train_config, tokenizer, type_, row, **keys):
    cfg = train_config(datasets=[{"path": "x.jsonl", "type": type_}], **keys)
    return make_formatter(cfg.datasets[0], cfg, tokenizer, "datasets[0]")(row, 1)


@pytest.mark.parametrize(("type_", "row", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_strategy_pins_input_ids_and_labels(type_, row, expected, train_config, eos_tokenizer):
    [got] = format_row(train_config, eos_tokenizer, type_, row)
    assert readable(eos_tokenizer, *got) == readable(eos_tokenizer, *expected_tokens(eos_tokenizer, expected))


def test_train_on_inputs_trains_the_prompt_too(train_config, eos_tokenizer):
    row = {"question": "Why?", "answer": "moo"}
    [(ids, labels)] = format_row(train_config, eos_tokenizer, "alpaca_chat.load_qa", row, train_on_inputs=True)
    assert labels == ids and ids[0] == eos_tokenizer.bos_token_id and ids[-1] == eos_tokenizer.eos_token_id
    # input_output: a false segment is trained too; pygmalion ignores train_on_inputs (as axolotl's does).
    segments = {"segments": [{"text": "Why?", "label": False}, {"text": " moo", "label": True}]}
    [(ids, labels)] = format_row(train_config, eos_tokenizer, "input_output", segments, train_on_inputs=True)
    assert labels == ids


def test_creative_critique_trains_the_scores_as_sorted_block_yaml(train_config, eos_tokenizer):
    row = {
        "instruction": "Why?",
        "answer": "moo",
        "scores": {"refusal": 9, "creativity": 4},
        "critiques": {"refusal": {"explanation": "It answers.", "improvements": "None."}},
    }
    [(ids, labels)] = format_row(train_config, eos_tokenizer, "creative_acr.load_critique", row)
    trained = eos_tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
    assert trained == "creativity: 4\nrefusal: 9\nrefusal:\n  explanation: It answers.\n  improvements: None.\n</s>"
    prompt = eos_tokenizer.decode(ids[: labels.index(next(t for t in labels if t != IGNORE_INDEX))])
    assert prompt.startswith("<s>USER: Given the following Question and Response, critique the Response")
    assert prompt.endswith("Question: Why?\nAnswer: moo\n\nASSISTANT:")
    revise = {**row, "revision": "moo moo"}
    [(ids, labels)] = format_row(train_config, eos_tokenizer, "creative_acr.load_revise", revise)
    text = eos_tokenizer.decode(ids)
    assert text.startswith("<s>USER: Definitions:\nrefusal: whether the Response refuses")
    assert "0 means their is prescriptive bias" in text  # axolotl's wording, kept so the tokens are its tokens
    assert text.endswith(
        "Evaluation:\ncreativity: 4\nrefusal: 9\nrefusal:\n  explanation: It answers.\n  "
        "improvements: None.\n\n\nASSISTANT:moo moo</s>"
    )


def test_pygmalion_trains_the_bot_text_without_its_prefix(train_config, eos_tokenizer):
    row = {
        "conversations": [
            {"role": "system", "value": "A tiny cow.\n<START>"},
            {"role": "human", "value": "Why?"},
            {"role": "bot", "value": "moo"},
        ]
    }
    [got] = format_row(train_config, eos_tokenizer, "pygmalion", row)
    # Each message is tokenized on its own (the user's and the bot's without BOS); `<|model|>` is not trained.
    prefix = len(eos_tokenizer("<|model|>", add_special_tokens=False)["input_ids"])
    parts = [
        eos_tokenizer("<|system|>Persona: A tiny cow.")["input_ids"],
        eos_tokenizer("<|user|> Why?", add_special_tokens=False)["input_ids"],
        eos_tokenizer("<|model|> moo", add_special_tokens=False)["input_ids"] + [eos_tokenizer.eos_token_id],
    ]
    bot = parts[2]
    expected_labels = [IGNORE_INDEX] * (len(parts[0]) + len(parts[1]) + prefix) + bot[prefix:]
    assert got == (parts[0] + parts[1] + bot, expected_labels)
    assert eos_tokenizer.decode(bot[prefix:]) == " moo</s>"


USER_FORMAT = {
    "system_prompt": "Be a cow.",
    "system_format": "<<SYS>>{system}<</SYS>>",
    "field_instruction": "q",
    "field_output": "a",
    "format": "[INST] {instruction} {input} [/INST]",
    "no_input_format": "[INST] {instruction} [/INST]",
}


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"q": "Why?", "a": "moo"}, "<s><<SYS>>Be a cow.<</SYS>>[INST] Why? [/INST]⟦moo</s>⟧"),
        ({"q": "Why?", "a": "moo", "input": "two"}, "<s><<SYS>>Be a cow.<</SYS>>[INST] Why? two [/INST]⟦moo</s>⟧"),
        # A system column wins over system_prompt, even when empty (then there is no system text), as in axolotl.
        ({"q": "Why?", "a": "moo", "system": "Moo."}, "<s><<SYS>>Moo.<</SYS>>[INST] Why? [/INST]⟦moo</s>⟧"),
        ({"q": "Why?", "a": "moo", "system": None}, "<s>[INST] Why? [/INST]⟦moo</s>⟧"),
    ],
)
def test_user_defined_format(row, expected, train_config, eos_tokenizer):
    [got] = format_row(train_config, eos_tokenizer, USER_FORMAT, row)
    assert readable(eos_tokenizer, *got) == readable(eos_tokenizer, *expected_tokens(eos_tokenizer, expected))


def test_user_defined_defaults_and_fields_written_on_the_entry(train_config, eos_tokenizer):
    # axolotl's defaults: "{instruction} {input} " / "{instruction} " and the alpaca column names. Prompt and
    # answer are tokenized apart, so the prompt's trailing space is a token of its own.
    [got] = format_row(train_config, eos_tokenizer, {}, {"instruction": "Why?", "output": "moo"})
    prompt = eos_tokenizer("Why? ")["input_ids"]
    answer = eos_tokenizer("moo", add_special_tokens=False)["input_ids"] + [eos_tokenizer.eos_token_id]
    assert eos_tokenizer.convert_ids_to_tokens(prompt)[-1] == "Ġ"
    assert got == (prompt + answer, [IGNORE_INDEX] * len(prompt) + answer)
    # The same keys written on the entry (the type: line left empty) are read as the mapping, with a warning.
    raw = {"base_model": "m", "datasets": [{"path": "x.jsonl", "type": None, **USER_FORMAT}]}
    [warning] = check_keys(raw, "cfg.yaml")
    assert "read as its type: mapping" in warning and "field_instruction" in warning
    assert raw["datasets"][0]["type"] == USER_FORMAT
    # Next to a type name they have no effect, as in axolotl (which drops them).
    raw = {"base_model": "m", "datasets": [{"path": "x.jsonl", "type": "alpaca", "field_instruction": "q"}]}
    [warning] = check_keys(raw, "cfg.yaml")
    assert "field_instruction have no effect next to type: 'alpaca'" in warning
    assert raw["datasets"][0] == {"path": "x.jsonl", "type": "alpaca"}


@pytest.mark.parametrize(
    ("type_", "row", "message"),
    [
        ("oasst", {"INSTRUCTION": "Why?"}, "missing field 'RESPONSE' (type oasst reads INSTRUCTION, RESPONSE)"),
        ("explainchoice", {"question": "Why?", "choices": ["a"]}, "missing field 'solution/explanation'"),
        ("explainchoice", {"question": "Why?", "choices": None, "solution": "a"}, "a field has the wrong kind"),
        (USER_FORMAT, {"a": "moo"}, "missing field 'q'"),
        (
            "input_output",
            {"segments": [{"text": "moo"}]},
            "segment 0: a segment is {text: <string>, label: true|false}",
        ),
    ],
)
def test_rows_without_the_columns_a_type_reads_are_one_clear_error(type_, row, message, train_config, eos_tokenizer):
    with pytest.raises(ConfigError, match=r"datasets\[0\]: row 1") as error:
        format_row(train_config, eos_tokenizer, type_, row)
    assert message in str(error.value)


def test_a_streamed_file_is_checked_for_the_columns_its_type_reads():
    from hpcft.core.features.streamed_rows import required_columns
    from hpcft.core.schema import DatasetConfig

    assert required_columns(DatasetConfig(path="x", type="alpaca_chat.load_qa")) == [("question",), ("answer",)]
    assert required_columns(DatasetConfig(path="x", type="oasst:chat")) == [("INSTRUCTION",), ("RESPONSE",)]
    assert required_columns(DatasetConfig(path="x", type="orcamini")) == [("question",), ("response",)]
    mapping = DatasetConfig.model_validate({"path": "x", "type": UserDefinedPromptType(field_instruction="q")})
    assert required_columns(mapping) == [("q",)]


def test_llama2_chat_writes_fastchats_llama2_text_and_trains_the_answers(train_config, eos_tokenizer):
    conversation = [
        {"from": "system", "value": "Be a cow."},
        {"from": "human", "value": "Why?"},
        {"from": "gpt", "value": "moo"},
        {"from": "human", "value": "Again?"},
        {"from": "gpt", "value": "moo moo"},
        {"from": "human", "value": "Last?"},  # a question without an answer is left out
    ]
    [(ids, labels)] = format_row(train_config, eos_tokenizer, "llama2_chat", {"conversations": conversation})
    assert eos_tokenizer.decode(ids) == (
        "<s>[INST] <<SYS>>\nBe a cow.\n<</SYS>>\n\nWhy?[/INST] moo </s><s>[INST] Again? [/INST] moo moo </s><s>"
    )
    # axolotl's arithmetic (made for Llama 2's tokenizer) trains each answer, its </s> and the <s> after the last.
    trained = [t for t in labels if t != IGNORE_INDEX]
    assert eos_tokenizer.decode(trained) == " moo </s> moo moo </s><s>"
    [(ids, _)] = format_row(train_config, eos_tokenizer, "llama2_chat", {"conversations": conversation[1:3]})
    assert eos_tokenizer.decode(ids).startswith(
        "<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant."
    )
    with pytest.raises(ConfigError, match="roles must alternate human, gpt"):
        format_row(train_config, eos_tokenizer, "llama2_chat", {"conversations": conversation[1:2] * 2})


def test_chat_template_keys_on_these_types_are_a_warning_that_they_do_nothing():
    entry = {"path": "x.jsonl", "type": "alpaca_chat.load_qa", "roles_to_train": ["assistant"], "train_on_eos": "all"}
    raw = {"base_model": "m", "datasets": [entry]}
    [warning] = check_keys(raw, "cfg.yaml")
    assert "datasets[0]: roles_to_train, train_on_eos have no effect with type: alpaca_chat.load_qa" in warning
    # chat_template itself reads them: no warning.
    raw = {"base_model": "m", "datasets": [{**entry, "type": "chat_template"}]}
    assert check_keys(raw, "cfg.yaml") == []


def test_docs_list_every_strategy_and_every_listed_name_validates():
    from pathlib import Path

    from hpcft.core.features.prompt_strategies import STRATEGY_COLUMNS
    from hpcft.core.schema import DatasetConfig

    docs = (Path(__file__).resolve().parents[2] / "docs" / "datasets.md").read_text()
    listed = {name for name in STRATEGY_COLUMNS if f"`{name}`" in docs or f"`.{name.split('.')[-1]}`" in docs}
    assert listed == set(STRATEGY_COLUMNS)
    for name in STRATEGY_COLUMNS:
        assert DatasetConfig(path="x", type=name).type == name


@pytest.mark.parametrize(
    ("type_", "message"),
    [
        ("creative_acr", "axolotl's creative_acr has no such loader; did you mean 'creative_acr.load_"),
        ("alpaca_chat:load_qa", "did you mean 'alpaca_chat.load_qa'?"),
        ("gpteacher:vicuna", "unknown prompt style 'vicuna'; use gpteacher:instruct, gpteacher:chat"),
        ("user_defined", "write a user-defined format as a mapping under type:"),
        ("oasts", "unknown dataset type 'oasts'; did you mean 'oasst'?"),
    ],
)
def test_type_names_axolotl_does_not_have_are_refused_with_the_name_meant(type_, message):
    from hpcft.core.schema import DatasetConfig

    with pytest.raises(ValueError, match="type") as error:
        DatasetConfig(path="x", type=type_)
    assert message in str(error.value)


@pytest.fixture(scope="module")
def chat_tokenizer(tiny_model_dir):
    """The tiny tokenizer with ChatML's and Llama 3's special tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    specials = ["<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return tokenizer


MESSAGES = [
    {"role": "system", "content": "Be a cow."},
    {"role": "user", "content": "Why?"},
    {"role": "assistant", "content": "moo"},
]


@pytest.mark.parametrize(
    ("keys", "messages", "expected"),
    [
        (
            {},
            MESSAGES,
            "<|im_start|>system\nBe a cow.<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
            "⟦moo<|im_end|>⟧\n",
        ),
        # A message's own weight wins over its role.
        (
            {},
            [{**m, "weight": int(m["role"] == "user")} for m in MESSAGES],
            "<|im_start|>system\nBe a cow.<|im_end|>\n<|im_start|>user\n⟦Why?<|im_end|>⟧\n<|im_start|>assistant\n"
            "moo<|im_end|>\n",
        ),
        (
            {"chat_template": "llama3"},
            MESSAGES,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe a cow.<|eot_id|><|start_header_id|>"
            "user<|end_header_id|>\n\nWhy?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n⟦moo<|eot_id|>⟧",
        ),
    ],
)
def test_messages_frames_chatml_or_llama3_and_trains_by_weight(keys, messages, expected, train_config, chat_tokenizer):
    cfg = train_config(datasets=[{"path": "x.jsonl", "type": "messages", **keys}])
    [got] = make_formatter(cfg.datasets[0], cfg, chat_tokenizer, "datasets[0]")({"messages": messages}, 1)
    assert readable(chat_tokenizer, *got) == readable(chat_tokenizer, *expected_tokens(chat_tokenizer, expected))


def test_messages_refuses_other_templates_on_the_login_node(train_config):
    with pytest.raises(ValueError, match="type messages writes chatml or llama3 only, not chat_template 'gemma'"):
        train_config(datasets=[{"path": "x.jsonl", "type": "messages", "chat_template": "gemma"}])


def test_alpaca_chat_reads_conversation_as_its_prompt_style(train_config, eos_tokenizer):
    raw = {"base_model": "m", "datasets": [{"path": "x.jsonl", "type": "alpaca_chat", "conversation": "chatml"}]}
    assert check_keys(raw, "cfg.yaml") == []
    assert raw["datasets"][0] == {"path": "x.jsonl", "type": "alpaca:chatml"}
    [got] = format_row(train_config, eos_tokenizer, raw["datasets"][0]["type"], ADD_NO_INPUT)
    expected = (
        f"<s><|im_start|>system\n{ALPACA}<|im_end|>\n<|im_start|>user\nAdd the numbers.<|im_end|>\n"
        "<|im_start|>assistant\n⟦five</s>⟧"
    )
    assert readable(eos_tokenizer, *got) == readable(eos_tokenizer, *expected_tokens(eos_tokenizer, expected))
    raw["datasets"] = [{"path": "x.jsonl", "type": "alpaca_chat", "conversation": "vicuna"}]
    with pytest.raises(ValueError, match="conversation: 'vicuna' is not a prompt style of type alpaca_chat"):
        check_keys(raw, "cfg.yaml")


def test_columns_a_row_lacks_are_empty_through_the_dataset_pipeline(train_config, eos_tokenizer):
    """A datasets.Dataset fills a row's missing columns with None: an absent system text then writes none (as in
    axolotl, which reads the same columns), and the other row keeps its own."""
    import datasets

    from hpcft.trainer.data.formats import tokenize_dataset

    rows = [{**ADD_NO_INPUT, "system": "Be brief."}, dict(ADD_NO_INPUT)]
    cfg = train_config(datasets=[{"path": "x.jsonl", "type": "alpaca_w_system"}])
    kept, counts = tokenize_dataset(datasets.Dataset.from_list(rows), cfg.datasets[0], cfg, eos_tokenizer, "d")
    assert counts["kept"] == 2
    texts = [eos_tokenizer.decode(ids) for ids in kept["input_ids"]]
    assert texts == [
        "<s>SYSTEM: Be brief.\nUSER: Add the numbers.\nASSISTANT:five</s>",
        "<s>USER: Add the numbers.\nASSISTANT:five</s>",
    ]
