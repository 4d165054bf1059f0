"""The datasets of the benchmarks a config runs (do_bench_eval's bench_dataset, lm_eval_tasks) and whether the
nodes will find them: `validate` checks the Hugging Face cache the job uses, on the login node, without importing
`datasets` or lm_eval. Nodes that cannot reach the Hub (HF_HUB_OFFLINE in the profile) need them cached first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hpcft.core.errors import ConfigError
from hpcft.core.features.mlflow_tracking import absolute_tracking_uri, file_store_path, mlflow_enabled

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig

DEFAULT_BENCH_DATASET = "pharaouk/dharma-1/dharma_1_mini.json"  # axolotl's default
# axolotl's MMLU names: the evaluation sets of openaccess-ai-collective/mmlu-evals (split -> file).
MMLU_BENCH_FILES = {
    "mmlu-zs": {"eval": "zero_shot_mmlu_val.json", "test": "zero_shot_mmlu_test.json"},
    "mmlu-fs": {"eval": "five_shot_mmlu_val.json", "test": "five_shot_mmlu_test.json"},
    "mmlu": {"eval": "five_shot_mmlu_val.json", "test": "five_shot_mmlu_test.json"},
}
MMLU_BENCH_REPO = "openaccess-ai-collective/mmlu-evals"

# The Hub dataset of lm-evaluation-harness's most used tasks and groups (its task YAMLs' dataset_path, checked
# against the pinned lm_eval by tests/launcher/test_eval_datasets.py): the login node answers without lm_eval.
LM_EVAL_TASK_DATASETS = {
    "hellaswag": "Rowan/hellaswag",
    "arc_easy": "allenai/ai2_arc",
    "arc_challenge": "allenai/ai2_arc",
    "gsm8k": "openai/gsm8k",
    "winogrande": "allenai/winogrande",
    "piqa": "baber/piqa",
    "boolq": "aps/super_glue",
    "truthfulqa_mc1": "truthfulqa/truthful_qa",
    "truthfulqa_mc2": "truthfulqa/truthful_qa",
    "lambada_openai": "EleutherAI/lambada_openai",
    "openbookqa": "allenai/openbookqa",
    "ifeval": "google/IFEval",
    "mmlu": "cais/mmlu",
    "sciq": "allenai/sciq",
}
_LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class EvalDataset:
    """What one benchmark reads: a Hub dataset (repo), local files, or nothing known (both None)."""

    needed_by: str  # e.g. "lm_eval_tasks: hellaswag"
    repo: str | None = None
    files: tuple[str, ...] = ()


def lm_eval_task_name(task: str) -> tuple[str, int | None]:
    """`arc_easy:25` -> ("arc_easy", 25): axolotl's spelling of a task with its number of few-shot examples."""
    name, sep, shots = task.partition(":")
    if sep and not shots.isdigit():
        raise ValueError(
            f"lm_eval_tasks: '{task}': the part after ':' is the number of few-shot examples, e.g. {name}:5"
        )
    return name.strip(), int(shots) if sep else None


def check_benchmarks(cfg: TrainConfig) -> None:
    """Raise ValueError (one line naming the key and the fix) for benchmark keys that cannot run."""
    if cfg.do_bench_eval:
        if not (cfg.val_set_size or cfg.test_datasets):
            raise ValueError(
                "do_bench_eval runs at each evaluation, which needs evaluation data: set val_set_size (e.g. 0.05) "
                "or test_datasets"
            )
        if cfg.rl or cfg.reward_model or cfg.process_reward_model:
            raise ValueError(
                "do_bench_eval scores a language model's answers; it does not apply to preference or "
                "reward training (remove it)"
            )
        split = cfg.bench_split or "eval"
        if split not in ("eval", "test") or (split == "test" and cfg.bench_dataset not in MMLU_BENCH_FILES):
            raise ValueError(
                f"bench_split: {split}: use eval (every bench_dataset) or test (mmlu-zs, mmlu-fs and mmlu only)"
            )
    if cfg.lm_eval_tasks and (cfg.reward_model or cfg.process_reward_model):
        raise ValueError("lm_eval_tasks evaluates a language model; a reward model has no text to score (remove it)")
    for task in cfg.lm_eval_tasks or []:
        lm_eval_task_name(task)


def bench_source(cfg: TrainConfig) -> EvalDataset:
    """Where do_bench_eval's questions come from (as axolotl reads bench_dataset), or a local JSON file."""
    name = cfg.bench_dataset or DEFAULT_BENCH_DATASET
    split = cfg.bench_split or "eval"
    if name in MMLU_BENCH_FILES:
        return EvalDataset(f"bench_dataset: {name}", MMLU_BENCH_REPO, (MMLU_BENCH_FILES[name][split],))
    if Path(name).is_absolute() or Path(name).suffix and Path(name).is_file():
        return EvalDataset(f"bench_dataset: {name}", None, (name,))
    parts = name.split("/", 2)
    return EvalDataset(f"bench_dataset: {name}", "/".join(parts[:2]), (parts[2],) if len(parts) == 3 else ())


def local_task_datasets(include_path: str | None) -> dict[str, EvalDataset]:
    """Task name -> dataset of the task YAMLs under lm_eval_include_path (their own `dataset_path`)."""
    if not include_path or not Path(include_path).is_dir():
        return {}
    found: dict[str, EvalDataset] = {}
    for path in sorted(Path(include_path).rglob("*.yaml")):
        try:
            # lm_eval's YAMLs use a `!function` tag: read them with a loader that keeps unknown tags as text.
            doc = yaml.load(path.read_text(), Loader=_TaskLoader)
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("task"), str):
            continue
        found[doc["task"]] = _task_dataset(doc, f"lm_eval_tasks: {doc['task']}")
    return found


class _TaskLoader(yaml.SafeLoader):
    pass


_TaskLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _task_dataset(doc: dict, needed_by: str) -> EvalDataset:
    source = doc.get("dataset_path")
    if source in _LOCAL_BUILDERS:
        files = (doc.get("dataset_kwargs") or {}).get("data_files") or ()
        if isinstance(files, str):
            files = (files,)
        elif isinstance(files, dict):
            files = tuple(v for value in files.values() for v in ([value] if isinstance(value, str) else value))
        return EvalDataset(needed_by, None, tuple(files))
    return EvalDataset(needed_by, source if isinstance(source, str) else None)


def needed_eval_datasets(cfg: TrainConfig) -> list[EvalDataset]:
    """Every dataset the config's benchmarks read."""
    out = [bench_source(cfg)] if cfg.do_bench_eval else []
    if cfg.lm_eval_tasks and cfg.lm_eval_post_train is not False:
        local = local_task_datasets(cfg.lm_eval_include_path)
        for task in cfg.lm_eval_tasks:
            name, _ = lm_eval_task_name(task)
            if name in local:
                out.append(local[name])
            else:
                out.append(EvalDataset(f"lm_eval_tasks: {name}", LM_EVAL_TASK_DATASETS.get(name)))
    return out


def dataset_cache_dirs(env: dict[str, str]) -> tuple[list[Path], list[Path]]:
    """(hub caches, datasets caches) the job looks in: its own HF_HOME etc. first, then this shell's."""
    hub, processed = [], []
    for source in (env, os.environ):
        if source.get("HF_HUB_CACHE"):
            hub.append(Path(source["HF_HUB_CACHE"]))
        if source.get("HF_DATASETS_CACHE"):
            processed.append(Path(source["HF_DATASETS_CACHE"]))
        if source.get("HF_HOME"):
            hub.append(Path(source["HF_HOME"]) / "hub")
            processed.append(Path(source["HF_HOME"]) / "datasets")
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return [*hub, default / "hub"], [*processed, default / "datasets"]


def hub_dataset_cached(repo: str, env: dict[str, str]) -> bool:
    """A Hub dataset downloaded (huggingface_hub's `datasets--owner--name`) or prepared (`owner___name`)."""
    hub, processed = dataset_cache_dirs(env)
    if any(any((d / f"datasets--{repo.replace('/', '--')}" / "snapshots").glob("*/*")) for d in hub):
        return True
    return any((d / repo.replace("/", "___")).is_dir() for d in processed)


def nodes_offline(env: dict[str, str]) -> bool:
    return any(str(env.get(name, "")).lower() in _TRUE for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def missing_hub_datasets(cfg: TrainConfig, env: dict[str, str]) -> list[str]:
    """The benchmarks' Hub datasets not in the cache the job uses (what a preprocessing job would download)."""
    repos = [need.repo for need in needed_eval_datasets(cfg) if need.repo]
    return [repo for repo in dict.fromkeys(repos) if not hub_dataset_cached(repo, env)]


def check_eval_datasets(cfg: TrainConfig, env: dict[str, str], where: str) -> list[str]:
    """Warnings for benchmark datasets the nodes may not find; one ConfigError naming all of those they certainly
    cannot find (not in the cache the job uses while the profile keeps the nodes off the Hub)."""
    warnings: list[str] = []
    offline = nodes_offline(env)
    unreachable: list[EvalDataset] = []
    for need in needed_eval_datasets(cfg):
        for file in need.files if need.repo is None else ():
            if not Path(file).is_absolute() or not Path(file).exists():
                raise ConfigError(
                    f"{where}: {need.needed_by}: data file {file} not found (give an absolute path to an existing file)"
                )
        if need.repo is None and not need.files:
            warnings.append(
                f"{where}: {need.needed_by}: hpcft cannot tell which dataset this task reads; make sure it is in the "
                "Hugging Face cache of the nodes" + (" (the profile sets HF_HUB_OFFLINE)" if offline else "")
            )
        elif need.repo and not hub_dataset_cached(need.repo, env):
            if offline:
                unreachable.append(need)
                continue
            warnings.append(
                f"{where}: {need.needed_by}: the dataset {need.repo} is not in the Hugging Face cache yet; the "
                f"preprocessing job downloads it (or `hf download --repo-type dataset {need.repo}` now)"
            )
    if unreachable:
        missing = "; ".join(
            f"{n.needed_by}: the dataset {n.repo} is not in the Hugging Face cache" for n in unreachable
        )
        fetch = ", ".join(f"`hf download --repo-type dataset {r}`" for r in dict.fromkeys(n.repo for n in unreachable))
        raise ConfigError(
            f"{where}: {missing} and the profile keeps the nodes off the Hub (HF_HUB_OFFLINE); download "
            f"{'them' if len(unreachable) > 1 else 'it'} first on a machine that writes that cache ({fetch}), "
            f"or remove {'them' if len(unreachable) > 1 else 'it'}"
        )
    return warnings


def eval_and_tracking_paths(cfg: TrainConfig) -> list[Path]:
    """Local paths the benchmarks and the MLflow file store read or write on the nodes (mounted, checked)."""
    paths = []
    store = file_store_path(cfg.mlflow_tracking_uri) if mlflow_enabled(cfg) else None
    if store is not None and store.is_absolute():
        paths.append(store)
    if cfg.lm_eval_include_path and Path(cfg.lm_eval_include_path).is_absolute():
        paths.append(Path(cfg.lm_eval_include_path))
    if cfg.lm_eval_model and Path(cfg.lm_eval_model).is_absolute():
        paths.append(Path(cfg.lm_eval_model))
    for need in needed_eval_datasets(cfg):
        paths += [Path(f) for f in need.files if need.repo is None and Path(f).is_absolute()]
    return paths


def folders_to_create(cfg: TrainConfig) -> list[Path]:
    """A file store's folder exists before the job starts (a container runtime cannot mount a missing one)."""
    store = file_store_path(cfg.mlflow_tracking_uri) if mlflow_enabled(cfg) else None
    return [store] if store is not None and store.is_absolute() else []


def resolve_eval_paths(data: dict[str, Any], base: Path, where: str) -> None:
    """Make the benchmarks' and the file store's local paths absolute (from the config file's folder), as
    config.resolve_paths does for the other keys; a Hub name stays as it is."""
    if isinstance(data.get("mlflow_tracking_uri"), str):
        data["mlflow_tracking_uri"] = absolute_tracking_uri(data["mlflow_tracking_uri"], base)
    include = data.get("lm_eval_include_path")
    if isinstance(include, str):
        data["lm_eval_include_path"] = str((base / Path(include).expanduser()).resolve())
        if not Path(data["lm_eval_include_path"]).is_dir():
            raise ConfigError(
                f"{where}: key 'lm_eval_include_path': no such folder: {data['lm_eval_include_path']} (relative "
                "paths are taken from the config file's folder)"
            )
    for key in ("lm_eval_model", "bench_dataset"):
        value = data.get(key)
        if isinstance(value, str) and (base / Path(value).expanduser()).exists():
            data[key] = str((base / Path(value).expanduser()).resolve())
