"""Loading dataset entries: local files of each format, folders, save_to_disk, the Hub offline, bad inputs."""

from __future__ import annotations

import json

import datasets
import pytest

from hpcft.core.checks.dataset_heads import HEAD_BYTES, file_problem
from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig
from hpcft.trainer.data.data_sources import load_raw_dataset

ROWS = [{"text": "one two"}, {"text": "three four"}]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
def test_local_file_formats(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    frame = datasets.Dataset.from_list(ROWS)
    {
        ".jsonl": lambda: frame.to_json(path),
        ".json": lambda: path.write_text(json.dumps(ROWS)),
        ".parquet": lambda: frame.to_parquet(path),
        ".csv": lambda: frame.to_csv(path, index=False),
    }[suffix]()
    assert load_raw_dataset(DatasetConfig(path=str(path), type="completion"))["text"] == ["one two", "three four"]


def test_text_file_folder_ds_type_and_saved_dataset(tmp_path):
    (tmp_path / "a.txt").write_text("one two\nthree four\n")
    assert load_raw_dataset(DatasetConfig(path=str(tmp_path / "a.txt")))["text"] == ["one two", "three four"]

    folder = tmp_path / "folder"
    folder.mkdir()
    for i, row in enumerate(ROWS):
        (folder / f"part{i}.data").write_text(json.dumps(row) + "\n")
    entry = DatasetConfig(path=str(folder), ds_type="json", data_files=["*.data"])
    assert sorted(load_raw_dataset(entry)["text"]) == ["one two", "three four"]

    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(saved))
    assert len(load_raw_dataset(DatasetConfig(path=str(saved)))) == 2
    with pytest.raises(ConfigError, match=r"datasets\[0\] .*no split 'validation' \(has train\)"):
        load_raw_dataset(DatasetConfig(path=str(saved), split="validation"))


def test_missing_and_empty_files_name_the_entry(tmp_path):
    with pytest.raises(ConfigError, match=r"datasets\[2\] \('/nowhere/chat.jsonl'\): file or folder not found"):
        load_raw_dataset(DatasetConfig(path="/nowhere/chat.jsonl"), "datasets", 2)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ConfigError, match=r"test_datasets\[0\] .*data file is empty"):
        load_raw_dataset(DatasetConfig(path=str(tmp_path / "empty.jsonl")), "test_datasets", 0)
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(ConfigError, match=r"datasets\[0\] .*bad\.jsonl: line 2 is not valid JSON \(Expecting"):
        load_raw_dataset(DatasetConfig(path=str(tmp_path / "bad.jsonl")))


# Past the first MiB the login node reads: the preprocessing job names the file and the line of the bad row.
FAR_IN = {
    "far.jsonl": (lambda rows: "".join(json.dumps(r) + "\n" for r in rows) + '{"text": "x"\n', "line 30001: "),
    "far.json": (lambda rows: json.dumps(rows, indent=0)[:-1] + ', {"text": }]', "line 90002 is not valid JSON"),
    "far.csv": (lambda rows: "text\n" + "".join(f"{r['text']}\n" for r in rows) + "a,b\n", "line 30002 has 2 fields"),
}


@pytest.mark.parametrize("name", sorted(FAR_IN))
def test_a_bad_row_past_the_login_nodes_head_is_named_by_file_and_line(tmp_path, name):
    rows = [{"text": f"row {i:06d} " + "x" * 30} for i in range(30000)]
    make, expect = FAR_IN[name]
    path = tmp_path / name
    path.write_text(make(rows))
    assert (
        path.stat().st_size > HEAD_BYTES and file_problem(path, path.suffix.strip(".").replace("jsonl", "json")) is None
    )
    with pytest.raises(ConfigError) as err:
        load_raw_dataset(DatasetConfig(path=str(path), type="completion"))
    assert f"{path}: {expect}" in str(err.value)


def test_hub_name_offline_is_one_clear_error(monkeypatch):
    # This machine cannot reach the Hub; point HF_ENDPOINT at a closed local port so the test is the same anywhere.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ConfigError) as err:
        load_raw_dataset(DatasetConfig(path="org/name", type="completion"), "datasets", 1)
    assert str(err.value).startswith(
        "datasets[1] ('org/name') is not a local file and the Hugging Face Hub is unreachable"
    )
