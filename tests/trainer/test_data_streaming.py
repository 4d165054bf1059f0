"""Streamed training data (streaming: true, pretraining_dataset): formatted and packed on the fly, each rank on its
own files, resumed where the interrupted run stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from accelerate.data_loader import prepare_data_loader

from hpcft.core.schema import TrainConfig
from hpcft.trainer.data.formats import IGNORE_INDEX, tokenize_dataset
from hpcft.trainer.data.packing import make_collator
from hpcft.trainer.data.streaming import streaming_arguments, streaming_datasets, training_stream
from hpcft.trainer.loop.args import training_argument_values


@pytest.fixture
def pretrain_config(tiny_model_dir, tmp_path):
    """pretrain_config(entries, **keys) -> a TrainConfig with a pretraining_dataset (no datasets:) on the tiny model."""

    def make(entries: list[dict], **keys) -> TrainConfig:
        data = {"base_model": str(tiny_model_dir), "output_dir": str(tmp_path / "out"), "pretraining_dataset": entries}
        return TrainConfig.model_validate({**data, **keys})

    return make


def unpacked(rows) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The samples inside packed rows (split where position_ids restart), labels as packing left them."""
    samples = []
    for row in rows:
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
        for a, b in zip(starts, starts[1:], strict=False):
            samples.append((tuple(row["input_ids"][a:b]), tuple(row["labels"][a:b])))
    return samples


def test_pretraining_stream_packs_the_same_samples_a_prepared_dataset_has(
    pretrain_config, tiny_tokenizer, pretrain_dataset
):
    entry = {"path": pretrain_dataset["path"], "text_column": "text"}  # axolotl's pretraining_dataset entry
    cfg = pretrain_config([entry], max_steps=5, sequence_len=96, sample_packing=True)
    assert cfg.streaming and cfg.datasets[0].type == "pretrain"
    rows = list(training_stream(cfg, tiny_tokenizer))
    assert all(len(row["input_ids"]) <= 96 for row in rows) and len(rows) < 150
    # Each streamed sample is a window of the texts as the pretrain type cuts them; packing masks its first label.
    raw = datasets.load_dataset("json", data_files=entry["path"], split="train")
    prepared, _ = tokenize_dataset(raw, cfg.datasets[0], cfg, tiny_tokenizer, "d")
    samples = zip(prepared["input_ids"], prepared["labels"], strict=True)
    expected = Counter((tuple(ids), (IGNORE_INDEX, *labels[1:])) for ids, labels in samples)
    assert Counter(unpacked(rows)) == expected


def test_entries_of_different_types_are_streamed_together(train_config, tiny_tokenizer, chat_dataset, pretrain_dataset):
    cfg = train_config(
        datasets=[chat_dataset, pretrain_dataset], streaming=True, max_steps=5, sequence_len=128, sample_packing=True
    )
    rows = list(training_stream(cfg, tiny_tokenizer))
    expected: Counter = Counter()
    for ds in cfg.datasets:
        raw = datasets.load_dataset("json", data_files=ds.path, split="train")
        prepared, _ = tokenize_dataset(raw, ds, cfg, tiny_tokenizer, "d")
        samples = zip(prepared["input_ids"], prepared["labels"], strict=True)
        expected += Counter((tuple(ids), (IGNORE_INDEX, *labels[1:])) for ids, labels in samples)
    assert Counter(unpacked(rows)) == expected


def test_streamed_chat_rows_match_the_prepared_ones_and_keep_order_with_curriculum(
    train_config, tiny_tokenizer, chat_dataset
):
    cfg = train_config(datasets=[chat_dataset], streaming=True, max_steps=5, curriculum_sampling=True)
    streamed = list(training_stream(cfg, tiny_tokenizer).take(20))
    raw = datasets.load_dataset("json", data_files=chat_dataset["path"], split="train").select(range(40))
    prepared, _ = tokenize_dataset(raw, cfg.datasets[0], cfg, tiny_tokenizer, "d")
    assert [r["input_ids"] for r in streamed] == prepared["input_ids"][:20]  # not shuffled: curriculum_sampling
    assert [r["labels"] for r in streamed] == prepared["labels"][:20]
    skipped = train_config(
        datasets=[{**chat_dataset, "skip": 3}], streaming=True, max_steps=5, curriculum_sampling=True
    )
    assert next(iter(training_stream(skipped, tiny_tokenizer)))["input_ids"] == prepared["input_ids"][3]


def test_each_rank_reads_its_own_files(pretrain_config, tiny_tokenizer, tmp_path):
    for part in range(4):
        rows = [{"text": f"The cow number {part} {j} says moo."} for j in range(5)]
        (tmp_path / f"part-{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = pretrain_config([{"path": str(tmp_path), "data_files": "part-*.jsonl"}], max_steps=4)
    stream = training_stream(cfg, tiny_tokenizer)
    assert streaming_arguments(cfg) == {"accelerator_config": {"dispatch_batches": False, "split_batches": False}}
    parts = []
    for rank in range(2):  # accelerate's own sharding, as each of two ranks runs it
        loader = torch.utils.data.DataLoader(stream, batch_size=1, collate_fn=make_collator(cfg, tiny_tokenizer))
        sharded = prepare_data_loader(
            loader, num_processes=2, process_index=rank, dispatch_batches=False, put_on_device=False
        )
        parts.append([tiny_tokenizer.decode(batch["input_ids"][0]).split()[3] for batch in sharded])
    assert len(parts[0]) == len(parts[1]) == 10
    assert set(parts[0]).isdisjoint(parts[1]) and set(parts[0]) | set(parts[1]) == {"0", "1", "2", "3"}


def test_schedule_counts_max_steps_and_eval_data_is_tokenized(train_config, tiny_tokenizer, chat_dataset):
    cfg = train_config(datasets=[chat_dataset], test_datasets=[chat_dataset], streaming=True, max_steps=7)
    _, eval_ds = streaming_datasets(cfg, tiny_tokenizer)
    assert len(eval_ds) == 200
    values = training_argument_values(cfg, _Precision(), None, num_train_rows=7, has_eval=True, world_size=1)
    assert values["max_steps"] == 7 and values["accelerator_config"]["dispatch_batches"] is False


class _Precision:
    bf16 = fp16 = full_bf16 = False


@pytest.mark.slow
def test_streamed_run_crashes_and_resumes_on_the_same_batches(pretrain_config, pretrain_dataset, tmp_path):
    cfg = pretrain_config(
        [{"path": pretrain_dataset["path"]}],
        max_steps=6,
        sequence_len=64,
        sample_packing=True,
        micro_batch_size=2,
        streaming_multipack_buffer_size=40,
        save_steps=3,
        learning_rate=1e-3,
    )
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg.training_dict()))
    run = [sys.executable, "-m", "hpcft.trainer", "train", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    crashed = subprocess.run(
        run, capture_output=True, text=True, timeout=300, env={**env, "HPCFT_FAULT_CRASH_AT_STEP": "5"}
    )
    assert crashed.returncode != 0 and "injected crash" in crashed.stderr
    resumed = subprocess.run(run, capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 4, 5, 6]  # step 5 crashed before its metrics line
    # Step 4 ran twice, from checkpoint-3: the stream skipped the 3 trained batches and gave the same next one.
    assert metrics[4]["loss"] == pytest.approx(metrics[3]["loss"], rel=1e-5)
    assert (Path(cfg.output_dir) / "model.safetensors").is_file()


@pytest.mark.slow
def test_axolotl_streaming_pretrain_example_trains_two_steps(tmp_path, monkeypatch):
    """axolotl's examples/streaming/pretrain.yaml (kept in tests/data/axolotl_style), its Hub dataset swapped for a
    local file and its model for a tiny one, as the compatibility matrix (bench/axolotl_examples.py) runs it."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("axolotl_examples", root / "bench" / "axolotl_examples.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(bench)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = tmp_path / "streaming-pretrain.yaml"
    config.write_text((root / "tests" / "data" / "axolotl_style" / "streaming-pretrain.yaml").read_text())
    outcome = bench.validate_one(config, config.name)
    assert outcome.result == "accepted", outcome.detail
    result, detail = bench.train_one(outcome, tmp_path, {}, timeout=300)
    assert result == "trained" and detail.startswith("2 steps, loss "), detail
    trained = yaml.safe_load((tmp_path / "train" / "streaming_pretrain_yaml" / "train.yaml").read_text())
    assert trained["streaming"] is True and trained["datasets"][0]["type"] == "pretrain"
