"""Load the raw rows of one `datasets:` entry: local files, folders, save_to_disk datasets or Hub names."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import datasets

from hpcft.core.checks.dataset_heads import file_problem
from hpcft.core.dataset_cache import (  # torch-free: the login node uses them too
    BUILDER_BY_DS_TYPE,
    BUILDER_BY_SUFFIX,
    entry_name,
    is_saved_dataset,
    local_files,
)
from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig

__all__ = ["entry_name", "file_builder", "load_raw_dataset", "load_saved_dataset", "local_files"]


def load_raw_dataset(ds: DatasetConfig, where: str = "datasets", index: int = 0, seed: int = 42) -> datasets.Dataset:
    """Load one entry's rows as a `datasets.Dataset`; every failure is one ConfigError naming the entry.
    `seed` shuffles the rows before `shards` splits them (the config's seed)."""
    name = entry_name(where, index, ds)
    files = local_files(ds, where, index)
    path = Path(ds.path).expanduser()
    if path.is_dir() and is_saved_dataset(path):
        dataset = load_saved_dataset(path, ds, name)
    elif files:
        dataset = _load_files(files, ds, name)
    else:
        dataset = _load_from_hub(ds, name)
    if ds.skip:
        if ds.skip >= len(dataset):
            raise ConfigError(f"{name}: skip: {ds.skip} skips every row (the dataset has {len(dataset)})")
        dataset = dataset.select(range(ds.skip, len(dataset)))
    if len(dataset) == 0:
        raise ConfigError(f"{name}: the dataset has no rows")
    if ds.shards:
        dataset = shard_rows(dataset, ds, name, seed)
    return dataset


def shard_rows(dataset: datasets.Dataset, ds: DatasetConfig, name: str, seed: int) -> datasets.Dataset:
    """`shards`/`shards_idx`: one of `shards` equal parts of the shuffled rows, as axolotl takes it."""
    index = ds.shards_idx or 0
    if index >= (ds.shards or 1):
        raise ConfigError(f"{name}: shards_idx {index} is not below shards ({ds.shards}); use 0..{ds.shards - 1}")
    return dataset.shuffle(seed=seed).shard(num_shards=ds.shards, index=index)


def load_saved_dataset(path: Path, ds: DatasetConfig, name: str) -> datasets.Dataset:
    """A save_to_disk folder's rows (its `split` when it holds several)."""
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if ds.split not in loaded:
            raise ConfigError(f"{name}: no split '{ds.split}' (has {', '.join(loaded)}); set split:")
        loaded = loaded[ds.split]
    return loaded


def file_builder(files: list[Path], ds: DatasetConfig, name: str) -> str:
    """The datasets builder (json, parquet, ...) that reads these local files: ds_type, else the file suffix."""
    builder = BUILDER_BY_DS_TYPE.get(ds.ds_type or "") or BUILDER_BY_SUFFIX.get(files[0].suffix)
    if builder is None:
        raise ConfigError(
            f"{name}: cannot tell the format of {files[0].name}; set ds_type: ({', '.join(BUILDER_BY_DS_TYPE)})"
        )
    return builder


def _load_files(files: list[Path], ds: DatasetConfig, name: str) -> datasets.Dataset:
    for f in files:
        if f.stat().st_size == 0:
            raise ConfigError(f"{name}: data file is empty: {f}")
    builder = file_builder(files, ds, name)
    try:
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    except Exception as exc:  # a parse error deep in pyarrow: keep its message, name the entry
        bad_row = _first_bad_row(files, builder)
        if bad_row:
            raise ConfigError(f"{name}: {bad_row}") from None
        raise ConfigError(
            f"{name}: cannot read {builder} data from {files[0]}{' (and others)' if len(files) > 1 else ''}: {exc}"
        ) from None


def _first_bad_row(files: list[Path], builder: str) -> str | None:
    """'<file>: line <n> ...' for the first row datasets could not read (pyarrow's and pandas' messages name
    neither the file nor always the line): the login node's parser over each whole file, in constant memory."""
    for path in files:
        problem = file_problem(path, builder, head_bytes=None)
        if problem:
            return f"{path}: {problem}"
    return None


def _load_from_hub(ds: DatasetConfig, name: str) -> datasets.Dataset:
    # datasets retries an unreachable Hub for ~25 s per entry; a compute node without internet should fail at once.
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ) not in ("0", "")
    if not offline and not hub_reachable():
        raise ConfigError(
            f"{name} is not a local file and the Hugging Face Hub is unreachable from this machine; run "
            "`hpcft preprocess` where there is network (it fills dataset_prepared_path), or point path at local files"
        )
    try:
        return datasets.load_dataset(
            ds.path, name=ds.name, split=ds.split, revision=ds.revision, data_files=ds.data_files
        )
    except Exception as exc:
        raise ConfigError(
            f"{name}: cannot load from the Hugging Face Hub{' (offline mode is set)' if offline else ''}: {exc}"
        ) from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub (or $HF_ENDPOINT) opens: compute nodes often have no internet."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False
