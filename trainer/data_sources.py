"""Load the raw rows of one `datasets:` entry: local files, folders, save_to_disk datasets or Hub names."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import datasets

from hpcft.launcher.errors import ConfigError
from hpcft.launcher.schema import DatasetConfig

# File suffix -> the `datasets` builder that reads it (ds_type overrides).
BUILDER_BY_SUFFIX = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text",
                     ".arrow": "arrow"}
BUILDER_BY_DS_TYPE = {"json": "json", "jsonl": "json", "parquet": "parquet", "csv": "csv", "text": "text",
                      "arrow": "arrow"}


def entry_name(where: str, index: int, ds: DatasetConfig) -> str:
    """How messages name a dataset entry: `datasets[1] ('data/chat.jsonl')`."""
    return f"{where}[{index}] ('{ds.path}')"


def local_files(ds: DatasetConfig, where: str = "datasets", index: int = 0) -> list[Path]:
    """The local data files an entry reads (sorted), [] for a save_to_disk folder or a Hub name."""
    path = Path(ds.path).expanduser()
    name = entry_name(where, index, ds)
    if path.is_file():
        return [path]
    if path.is_dir():
        if _is_saved_dataset(path):
            return sorted(p for p in path.rglob("*") if p.is_file())
        patterns = [ds.data_files] if isinstance(ds.data_files, str) else (ds.data_files or [])
        if patterns:
            files = sorted({f for pattern in patterns for f in path.glob(pattern) if f.is_file()})
        else:
            files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in BUILDER_BY_SUFFIX)
        if not files:
            raise ConfigError(f"{name}: the folder has no data files"
                              + (f" matching {patterns}" if patterns else f" ({', '.join(BUILDER_BY_SUFFIX)})"))
        return files
    if ds.path in BUILDER_BY_DS_TYPE and ds.data_files:  # axolotl style: path: json, data_files: [...]
        files = [Path(f).expanduser() for f in ([ds.data_files] if isinstance(ds.data_files, str) else ds.data_files)]
        for f in files:
            if not f.is_file():
                raise ConfigError(f"{name}: data file not found: {f}")
        return files
    if _looks_like_path(ds.path):
        raise ConfigError(f"{name}: file or folder not found: {path}")
    return []


def load_raw_dataset(ds: DatasetConfig, where: str = "datasets", index: int = 0, seed: int = 42) -> datasets.Dataset:
    """Load one entry's rows as a `datasets.Dataset`; every failure is one ConfigError naming the entry.
    `seed` shuffles the rows before `shards` splits them (the config's seed)."""
    name = entry_name(where, index, ds)
    files = local_files(ds, where, index)
    path = Path(ds.path).expanduser()
    if path.is_dir() and _is_saved_dataset(path):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if ds.split not in loaded:
                raise ConfigError(f"{name}: no split '{ds.split}' (has {', '.join(loaded)}); set split:")
            loaded = loaded[ds.split]
        dataset = loaded
    elif files:
        dataset = _load_files(files, ds, name)
    else:
        dataset = _load_from_hub(ds, name)
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


def _load_files(files: list[Path], ds: DatasetConfig, name: str) -> datasets.Dataset:
    for f in files:
        if f.stat().st_size == 0:
            raise ConfigError(f"{name}: data file is empty: {f}")
    builder = BUILDER_BY_DS_TYPE.get(ds.ds_type or "") or BUILDER_BY_SUFFIX.get(files[0].suffix)
    if builder is None:
        raise ConfigError(f"{name}: cannot tell the format of {files[0].name}; set ds_type: "
                          f"({', '.join(BUILDER_BY_DS_TYPE)})")
    try:
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split="train")
    except Exception as exc:  # a parse error deep in pyarrow: keep its message, name the entry
        raise ConfigError(f"{name}: cannot read {builder} data from {files[0]}"
                          f"{' (and others)' if len(files) > 1 else ''}: {exc}") from None


def _load_from_hub(ds: DatasetConfig, name: str) -> datasets.Dataset:
    # datasets retries an unreachable Hub for ~25 s per entry; a compute node without internet should fail at once.
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0") not in ("0", "")
    if not offline and not hub_reachable():
        raise ConfigError(
            f"{name} is not a local file and the Hugging Face Hub is unreachable from this machine; run "
            "`hpcft preprocess` where there is network (it fills dataset_prepared_path), or point path at local files"
        )
    try:
        return datasets.load_dataset(ds.path, name=ds.name, split=ds.split, revision=ds.revision,
                                     data_files=ds.data_files)
    except Exception as exc:
        raise ConfigError(f"{name}: cannot load from the Hugging Face Hub"
                          f"{' (offline mode is set)' if offline else ''}: {exc}") from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub (or $HF_ENDPOINT) opens: compute nodes often have no internet."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() or (
        path / "state.json").is_file()


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or Path(value).suffix in BUILDER_BY_SUFFIX
