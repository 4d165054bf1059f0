"""Data order and selection keys: dataset_exact_deduplication, curriculum_sampling, sample_packing_sequentially,
max_packed_sequence_len, skip, and the evaluation schedule (eval_strategy)."""

from __future__ import annotations

import pytest

from hpcft.trainer.data.packing import pack_sequences_in_order
from hpcft.trainer.data.prepare import build_datasets
from hpcft.trainer.loop.args import eval_arguments, sampling_strategy

ROWS = [{"instruction": f"Add {n} and {n}.", "output": f"{n} plus {n} is {n}."} for n in ("one", "two", "three")]


def alpaca(write_jsonl, rows: list[dict], name: str = "data.jsonl", **keys) -> dict:
    return {"path": str(write_jsonl(name, rows)), "type": "alpaca", **keys}


def texts(tokenizer, dataset) -> list[str]:
    return [tokenizer.decode(ids).split("### Instruction:\n")[1].split("\n")[0] for ids in dataset["input_ids"]]


def test_exact_deduplication_drops_repeated_samples_before_the_split(train_config, tiny_tokenizer, write_jsonl):
    # Two entries of the same file (as axolotl's lora-1b-deduplicate-sft example), one row repeated inside too.
    entry = alpaca(write_jsonl, [*ROWS, ROWS[0]])
    cfg = train_config(datasets=[entry, dict(entry)], dataset_exact_deduplication=True, val_set_size=2)
    data = build_datasets(cfg, tiny_tokenizer)
    assert data.stats["dropped_duplicates"] == 5 and data.stats["kept"] == 8
    everything = texts(tiny_tokenizer, data.train) + texts(tiny_tokenizer, data.eval)
    assert sorted(everything) == sorted(r["instruction"] for r in ROWS)
    without = build_datasets(train_config(datasets=[entry, dict(entry)]), tiny_tokenizer)
    assert len(without.train) == 8 and "dropped_duplicates" not in without.stats


def test_test_datasets_are_deduplicated_among_themselves(train_config, tiny_tokenizer, write_jsonl):
    train = alpaca(write_jsonl, ROWS)
    test = alpaca(write_jsonl, [ROWS[0], ROWS[0], ROWS[1]], name="test.jsonl")
    data = build_datasets(
        train_config(datasets=[train], test_datasets=[test], dataset_exact_deduplication=True), tiny_tokenizer
    )
    assert texts(tiny_tokenizer, data.eval) == ["Add one and one.", "Add two and two."]


def test_preference_rows_are_deduplicated_and_eval_rows_against_training(train_config, tiny_tokenizer, write_jsonl):
    rows = [
        {"question": f"What color is the {thing}?", "chosen": f"The {thing} is {color}.", "rejected": "No idea."}
        for thing, color in (("sky", "blue"), ("grass", "green"), ("snow", "white"))
    ]
    train = {"path": str(write_jsonl("train.jsonl", [*rows, rows[0], rows[1]])), "type": "chatml.intel"}
    test = {"path": str(write_jsonl("test.jsonl", [rows[2], rows[0]])), "type": "chatml.intel"}
    cfg = train_config(rl="dpo", datasets=[train], test_datasets=[test], dataset_exact_deduplication=True)
    data = build_datasets(cfg, tiny_tokenizer)
    assert len(data.train) == 3 and data.stats["dropped_duplicates"] == 2
    assert data.eval is None  # both evaluation rows are training rows too (axolotl's rl deduplication): none left


def test_curriculum_sampling_keeps_the_data_order(train_config, tiny_tokenizer, write_jsonl):
    rows = [{"instruction": f"Add {n} and {n}.", "output": "yes"} for n in ("one", "two", "three", "four", "five")]
    ordered = build_datasets(
        train_config(datasets=[alpaca(write_jsonl, rows)], curriculum_sampling=True), tiny_tokenizer
    )
    assert texts(tiny_tokenizer, ordered.train) == [r["instruction"] for r in rows]
    cfg = train_config(datasets=[alpaca(write_jsonl, rows)], curriculum_sampling=True)
    assert sampling_strategy(cfg) == "sequential"
    assert sampling_strategy(train_config(datasets=[alpaca(write_jsonl, rows)])) == "random"
    shuffled = build_datasets(train_config(datasets=[alpaca(write_jsonl, rows)], seed=1), tiny_tokenizer)
    assert texts(tiny_tokenizer, shuffled.train) != [r["instruction"] for r in rows]


def test_next_fit_packing_keeps_the_order():
    assert pack_sequences_in_order([5, 4, 2, 6, 1, 10], capacity=10) == [[0, 1], [2, 3, 4], [5]]
    with pytest.raises(ValueError, match="more than the packing capacity"):
        pack_sequences_in_order([11], capacity=10)


def test_sequential_packing_and_curriculum_pack_rows_in_data_order(train_config, tiny_tokenizer, write_jsonl):
    rows = [{"instruction": f"Add {n} and {n}.", "output": "yes"} for n in ("one", "two", "three", "four", "five")]
    cfg = train_config(
        datasets=[alpaca(write_jsonl, rows)],
        sample_packing=True,
        sample_packing_sequentially=True,
        curriculum_sampling=True,
        sequence_len=128,
    )
    data = build_datasets(cfg, tiny_tokenizer)
    packed = [tiny_tokenizer.decode(ids) for ids in data.train["input_ids"]]
    order = [n for row in packed for n in ("one", "two", "three", "four", "five") if f"Add {n} and" in row]
    assert order == ["one", "two", "three", "four", "five"] and len(packed) < len(rows)
    # Each row was closed when the next sample did not fit: the first row plus the next sample is over capacity.
    first, second = data.train["position_ids"][0], data.train["position_ids"][1]
    next_sample = second.index(0, 1) if 0 in second[1:] else len(second)
    assert len(first) + next_sample > 128


def test_max_packed_sequence_len_packs_into_shorter_rows(train_config, tiny_tokenizer, write_jsonl):
    cfg = train_config(datasets=[alpaca(write_jsonl, ROWS * 4)], max_packed_sequence_len=160, sequence_len=512)
    assert cfg.sample_packing and cfg.sequence_len == 160
    data = build_datasets(cfg, tiny_tokenizer)
    longest = max(len(ids) for ids in data.train["input_ids"])
    assert longest <= 160 < 2 * longest
    assert all("position_ids" in row for row in data.train)
    capped = train_config(datasets=[alpaca(write_jsonl, ROWS)], max_packed_sequence_len=4096, sequence_len=512)
    assert capped.sequence_len == 512


def test_skip_leaves_out_the_first_rows(train_config, tiny_tokenizer, write_jsonl):
    data = build_datasets(
        train_config(datasets=[alpaca(write_jsonl, ROWS, skip=2)], shuffle_merged_datasets=False), tiny_tokenizer
    )
    assert texts(tiny_tokenizer, data.train) == ["Add three and three."]


@pytest.mark.parametrize(
    ("keys", "has_eval", "expected"),
    [
        ({"eval_strategy": "epoch", "val_set_size": 0.1}, True, {"eval_strategy": "epoch"}),
        ({"evaluation_strategy": "no", "val_set_size": 0.1}, True, {"eval_strategy": "no"}),
        ({"eval_strategy": "steps", "val_set_size": 0.1}, True, {"eval_strategy": "steps"}),
        (
            {"eval_strategy": "steps", "eval_steps": 3, "val_set_size": 0.1},
            True,
            {"eval_strategy": "steps", "eval_steps": 3},
        ),
        ({"val_set_size": 0.1}, True, {"eval_strategy": "epoch"}),
        ({"evaluation_strategy": "no"}, False, {"eval_strategy": "no"}),
    ],
)
def test_eval_strategy(train_config, keys, has_eval, expected):
    assert eval_arguments(train_config(**keys), has_eval, epoch_steps=10) == expected
