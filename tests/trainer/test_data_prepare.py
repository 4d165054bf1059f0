"""prepare_datasets: the whole pipeline, val_set_size, the content-keyed cache, the cross-process lock."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hpcft.core.errors import ConfigError
from hpcft.core.yaml_config import load_train_yaml
from hpcft.trainer.data.prepare import cache_key, prepare_datasets, run_preprocess


def test_pipeline_counts_split_and_packing(train_config, tiny_tokenizer, chat_dataset, pretrain_dataset):
    cfg = train_config(
        datasets=[chat_dataset, pretrain_dataset],
        sequence_len=256,
        sample_packing=True,
        val_set_size=0.1,
        micro_batch_size=2,
    )
    data = prepare_datasets(cfg, tiny_tokenizer, world_size=3)
    stats = data.stats
    assert (stats["kept"], stats["dropped_too_long"], stats["dropped_no_trainable"]) == (350, 0, 0)
    assert stats["eval_samples"] == math.ceil(0.1 * 350)  # a fraction, as datasets.train_test_split rounds it
    assert stats["train_samples"] == 350 - stats["eval_samples"]
    assert stats["packing_efficiency"] > 0.9 and set(data.train.column_names) == {"input_ids", "labels", "position_ids"}
    assert len(data.train) % (3 * 2) == 0  # every one of 3 ranks gets the same number of micro-batches
    assert data.eval is not None and "position_ids" in data.eval.column_names  # eval_sample_packing follows
    assert sum(len(r) for r in data.train["input_ids"]) >= stats["train_tokens"]

    cfg = train_config(val_set_size=20, shuffle_merged_datasets=False)
    data = prepare_datasets(cfg, tiny_tokenizer, world_size=1)
    assert (len(data.train), len(data.eval)) == (180, 20)  # > 1: a number of rows, the last ones (no shuffle)
    first_chat = json.loads(Path(chat_dataset["path"]).read_text().splitlines()[0])["conversations"]
    assert first_chat[1]["value"] in tiny_tokenizer.decode(data.train[0]["input_ids"])


def test_test_datasets_become_the_eval_split(train_config, tiny_tokenizer, pretrain_dataset):
    cfg = train_config(test_datasets=[pretrain_dataset], val_set_size=0.5)
    data = prepare_datasets(cfg, tiny_tokenizer, world_size=1)
    assert (data.stats["train_samples"], data.stats["eval_samples"]) == (200, 150)


def test_cache_is_reused_and_invalidated_by_a_data_edit(train_config, tiny_tokenizer, chat_dataset, tmp_path):
    original = Path(chat_dataset["path"]).read_text()
    chat = tmp_path / "chat.jsonl"
    chat.write_text(original)
    cfg = train_config(datasets=[{**chat_dataset, "path": str(chat)}])
    first = prepare_datasets(cfg, tiny_tokenizer, world_size=1)
    again = prepare_datasets(cfg, tiny_tokenizer, world_size=1)
    assert (first.stats["cache"], again.stats["cache"]) == ("built", "loaded")
    assert again.train["input_ids"] == first.train["input_ids"]

    # Same size, same mtime granularity does not matter: the key hashes content.
    chat.write_text(original.replace("moo", "MOO"))
    edited = prepare_datasets(cfg, tiny_tokenizer, world_size=1)
    assert edited.stats["cache"] == "built" and edited.stats["key"] != first.stats["key"]
    assert "MOO" in "".join(tiny_tokenizer.decode(ids) for ids in edited.train["input_ids"])

    # The same content elsewhere (another mount point of the shared filesystem) finds the same cache.
    moved = tmp_path / "mounted-elsewhere" / "chat.jsonl"
    moved.parent.mkdir()
    moved.write_text(chat.read_text())
    assert (
        cache_key(train_config(datasets=[{**chat_dataset, "path": str(moved)}]), tiny_tokenizer) == edited.stats["key"]
    )

    # A config field that changes the samples, or another chat template, changes the key too.
    assert cache_key(train_config(datasets=cfg.model_dump()["datasets"], sequence_len=99), tiny_tokenizer) != cache_key(
        cfg, tiny_tokenizer
    )
    other = train_config(datasets=[{**chat_dataset, "path": str(chat), "train_on_eos": "all"}])
    assert cache_key(other, tiny_tokenizer) != cache_key(cfg, tiny_tokenizer)


def _prepare_in_child(cfg_json: str, tokenizer_dir: str, barrier, results) -> None:
    from transformers import AutoTokenizer

    from hpcft.core.schema import TrainConfig

    cfg = TrainConfig.model_validate_json(cfg_json)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    barrier.wait()  # both processes look for the cache at the same moment
    results.put(prepare_datasets(cfg, tokenizer, world_size=1).stats["cache"])


def test_two_processes_only_one_tokenizes(train_config, tiny_model_dir, chat_dataset, pretrain_dataset):
    cfg = train_config(datasets=[chat_dataset, pretrain_dataset], sample_packing=True, sequence_len=512)
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=_prepare_in_child, args=(cfg.model_dump_json(by_alias=True), str(tiny_model_dir), barrier, results)
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(results.get(timeout=5) for _ in procs) == ["built", "loaded"]


def test_run_preprocess_fills_the_cache_training_then_loads(train_config, tiny_tokenizer, chat_dataset, tmp_path):
    cfg = train_config(datasets=[chat_dataset], sample_packing=True, sequence_len=512)
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(cfg.training_dict()))
    assert run_preprocess(config_path).stats["cache"] == "built"
    assert prepare_datasets(load_train_yaml(config_path), tiny_tokenizer, world_size=1).stats["cache"] == "loaded"


def test_file_hashes_are_memoised_but_an_edit_is_seen(train_config, tiny_tokenizer, chat_dataset, tmp_path):
    chat = tmp_path / "chat.jsonl"
    chat.write_text(Path(chat_dataset["path"]).read_text())
    os.utime(chat, (time.time() - 60, time.time() - 60))  # an old file: its hash is remembered
    cfg = train_config(datasets=[{**chat_dataset, "path": str(chat)}])
    key = cache_key(cfg, tiny_tokenizer)
    assert len(list((tmp_path / "prepared" / ".hashes").glob("*.json"))) == 1
    assert cache_key(cfg, tiny_tokenizer) == key

    chat.write_text(chat.read_text().replace("woof", "WOOF"))  # same size, new mtime
    os.utime(chat, (time.time() - 30, time.time() - 30))
    assert cache_key(cfg, tiny_tokenizer) != key


def test_nothing_left_after_formatting_is_one_clear_error(train_config, tiny_tokenizer, chat_dataset):
    cfg = train_config(datasets=[{**chat_dataset, "roles_to_train": ["tool"]}])
    with pytest.raises(ConfigError, match=r"datasets: no sample is left after formatting .*dropped_no_trainable"):
        prepare_datasets(cfg, tiny_tokenizer, world_size=1)


def test_the_login_node_key_finds_the_trainers_cache_without_torch(train_config, tiny_tokenizer):
    from hpcft.core import dataset_cache

    cfg = train_config(sequence_len=128)
    assert not dataset_cache.is_prepared(cfg)
    data = prepare_datasets(cfg, tiny_tokenizer, world_size=1)
    assert dataset_cache.is_prepared(cfg) and dataset_cache.cache_key(cfg) == data.stats["key"]
    assert not dataset_cache.is_prepared(train_config(sequence_len=256))  # another content, another key
    # What `hpcft submit` imports to decide on a preprocessing job loads neither torch nor datasets.
    probe = (
        "import sys, hpcft.launcher.jobs.submit, hpcft.core.dataset_cache as d; "
        "print(sorted(m for m in ('torch', 'datasets', 'transformers') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"
