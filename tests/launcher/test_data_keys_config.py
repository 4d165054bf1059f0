"""The data and evaluation keys on the login node: pretraining_dataset read as streamed datasets (paths resolved,
no preprocessing job), axolotl's older spellings, and the checks that refuse bad combinations before the queue."""

from __future__ import annotations

import pytest
import yaml

from hpcft.core.errors import ConfigError
from hpcft.launcher.config import load_job
from hpcft.launcher.jobs.submit import preprocessing_job_needed

PRETRAIN = """\
base_model: ./model
pretraining_dataset:
  - path: ./data/pretrain.jsonl
    type: pretrain
    text_column: text
    name:
max_steps: 20
sequence_len: 512
sample_packing: true
streaming_multipack_buffer_size: 100
output_dir: ./out
"""


def test_pretraining_dataset_is_a_streamed_dataset_with_its_path_resolved(workspace):
    config = workspace / "pre.yaml"
    config.write_text(PRETRAIN)
    job = load_job(config, "local")
    [entry] = job.cfg.datasets
    assert entry.type == "pretrain" and entry.path == str(workspace / "data" / "pretrain.jsonl")
    assert job.cfg.streaming and job.cfg.pretraining_dataset is None
    trained = job.cfg.training_dict()
    assert trained["streaming"] is True and "pretraining_dataset" not in trained
    assert preprocessing_job_needed(job, sweep=False, backend="sbatch") == (
        False,
        "streaming: the training data is read while training, nothing is prepared ahead",
    )
    # One name for the whole entry (axolotl's string form), and streaming: false tokenizes it ahead instead.
    short = workspace / "short.yaml"
    short.write_text(
        "base_model: ./model\npretraining_dataset: ./data/pretrain.jsonl\nmax_steps: 3\nstreaming: false\n"
    )
    cfg = load_job(short, "local").cfg
    assert cfg.streaming is False and cfg.datasets[0].type == "pretrain"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_steps": None}, "streaming (and pretraining_dataset) needs max_steps"),
        ({"group_by_length": True}, "group_by_length with streaming: needs the whole dataset's lengths"),
        ({"val_set_size": 0.1}, "val_set_size with streaming: cannot split a stream; use test_datasets"),
        ({"dataset_exact_deduplication": True}, "dataset_exact_deduplication with streaming: needs the whole"),
        ({"pretraining_dataset": [{"path": "./data/pretrain.jsonl", "shards": 4}]}, "datasets[0].shards needs"),
        (
            {"pretraining_dataset": [{"path": "./data/pretrain.jsonl", "splt": "x"}]},
            "'pretraining_dataset[0].splt'; did you mean 'split'",
        ),
        ({"pretraining_dataset": [{"path": "./data/pretrain.jsonl", "type": "x"}]}, "'pretraining_dataset[0].type'"),
    ],
)
def test_bad_streaming_combinations_are_refused_naming_the_key(workspace, change, message):
    config = workspace / "pre.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(PRETRAIN), **change}))
    with pytest.raises(ConfigError) as error:
        load_job(config, "local")
    assert message in str(error.value)


def test_older_spellings(workspace):
    config = workspace / "cfg.yaml"
    text = config.read_text()
    config.write_text(text + "evaluation_strategy: 'no'\ntokens:\n  bos_token: <s>\n  eos_token: </s>\n")
    cfg = load_job(config, "local").cfg
    assert cfg.eval_strategy == "no" and cfg.special_tokens == {"bos_token": "<s>", "eos_token": "</s>"}
    assert cfg.tokens is None
    config.write_text(text + "max_packed_sequence_len: 256\n")
    cfg = load_job(config, "local").cfg
    assert cfg.sample_packing and cfg.sequence_len == 256


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("do_causal_lm_eval: true\neval_causal_lm_metrics: [comet]\n", "'comet' scores with a neural model"),
        ("do_causal_lm_eval: true\neval_causal_lm_metrics: [bleu]\n", "unknown metric 'bleu'"),
        ("eval_causal_lm_metrics: [chrf]\n", "eval_causal_lm_metrics needs do_causal_lm_eval: true"),
        ("do_causal_lm_eval: true\nval_set_size: 0\n", "do_causal_lm_eval needs evaluation data"),
    ],
)
def test_causal_lm_eval_checks(workspace, extra, message):
    config = workspace / "cfg.yaml"
    config.write_text(config.read_text() + extra)
    with pytest.raises(ConfigError) as error:
        load_job(config, "local")
    assert message in str(error.value)
