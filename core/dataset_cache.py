"""The prepared-dataset cache's content key, computed without torch or `datasets`: the login node decides from it
whether `hpcft submit` needs a preprocessing job, and the trainer stores and finds its cache under the same key.

The key hashes the config fields that change the prepared rows, the CONTENT of every local input file (so a moved
file keeps its key and an edited one gets a new one) and the tokenizer's files. Where the tokenizer's files cannot
be found on this machine (a Hub model not in the local Hugging Face cache) the key is unknown (None).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hpcft.core.chat_templates import CHAT_TEMPLATE_NAMES, FALLBACK_PREFIX, chat_template_text
from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig, TrainConfig

FORMAT_VERSION = 3  # bump when the trainer's formats/packing change what they produce: old caches become stale
CACHE_FIELDS = (
    "rl",
    "eot_tokens",
    "min_sample_len",
    "sequence_len",
    "sample_packing",
    "eval_sample_packing",
    "train_on_inputs",
    "chat_template",
    "chat_template_jinja",
    "shuffle_merged_datasets",
    "val_set_size",
    "seed",
    "special_tokens",
    "tokens",
    "tokenizer_type",
    "tokenizer_use_fast",
    "tokenizer_use_mistral_common",
    "model_revision",
    "dataset_exact_deduplication",
    "curriculum_sampling",
    "sample_packing_sequentially",
    "max_packed_sequence_len",
)
# With processor_type, what decides the pixel values and image tokens too.
MULTIMODAL_CACHE_FIELDS = ("processor_type", "processor_kwargs", "image_size", "image_resize_algorithm")
# What decides token ids and the chat template (as transformers saves a tokenizer).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tekken.json",  # mistral-common (tokenizer_use_mistral_common)
    "preprocessor_config.json",  # processor_type: the image processor decides the pixel values
    "processor_config.json",
)

# File suffix -> the `datasets` builder that reads it (ds_type overrides).
BUILDER_BY_SUFFIX = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".txt": "text",
    ".arrow": "arrow",
}
BUILDER_BY_DS_TYPE = {
    "json": "json",
    "jsonl": "json",
    "parquet": "parquet",
    "csv": "csv",
    "text": "text",
    "arrow": "arrow",
}


def entry_name(where: str, index: int, ds: DatasetConfig) -> str:
    """How messages name a dataset entry: `datasets[1] ('data/chat.jsonl')`."""
    return f"{where}[{index}] ('{ds.path}')"


def is_saved_dataset(path: Path) -> bool:
    return (
        (path / "dataset_info.json").is_file()
        or (path / "dataset_dict.json").is_file()
        or (path / "state.json").is_file()
    )


def looks_like_path(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or Path(value).suffix in BUILDER_BY_SUFFIX


def local_files(ds: DatasetConfig, where: str = "datasets", index: int = 0) -> list[Path]:
    """The local data files an entry reads (sorted), [] for a Hub name."""
    path = Path(ds.path).expanduser()
    name = entry_name(where, index, ds)
    if path.is_file():
        return [path]
    if path.is_dir():
        if is_saved_dataset(path):
            return sorted(p for p in path.rglob("*") if p.is_file())
        patterns = [ds.data_files] if isinstance(ds.data_files, str) else (ds.data_files or [])
        if patterns:
            files = sorted({f for pattern in patterns for f in path.glob(pattern) if f.is_file()})
        else:
            files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix in BUILDER_BY_SUFFIX)
        if not files:
            raise ConfigError(
                f"{name}: the folder has no data files"
                + (f" matching {patterns}" if patterns else f" ({', '.join(BUILDER_BY_SUFFIX)})")
            )
        return files
    if ds.path in BUILDER_BY_DS_TYPE and ds.data_files:  # axolotl style: path: json, data_files: [...]
        files = [Path(f).expanduser() for f in ([ds.data_files] if isinstance(ds.data_files, str) else ds.data_files)]
        for f in files:
            if not f.is_file():
                raise ConfigError(f"{name}: data file not found: {f}")
        return files
    if looks_like_path(ds.path):
        raise ConfigError(f"{name}: file or folder not found: {path}")
    return []


def prepared_root(cfg: TrainConfig) -> Path:
    """Where prepared datasets live: dataset_prepared_path, else <output_dir>/last_run_prepared (as axolotl)."""
    return Path(cfg.dataset_prepared_path or Path(cfg.output_dir) / "last_run_prepared").expanduser()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`, held for the block (released by the kernel if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def memoised_sha256(path: Path, memo_dir: Path) -> str:
    """sha256 of a file, remembered in memo_dir by (size, mtime_ns): every write changes mtime, so an edited file is
    hashed again. A file modified in the last 2 s is not remembered (a second write within the filesystem's mtime
    granularity could otherwise keep the same mtime: git's "racy" rule)."""
    stat = path.stat()
    memo = memo_dir / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32] + ".json")
    if memo.is_file():
        seen = json.loads(memo.read_text())
        if (seen["size"], seen["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return seen["sha256"]
    digest = file_sha256(path)
    if time.time() - stat.st_mtime > 2:
        memo_dir.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".tmp-{socket.gethostname()}-{os.getpid()}")
        tmp.write_text(json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}))
        os.replace(tmp, memo)
    return digest


def tokenizer_dir(cfg: TrainConfig) -> Path | None:
    """The folder holding the tokenizer's files: a local tokenizer_config/base_model folder, else the snapshot of
    that Hub model in the local Hugging Face cache, else None."""
    source = cfg.tokenizer_config or cfg.base_model
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    hub = Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"
    )
    repo = hub / ("models--" + source.replace("/", "--"))
    revision = cfg.model_revision or "main"
    ref = repo / "refs" / revision
    snapshot = repo / "snapshots" / (ref.read_text().strip() if ref.is_file() else revision)
    return snapshot if snapshot.is_dir() else None


def tokenizer_fingerprint(cfg: TrainConfig) -> str | None:
    """A hash of the tokenizer's files (None when they are not on this machine)."""
    folder = tokenizer_dir(cfg)
    if folder is None:
        return None
    present = [(name, file_sha256(folder / name)) for name in TOKENIZER_FILES if (folder / name).is_file()]
    if not present:
        return None
    return hashlib.sha256(json.dumps(present).encode()).hexdigest()


def named_templates(cfg: TrainConfig) -> dict[str, str]:
    """The text of every shipped chat template the config names: editing a template makes old caches stale."""
    choices = [cfg.chat_template] + [ds.chat_template for ds in [*cfg.datasets, *(cfg.test_datasets or [])]]
    names = {choice.removeprefix(FALLBACK_PREFIX) for choice in choices if choice}
    return {name: chat_template_text(name) for name in sorted(names) if name in CHAT_TEMPLATE_NAMES}


def reference_fingerprint(cfg: TrainConfig) -> list[object]:
    """What identifies the reference model whose log-probs TRL caches next to the prepared data
    (precompute_ref_log_probs): its weight files' paths, sizes and modification times, or its Hub name and revision.
    TRL's own key hashes the loaded weights, which under ZeRO-3 are empty partitions on every rank: without this,
    two models of one architecture would share the cached log-probs."""
    folder = Path(cfg.base_model)
    if not folder.is_dir():
        return [cfg.base_model, cfg.model_revision]
    return [
        [str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns]
        for f in sorted(folder.iterdir())
        if f.suffix in (".safetensors", ".bin", ".pt")
    ]


def cache_key(cfg: TrainConfig) -> str | None:
    """The prepared-cache key of a config, or None when this machine cannot compute it (tokenizer not here)."""
    tokenizer = tokenizer_fingerprint(cfg)
    if tokenizer is None:
        return None
    entries = []
    root = prepared_root(cfg)
    # Ranks take turns: the first hashes the files, the others find its memos instead of re-reading the data.
    with file_lock(root / ".hashes.lock"):
        for where, group in (("datasets", cfg.datasets), ("test_datasets", cfg.test_datasets or [])):
            for index, ds in enumerate(group):
                files = local_files(ds, where, index)
                # Local data is keyed by content alone, so a cache built on a login node is found again inside a
                # container that mounts the same files elsewhere; Hub data by its name (its content is unknown).
                config = ds.model_dump(mode="json", exclude={"path", "data_files"} if files else set())
                hashes = [memoised_sha256(f, root / ".hashes") for f in files]
                entries.append({"where": where, "config": config, "files": hashes})
    payload = {
        "version": FORMAT_VERSION,
        "datasets": entries,
        "tokenizer": tokenizer,
        "templates": named_templates(cfg),
        **{name: getattr(cfg, name) for name in CACHE_FIELDS},
    }
    if cfg.rl and cfg.precompute_ref_log_probs:
        payload["reference"] = reference_fingerprint(cfg)
    if cfg.processor_type:  # only then: text configs keep their keys
        payload["multimodal"] = [getattr(cfg, name) for name in MULTIMODAL_CACHE_FIELDS]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def prepared_dir(cfg: TrainConfig) -> Path | None:
    """Where this config's prepared dataset is (or will be), None when the key cannot be computed here."""
    key = cache_key(cfg)
    return prepared_root(cfg) / key if key else None


def is_prepared(cfg: TrainConfig) -> bool:
    """Whether the prepared dataset for this config's content is in the cache (False when it cannot be told)."""
    found = prepared_dir(cfg)
    return found is not None and found.is_dir()
