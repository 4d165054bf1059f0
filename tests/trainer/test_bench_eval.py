"""do_bench_eval: multiple-choice questions scored at each evaluation as axolotl scores them (the answer letter the
model ranks first at the answer position), from a local bench_dataset file; the metrics reach the Trainer's log
next to eval_loss and match an independent scoring of the same model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Trainer, TrainingArguments

from hpcft.trainer.loop.args import Precision, training_argument_values
from hpcft.trainer.model.loading import load_model, load_tokenizer
from hpcft.trainer.reporting.bench_eval import LETTERS, BenchEvalCallback, load_bench_rows

ROWS, SEQ = 8, 16
QUESTIONS = [
    ("colors: sky", "The sky is\nA. blue\nB. green\nAnswer:", "A"),
    ("colors: grass", "The grass is\nA. red\nB. green\nAnswer:", "B"),
    ("animals: cat", "The cat says\nA. woof\nB. meow\nC. moo\nAnswer:", "B"),
    ("animals: dog", "The dog says\nA. woof\nB. meow\nAnswer:", "A"),
    ("animals: cow", "The cow says\nA. woof\nB. meow\nC. moo\nAnswer:", "C"),
    ("skipped", "Not a letter answer:", "blue"),  # axolotl keeps only rows answered by one letter
]


@pytest.fixture
def bench_file(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text("".join(json.dumps({"subject": s, "input": i, "output": o}) + "\n" for s, i, o in QUESTIONS))
    return path


def independent_scores(model, tokenizer) -> tuple[dict[str, list[int]], float]:
    """Per group, whether the letter the model ranks first at the answer position is right; and the mean loss."""
    letter_ids = [tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in LETTERS]
    groups: dict[str, list[int]] = {}
    losses = []
    for subject, question, answer in QUESTIONS[:-1]:
        source = tokenizer(tokenizer.bos_token + question, add_special_tokens=False)["input_ids"]
        target = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([source + target])).logits[0]
        first = len(source) - 1
        chosen = LETTERS[int(logits[first, letter_ids].argmax())]
        groups.setdefault(subject.split(":")[0], []).append(int(chosen == answer))
        loss = torch.nn.functional.cross_entropy(logits[first : first + len(target)], torch.tensor(target))
        losses.append(loss.item())
    return groups, sum(losses) / len(losses)


def test_bench_metrics_at_each_evaluation_match_an_independent_scoring(train_config, bench_file):
    cfg = train_config(
        do_bench_eval=True,
        bench_dataset=str(bench_file),
        val_set_size=0.25,
        eval_steps=2,
        max_steps=4,
        micro_batch_size=2,
        learning_rate=5e-3,
        save_strategy="best",
        metric_for_best_model="eval_bench_total_accuracy",
    )
    tokenizer = load_tokenizer(cfg)
    callback = BenchEvalCallback.from_config(cfg, tokenizer)
    assert len(callback.items) == 5  # the row answered "blue" is left out
    args = TrainingArguments(**training_argument_values(cfg, Precision(), None, ROWS, True, 1))
    rows = [
        {"input_ids": list(range(3 + i, 3 + i + SEQ)), "labels": list(range(3 + i, 3 + i + SEQ))} for i in range(ROWS)
    ]
    model = load_model(cfg, tokenizer, Precision())
    trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows[:2], callbacks=[callback])
    callback.attach(trainer)
    trainer.train()

    evaluations = [entry for entry in trainer.state.log_history if "eval_bench_total_accuracy" in entry]
    assert [entry["step"] for entry in evaluations] == [2, 4]
    last = evaluations[-1]  # scored with the weights the run ends with
    groups, loss = independent_scores(trainer.model.eval(), tokenizer)
    assert last["eval_bench_accuracy_colors"] == pytest.approx(sum(groups["colors"]) / 2)
    assert last["eval_bench_accuracy_animals"] == pytest.approx(sum(groups["animals"]) / 3)
    assert last["eval_bench_total_accuracy"] == pytest.approx(sum(sum(g) for g in groups.values()) / 5)
    assert last["eval_bench_average_accuracy"] == pytest.approx(
        (sum(groups["colors"]) / 2 + sum(groups["animals"]) / 3) / 2
    )
    assert last["eval_bench_loss"] == pytest.approx(loss, rel=1e-4)
    # The best checkpoint can be chosen by a bench score: transformers compares the metrics this callback adds.
    assert trainer.state.best_metric == max(entry["eval_bench_total_accuracy"] for entry in evaluations)


def test_the_rows_of_a_local_bench_file_and_axolotl_subject_groups(train_config, bench_file):
    rows = load_bench_rows(train_config(do_bench_eval=True, bench_dataset=str(bench_file), val_set_size=0.25))
    assert [r["output"] for r in rows] == [q[2] for q in QUESTIONS]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"do_bench_eval": True}, "do_bench_eval runs at each evaluation"),
        ({"do_bench_eval": True, "val_set_size": 0.1, "bench_split": "test"}, "bench_split: test"),
        ({"lm_eval_tasks": ["arc_easy:x"]}, "the part after ':' is the number of few-shot examples"),
    ],
)
def test_benchmark_keys_that_cannot_run_are_refused(train_config, keys, message):
    with pytest.raises(ValueError, match=message):
        train_config(**keys)
