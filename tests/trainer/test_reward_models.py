"""Reward models on the tiny model (real transformers/TRL/peft on CPU): the rows of bradley_terry.chat_template and
stepwise_supervised as axolotl builds them, a reward model trained with TRL's RewardTrainer (center_rewards_coefficient
included, full and LoRA), and a process reward model trained on its step labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from transformers import AutoModelForSequenceClassification

from hpcft.core.errors import ConfigError
from hpcft.trainer.data.formats import IGNORE_INDEX
from hpcft.trainer.loop.elastic import BatchLayout
from hpcft.trainer.merge_lora import merge_lora
from hpcft.trainer.model.loading import load_tokenizer
from hpcft.trainer.objectives.reward_data import tokenize_bradley_terry, tokenize_stepwise
from hpcft.trainer.train import build_trainer, save_final_model

BT_ROW = {
    "system": "You are a tiny assistant.",
    "input": "What color is the sky?",
    "chosen": "The sky is blue.",
    "rejected": "I do not know.",
}


def bt_rows(n: int = 16) -> list[dict]:
    return [
        {"system": "", "input": f"What is {i % 10} plus one?", "chosen": f"It is {i % 10 + 1}.", "rejected": "No."}
        for i in range(n)
    ]


def stepwise_rows(n: int = 16) -> list[dict]:
    return [
        {
            "prompt": f"What is {i % 10} plus two?",
            "completions": [f"{i % 10} plus one is {i % 10 + 1}.", f"{i % 10 + 1} plus one is {i % 10 + 2}."],
            "labels": [True, i % 3 != 0],
        }
        for i in range(n)
    ]


def reward_config(train_config, write_jsonl, **keys):
    data = write_jsonl("bt.jsonl", bt_rows())
    return train_config(
        datasets=[{"path": str(data), "type": "bradley_terry.chat_template"}],
        reward_model=True,
        chat_template="chatml",
        micro_batch_size=2,
        learning_rate=1e-3,
        **{"save_strategy": "no", **keys},
    )


def test_bradley_terry_row_is_the_whole_conversation_twice(train_config, tiny_tokenizer):
    cfg = train_config(
        datasets=[{"path": "x.jsonl", "type": "bradley_terry.chat_template"}], reward_model=True, sequence_len=40
    )
    template = tiny_tokenizer.chat_template
    ids = tokenize_bradley_terry(BT_ROW, template, tiny_tokenizer, cfg.datasets[0], cfg)
    head = (
        "<|im_start|>system\nYou are a tiny assistant.<|im_end|>\n<|im_start|>user\nWhat color is the sky?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    for key in ("chosen", "rejected"):
        text = f"{head}{BT_ROW[key]}<|im_end|>\n"
        assert tiny_tokenizer.decode(ids[f"{key}_ids"]) == text
        assert ids[f"{key}_ids"] == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    short = cfg.model_copy(update={"sequence_len": 12})
    assert len(tokenize_bradley_terry(BT_ROW, template, tiny_tokenizer, cfg.datasets[0], short)["chosen_ids"]) == 12
    dropped = cfg.model_copy(update={"datasets": [cfg.datasets[0].model_copy(update={"drop_system_message": True})]})
    no_system = tokenize_bradley_terry(BT_ROW, template, tiny_tokenizer, dropped.datasets[0], dropped)
    assert tiny_tokenizer.decode(no_system["chosen_ids"]).startswith("<|im_start|>user\n")
    # As in axolotl: an empty system field is an empty system turn; no field, no turn.
    empty = tokenize_bradley_terry({**BT_ROW, "system": ""}, template, tiny_tokenizer, cfg.datasets[0], cfg)
    assert tiny_tokenizer.decode(empty["chosen_ids"]).startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user")
    row = {k: v for k, v in BT_ROW.items() if k != "system"}
    absent = tokenize_bradley_terry(row, template, tiny_tokenizer, cfg.datasets[0], cfg)
    assert tiny_tokenizer.decode(absent["chosen_ids"]).startswith("<|im_start|>user\n")


def test_stepwise_labels_sit_on_the_last_token_of_each_step(train_config, tiny_tokenizer):
    ds = {"path": "x.jsonl", "type": "stepwise_supervised", "step_separator": "\n"}
    cfg = train_config(datasets=[ds], process_reward_model=True)
    row = {"prompt": "What is one plus two?", "completions": ["one plus one is two.", "two plus one is three."]}
    encode = lambda text: tiny_tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prompt, step1, step2 = encode(row["prompt"]), encode(row["completions"][0]), encode(row["completions"][1])
    newline = encode("\n")
    sample = tokenize_stepwise({**row, "labels": [True, False]}, tiny_tokenizer, cfg.datasets[0], cfg, "row 1")
    assert sample["input_ids"] == [tiny_tokenizer.bos_token_id, *prompt, *step1, *newline, *step2, *newline]
    expected = [IGNORE_INDEX] * (1 + len(prompt))
    expected += [IGNORE_INDEX] * (len(step1) + len(newline) - 1) + [1]
    expected += [IGNORE_INDEX] * (len(step2) + len(newline) - 1) + [0]
    assert sample["labels"] == expected

    last_only = cfg.datasets[0].model_copy(update={"train_on_last_step_only": True, "max_completion_length": 4})
    cut = tokenize_stepwise({**row, "labels": [True, False]}, tiny_tokenizer, last_only, cfg, "row 1")
    assert len(cut["input_ids"]) == 1 + len(prompt) + 4  # the steps are cut to max_completion_length
    assert set(cut["labels"]) == {IGNORE_INDEX}  # the last step's label was cut off with it
    with pytest.raises(ConfigError, match="one label per step"):
        tokenize_stepwise({**row, "labels": [True]}, tiny_tokenizer, cfg.datasets[0], cfg, "row 1")


def test_reward_model_trains_with_trls_reward_trainer_and_saves_a_scorer(train_config, write_jsonl):
    cfg = reward_config(train_config, write_jsonl, max_steps=4)
    assert (cfg.model_type, cfg.num_labels) == ("AutoModelForSequenceClassification", 1)  # axolotl's defaults
    tokenizer = load_tokenizer(cfg)
    trainer, _ = build_trainer(cfg, tokenizer, BatchLayout(1, 2, 1))
    assert type(trainer).__name__ == "RewardTrainer"
    assert trainer.args.max_length == cfg.sequence_len
    trainer.train()
    save_final_model(trainer, cfg.output_dir)
    lines = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "step" in line and "loss" in line]
    assert len(steps) == 4 and all("reward_accuracy" in s and "reward_margin" in s for s in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]
    scorer = AutoModelForSequenceClassification.from_pretrained(cfg.output_dir).eval()
    chosen = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 3 plus one?"}, {"role": "assistant", "content": "It is 4."}],
        return_tensors="pt",
        return_dict=True,
    )
    assert scorer(**chosen).logits.shape == (1, 1)


def test_center_rewards_coefficient_adds_the_squared_mean_reward(train_config, write_jsonl):
    padded = {"pad_to_sequence_len": True, "sequence_len": 64}
    cfg = reward_config(train_config, write_jsonl, max_steps=1, center_rewards_coefficient=0.5, **padded)
    trainer, _ = build_trainer(cfg, load_tokenizer(cfg), BatchLayout(1, 2, 1))
    assert trainer.args.center_rewards_coefficient == 0.5
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert batch["input_ids"].shape == (4, 64)  # chosen and rejected of both pairs, padded to sequence_len
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
        chosen, rejected = trainer.model(**batch).logits.squeeze(-1).chunk(2)
    expected = -F.logsigmoid(chosen - rejected).mean() + 0.5 * ((chosen + rejected) ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_reward_model_with_lora_trains_and_saves_the_score_head(train_config, write_jsonl, tmp_path):
    lora = {"adapter": "lora", "lora_r": 4, "lora_alpha": 8, "lora_target_modules": ["q_proj", "v_proj"]}
    cfg = reward_config(train_config, write_jsonl, max_steps=1, **lora)
    trainer, _ = build_trainer(cfg, load_tokenizer(cfg), BatchLayout(1, 2, 1))
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert trainable == {"base_model.model.score.modules_to_save.default.weight"}
    trainer.train()
    save_final_model(trainer, cfg.output_dir)
    adapter = json.loads((Path(cfg.output_dir) / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and "score" in adapter["modules_to_save"]
    # merge-lora folds it into a whole reward model, with the trained head.
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg.training_dict()))
    merged = AutoModelForSequenceClassification.from_pretrained(merge_lora(config))
    trained_head = trainer.model.base_model.model.score.modules_to_save["default"].weight
    torch.testing.assert_close(merged.score.weight, trained_head.detach())


def test_process_reward_model_trains_on_the_step_labels(train_config, write_jsonl):
    data = write_jsonl("prm.jsonl", stepwise_rows())
    cfg = train_config(
        datasets=[{"path": str(data), "type": "stepwise_supervised"}],
        process_reward_model=True,
        micro_batch_size=4,
        max_steps=3,
        learning_rate=1e-3,
        save_strategy="no",
    )
    assert (cfg.model_type, cfg.num_labels) == ("AutoModelForTokenClassification", 2)
    trainer, _ = build_trainer(cfg, load_tokenizer(cfg), BatchLayout(1, 4, 1))
    assert type(trainer.model).__name__ == "LlamaForTokenClassification"
    assert trainer.model.config.num_labels == 2
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labelled = batch["labels"] != IGNORE_INDEX
    assert labelled.sum() == 8  # two steps per row, one label each
    torch.testing.assert_close(loss, F.cross_entropy(logits[labelled], batch["labels"][labelled]))
    trainer.model.train()
    trainer.train()
    lines = (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines if '"loss"' in line]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_reward_model_run_crashes_and_resumes_from_its_checkpoint(train_config, write_jsonl, tmp_path):
    cfg = reward_config(train_config, write_jsonl, max_steps=4, save_steps=2, save_strategy=None)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg.training_dict()))

    def run(**env: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "hpcft.trainer", "train", str(config)]
        environment = {**os.environ, "OMP_NUM_THREADS": "2", **env}
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)

    assert run(HPCFT_FAULT_CRASH_AT_STEP="3").returncode != 0
    assert (Path(cfg.output_dir) / "checkpoint-2").is_dir()
    resumed = run()
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if "loss" in line]
    assert steps[-2:] == [3, 4]  # continued after checkpoint-2, not from the start
    assert AutoModelForSequenceClassification.from_pretrained(cfg.output_dir).config.num_labels == 1
