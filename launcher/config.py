"""Load a training config, merge it with a profile and the command line, and validate it into a job.
(Just over 300 lines: loading, merging, path resolution and the whole-job checks are one pass, read top down.)

Order of precedence for job options: profile `launch:` < config `launch:` < command line.
Relative paths in the config are resolved against the config file's folder, so a config means the same job
whichever directory hpcft is started from.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hpcft.core.checks.chat_template_check import MAX_CHAT_TEMPLATE_BYTES
from hpcft.core.checks.dataset_heads import check_dataset_heads
from hpcft.core.checks.resume_checkpoint import resume_checkpoint_problem
from hpcft.core.dataset_cache import BUILDER_BY_DS_TYPE
from hpcft.core.errors import ConfigError
from hpcft.core.features.deepspeed_config import PRESETS as DEEPSPEED_PRESETS
from hpcft.core.features.eval_datasets import check_eval_datasets, resolve_eval_paths
from hpcft.core.features.fp8 import fp8_notes
from hpcft.core.features.fsdp import cpu_translation_note, transformers_fsdp_config
from hpcft.core.features.model_loading import check_job_loading
from hpcft.core.features.multimodal import check_multimodal
from hpcft.core.features.nvfp4 import check_nvfp4_base
from hpcft.core.features.optimizers import muon_without_fsdp
from hpcft.core.features.parallelism import check_parallelism
from hpcft.core.features.peft_extensions import gpu_only_notes, moe_model_problem
from hpcft.core.features.preference_fields import check_preference_rows
from hpcft.core.features.qat import qat_cpu_note
from hpcft.core.features.sparse_finetuning import sparse_notes
from hpcft.core.features.streamed_rows import check_streamed_rows
from hpcft.core.features.training_loop import training_loop_warnings
from hpcft.core.schema import LIGER_KEYS, TrainConfig
from hpcft.core.validation import as_list, check_keys, format_validation_error
from hpcft.core.yaml_config import MAX_CONFIG_BYTES, omegaconf_problem, read_yaml_config, resolve_interpolations
from hpcft.launcher.jobplan import job_env, job_paths, make_plan
from hpcft.launcher.jobs.runs import default_run_dir
from hpcft.launcher.mounts import unique_mounts
from hpcft.launcher.node_paths import check_node_paths
from hpcft.launcher.profiles import Profile, load_profile
from hpcft.launcher.resolve_path import absolute_path, current_folder
from hpcft.launcher.secret_values import refuse_secrets
from hpcft.launcher.sharding import sharding_files

_TOKEN_LIKE = re.compile(r"\b(hf_[A-Za-z0-9]{20,}|[0-9a-f]{40})\b")
_LIST_UNION_KEYS = ("mounts",)
_LIST_CONCAT_KEYS = ("sbatch_args", "srun_args")
_LIST_EXAMPLES = {"mounts": "/capstor/scratch", "sbatch_args": "--exclusive", "srun_args": "--cpu-bind=none"}


@dataclass
class Job:
    """Everything render needs: the validated config, the profile, and where they came from."""

    cfg: TrainConfig
    profile: Profile
    config_path: Path
    config_sha256: str
    overrides: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # deepspeed.json or fsdp.json, built once by check_job (None for a Job made without it).
    sharding: dict[str, str] | None = None


def apply_overrides(
    data: dict[str, Any], overrides: list[str], where: str = "command line", config: str = "config"
) -> dict[str, Any]:
    """Apply `key=value` overrides (dotted keys, `datasets.0.path=...`) with YAML-typed values."""
    if not overrides:
        return data
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        conf = OmegaConf.create(data)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{config}: {omegaconf_problem(exc)}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{where}: override '{item}' must look like key=value (e.g. learning_rate=1e-5)")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            parsed = value
        try:
            OmegaConf.update(conf, key.strip(), parsed, merge=True, force_add=True)
        except (OmegaConfBaseException, TypeError, ValueError, KeyError, IndexError) as exc:
            current = OmegaConf.to_container(conf, resolve=False)
            raise ConfigError(f"{where}: cannot set '{key}': {_override_problem(exc, current, key)}") from None
    return OmegaConf.to_container(conf, resolve=False)


def _override_problem(exc: Exception, data: Any, key: str) -> str:
    """One line: OmegaConf's message is several (full_key, object_type, ...)."""
    holder, name = data, ""
    for part in key.strip().split("."):
        if isinstance(holder, list):
            if not part.isdigit():
                return f"'{name}' is a list: name an entry by its number, e.g. {name}.0"
            if int(part) >= len(holder):
                entries = f"{len(holder)} entr{'y' if len(holder) == 1 else 'ies'}"
                return f"'{name}' has {entries}; add the entry in the config file, then set it"
            holder = holder[int(part)]
        elif isinstance(holder, dict) and part in holder:
            holder = holder[part]
        else:
            break
        name = f"{name}.{part}" if name else part
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def merge_launch(
    profile_launch: dict[str, Any], config_launch: dict[str, Any], cli_launch: dict[str, Any]
) -> dict[str, Any]:
    """Merge job options, later layers winning; mounts are united, extra args and env accumulate."""
    merged: dict[str, Any] = {}
    for layer in (profile_launch or {}, config_launch or {}, cli_launch or {}):
        for key, value in layer.items():
            if value is None:
                continue
            if key in (*_LIST_UNION_KEYS, *_LIST_CONCAT_KEYS) and not isinstance(value, (list, str)):
                raise ConfigError(f"key 'launch.{key}' must be a list, e.g. {key}: [{_LIST_EXAMPLES[key]}]")
            if key == "env" and not isinstance(value, dict):
                raise ConfigError(
                    "key 'launch.env' must be a mapping of variable names to values, e.g. env: {NCCL_DEBUG: INFO}"
                )
            if key in _LIST_UNION_KEYS:
                merged[key] = unique_mounts(list(merged.get(key, [])) + as_list(value, f"launch.{key}"))
            elif key in _LIST_CONCAT_KEYS:
                merged[key] = list(merged.get(key, [])) + as_list(value, f"launch.{key}")
            elif key == "env":
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged


def _absolute_image(launch: dict[str, Any], base: Path) -> dict[str, Any]:
    image = launch.get("image")
    if (
        isinstance(image, str)
        and "://" not in image
        and "#" not in image
        and (_looks_local(image) or image.endswith((".sqsh", ".sif")))
    ):
        return {**launch, "image": _to_abs(image, base)}
    return launch


def _looks_local(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or value in (".", "..")


def _to_abs(value: str, base: Path, what: str = "path") -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else absolute_path(path, what, base))


# Linux's limits (PATH_MAX, NAME_MAX): a longer value makes every file system call fail with an OSError.
_MAX_PATH_BYTES = 4095
_MAX_NAME_BYTES = 255
# Keys that name a file or folder: an empty value would silently mean the config's own folder.
_PATH_KEYS = (
    "base_model",
    "base_model_config",
    "tokenizer_config",
    "output_dir",
    "dataset_prepared_path",
    "lora_model_dir",
    "resume_from_checkpoint",
    "deepspeed",
    "chat_template_jinja",
    "lm_eval_include_path",
    "bench_dataset",
    "lm_eval_model",
)


# axolotl's examples name the DeepSpeed files of its repository (deepspeed_configs/zero3_bf16.json, ...): without
# such a file next to the config, the hpcft preset with the same ZeRO stage and offload runs instead.
_AXOLOTL_DEEPSPEED = re.compile(
    r"(?:^|/)deepspeed_configs/(zero[123])(_bf16)?(_cpuoffload_(?:all|params))?"
    r"(?:_torch_compile)?\.json$"
)
AXOLOTL_DEEPSPEED_FILES = {
    "zero1": "ZeRO-1",
    "zero2": "ZeRO-2",
    "zero3": "ZeRO-3",
    "zero3_offload": "ZeRO-3 with parameters and optimizer state offloaded to CPU",
}


def axolotl_deepspeed_preset(path: str) -> str | None:
    """The hpcft preset for one of axolotl's deepspeed_configs/*.json files, or None."""
    match = _AXOLOTL_DEEPSPEED.search(path)
    if not match:
        return None
    stage, _, offload = match.groups()
    return "zero3_offload" if stage == "zero3" and offload else stage


def _unusable_path(value: str) -> str | None:
    """Why a string cannot be a path on the login node (a NUL byte, or longer than Linux allows), or None."""
    if "\x00" in value:
        return "contains a NUL byte"
    if len(value.encode(errors="replace")) > _MAX_PATH_BYTES:
        return f"is longer than the {_MAX_PATH_BYTES + 1} bytes a path may have"
    if any(len(part.encode(errors="replace")) > _MAX_NAME_BYTES for part in value.split("/")):
        return f"has a folder or file name longer than {_MAX_NAME_BYTES} bytes"
    return None


def _named_path_values(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every value read as a path, with the key a message names: the top-level keys, launch's, each dataset's."""
    named: list[tuple[str, Any]] = [(key, data.get(key)) for key in _PATH_KEYS]
    launch = data.get("launch") or {}
    named += [(f"launch.{key}", launch.get(key)) for key in ("runs_dir", "job_name", "image")]
    for list_key in ("datasets", "test_datasets", "pretraining_dataset"):
        entries = data.get(list_key)
        if isinstance(entries, str):
            named.append((list_key, entries))
            continue
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict):
                files = entry.get("data_files")
                named.append((f"{list_key}[{i}].path", entry.get("path")))
                named.append((f"{list_key}[{i}].chat_template_jinja", entry.get("chat_template_jinja")))
                named += [(f"{list_key}[{i}].data_files", f) for f in (files if isinstance(files, list) else [files])]
    return named


def _refuse_blank_paths(data: dict[str, Any], where: str) -> None:
    # axolotl tests these for truth, so a blank value means unset there; users' configs write them that way.
    for key in ("resume_from_checkpoint", "lora_model_dir", "dataset_prepared_path"):
        if isinstance(data.get(key), str) and not data[key].strip():
            del data[key]
    # The top-level path keys and each dataset's path (launch's and data_files have their own checks).
    blank = [
        key
        for key, value in _named_path_values(data)
        if (key in _PATH_KEYS or key.endswith("].path")) and isinstance(value, str) and not value.strip()
    ]
    if blank:
        raise ConfigError(
            f"{where}: key '{blank[0]}' is empty; give a file, a folder or a Hub name, or remove the key "
            "(an empty path would mean the config's own folder)"
        )


def _check_path_values(data: dict[str, Any], where: str) -> None:
    """Refuse, before any file system call, the values that are read as paths and cannot be one."""
    for key, value in _named_path_values(data):
        if not isinstance(value, str) or (key.endswith("chat_template_jinja") and ("\n" in value or "{" in value)):
            continue  # chat_template_jinja holding the template's text rather than naming a file
        problem = _unusable_path(value)
        if problem:
            raise ConfigError(f"{where}: key '{key}': the value {problem}; give a real path or name")


def resolve_paths(data: dict[str, Any], base: Path, where: str, warnings: list[str] | None = None) -> None:
    """Make local paths absolute (relative to the config's folder) and check inputs exist."""
    _refuse_blank_paths(data, where)
    _check_path_values(data, where)
    for key in ("output_dir", "dataset_prepared_path", "lora_model_dir", "resume_from_checkpoint"):
        if isinstance(data.get(key), str):
            data[key] = _to_abs(data[key], base, f"{where}: key '{key}'")
    for key in ("output_dir", "dataset_prepared_path"):
        if isinstance(data.get(key), str):
            _check_writable(data[key], key, where)
    for key in ("resume_from_checkpoint", "lora_model_dir"):
        if isinstance(data.get(key), str) and not Path(data[key]).is_dir():
            raise ConfigError(
                f"{where}: key '{key}': no such folder: {data[key]}; point it at an existing "
                "checkpoint folder, or remove it"
            )
    if isinstance(data.get("resume_from_checkpoint"), str):
        problem = resume_checkpoint_problem(Path(data["resume_from_checkpoint"]))
        if problem:
            raise ConfigError(f"{where}: key 'resume_from_checkpoint': {problem}")
    for key in ("base_model", "base_model_config", "tokenizer_config"):
        value = data.get(key)
        if isinstance(value, str) and (_looks_local(value) or (base / value).exists()):
            data[key] = _to_abs(value, base, f"{where}: key '{key}'")
            if not Path(data[key]).exists():
                raise ConfigError(
                    f"{where}: key '{key}': model folder not found: {data[key]} "
                    "(relative paths are taken from the config file's folder)"
                )
    deepspeed = data.get("deepspeed")
    if isinstance(deepspeed, str) and deepspeed not in DEEPSPEED_PRESETS:
        preset = axolotl_deepspeed_preset(deepspeed)
        if preset and not Path(_to_abs(deepspeed, base)).is_file():
            data["deepspeed"] = preset
            if warnings is not None:
                warnings.append(
                    f"{where}: deepspeed: {deepspeed} (a file of axolotl's repository) is not next to the "
                    f"config; using hpcft's preset {preset} ({AXOLOTL_DEEPSPEED_FILES[preset]})"
                )
            deepspeed = preset
    if isinstance(deepspeed, str) and deepspeed not in DEEPSPEED_PRESETS:
        data["deepspeed"] = _to_abs(deepspeed, base)
        if not Path(data["deepspeed"]).is_file():
            raise ConfigError(
                f"{where}: key 'deepspeed': file not found: {data['deepspeed']}; give a JSON file "
                f"or one of the presets {', '.join(DEEPSPEED_PRESETS)}"
            )
    _inline_chat_template_file(data, base, where, "chat_template_jinja")
    if isinstance(data.get("pretraining_dataset"), str):  # one name or path: the entry `path:` it stands for
        data["pretraining_dataset"] = [{"path": data["pretraining_dataset"]}]
    for list_key in ("datasets", "test_datasets", "pretraining_dataset"):
        for i, entry in enumerate(data.get(list_key) or []):
            if not isinstance(entry, dict):
                continue
            _resolve_dataset_paths(entry, base, where, f"{list_key}[{i}]")
            _inline_chat_template_file(entry, base, where, f"{list_key}[{i}].chat_template_jinja")


def _inline_chat_template_file(holder: dict[str, Any], base: Path, where: str, name: str) -> None:
    """chat_template_jinja may name a template file (as in axolotl): its text goes into train.yaml, so the job
    needs no access to the file. A one-line value without any Jinja tag can only be meant as a file."""
    value = holder.get("chat_template_jinja")
    if not isinstance(value, str) or "\n" in value or "{" in value:
        return
    file = Path(_to_abs(value, base))
    if not file.is_file():
        raise ConfigError(
            f"{where}: key '{name}': template file not found: {file}; give the template text or a "
            "Jinja file (relative paths are taken from the config file's folder)"
        )
    size = file.stat().st_size
    if size > MAX_CHAT_TEMPLATE_BYTES:
        raise ConfigError(
            f"{where}: key '{name}': {file} is {size / 2**20:.1f} MiB, too large for a chat template (at most "
            f"{MAX_CHAT_TEMPLATE_BYTES // 2**20} MiB: it is copied into train.yaml); is this the right file?"
        )
    try:
        holder["chat_template_jinja"] = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{where}: key '{name}': cannot read the template file {file} ({why})") from None


def _check_writable(path: str, key: str, where: str) -> None:
    """The job will create this folder: its nearest existing parent must be writable by us."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        raise ConfigError(
            f"{where}: key '{key}': {path} cannot be created ({existing} is not a writable folder); "
            "choose a folder you can write, e.g. on $SCRATCH"
        )


def _resolve_dataset_paths(entry: dict[str, Any], base: Path, where: str, name: str) -> None:
    path = entry.get("path")
    if isinstance(path, str) and (
        _looks_local(path)
        or (base / path).exists()
        or Path(path).suffix in (".jsonl", ".json", ".parquet", ".csv", ".txt", ".arrow")
    ):
        entry["path"] = _to_abs(path, base, f"{where}: key '{name}.path'")
        if not Path(entry["path"]).exists():
            raise ConfigError(
                f"{where}: key '{name}.path': dataset file not found: {entry['path']} "
                "(relative paths are taken from the config file's folder)"
            )
        if Path(entry["path"]).is_file() and Path(entry["path"]).stat().st_size == 0:
            raise ConfigError(f"{where}: key '{name}.path': dataset file is empty: {entry['path']}")
        _check_readable(Path(entry["path"]), f"{where}: key '{name}.path'")
    files = entry.get("data_files")
    if files is not None and not (
        isinstance(files, str) or (isinstance(files, list) and all(isinstance(f, str) for f in files))
    ):
        raise ConfigError(f"{where}: key '{name}.data_files' must be a file name or a list of file names")
    if files is None:
        return
    listed = [files] if isinstance(files, str) else list(files)
    folder = Path(entry["path"]) if isinstance(path, str) and Path(entry["path"]).is_dir() else None
    if folder is not None:
        # Patterns inside the dataset folder, as datasets.load_dataset(folder, data_files=...) reads them.
        for pattern in listed:
            if not any(f.is_file() for f in folder.glob(pattern)):
                raise ConfigError(f"{where}: key '{name}.data_files': no file in {folder} matches '{pattern}'")
        return
    if isinstance(path, str) and path not in BUILDER_BY_DS_TYPE and not _is_url(path):
        # A Hub dataset: data_files name files inside its repository (axolotl's examples do this), checked where the
        # Hub is read (hpcft preprocess, or the job).
        return
    resolved = []
    for file in listed:
        if _is_url(str(file)):
            resolved.append(str(file))
            continue
        full = _to_abs(str(file), base)
        if not Path(full).exists():
            raise ConfigError(
                f"{where}: key '{name}.data_files': file not found: {full} (relative paths are taken from the "
                "config file's folder)"
            )
        resolved.append(full)
    entry["data_files"] = resolved[0] if isinstance(files, str) else resolved


def _check_readable(path: Path, what: str) -> None:
    """A dataset file we cannot open would pass here and fail the render (its hash) or, worse, the job."""
    if not path.is_file():
        return
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path} ({exc.strerror or exc}); check its permissions") from None


def _is_url(value: str) -> bool:
    return "://" in value


def token_like_values(data: Any, key: str = "") -> list[str]:
    """Keys whose value looks like an access token (they should come from the environment instead)."""
    found: list[str] = []
    if isinstance(data, dict):
        for k, v in data.items():
            found += token_like_values(v, f"{key}.{k}" if key else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found += token_like_values(v, f"{key}[{i}]")
    elif isinstance(data, str) and _TOKEN_LIKE.search(data):
        found.append(key)
    return found


def load_job(
    config_path: str | Path,
    profile_name: str,
    overrides: list[str] | None = None,
    cli_launch: dict[str, Any] | None = None,
    profile: Profile | None = None,
    strict: bool = False,
) -> Job:
    """The whole front half of hpcft: read, merge, interpolate, check keys and paths, validate.

    profile: the profile already loaded (a sweep loads it once for all its points). strict: keys that have no
    effect are errors (`--strict`; also `launch.strict_keys: true` in the config, the profile or --set)."""
    path = absolute_path(config_path, "config")
    where = str(config_path)
    profile = profile or load_profile(profile_name)
    raw = read_yaml_config(path)
    raw = apply_overrides(raw, overrides or [], config=where)
    data = resolve_interpolations(raw, where)
    # Before anything else reads the values: a secret in the config, whatever route brought it there, is refused.
    refuse_secrets(
        [
            (data, where),
            ({"launch": cli_launch or {}}, "command line"),
            (profile.model_dump(mode="json"), f"profile '{profile.name}'"),
        ],
        profile.secret_env,
    )
    config_strict = data.get("launch", {}).get("strict_keys") if isinstance(data.get("launch"), dict) else None
    strict = strict or bool(profile.launch.get("strict_keys") if config_strict is None else config_strict)
    try:
        warnings = check_keys(data, where, strict=strict)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    config_launch = data.pop("launch", None) or {}
    if not isinstance(config_launch, dict):
        raise ConfigError(f"{where}: key 'launch' must be a mapping of job options (nodes, time, ...)")
    # A relative image path means: from the config's folder when the config names it, from the current folder
    # when the command line does.
    config_launch = _absolute_image(config_launch, path.parent)
    cli_launch = _absolute_image(cli_launch or {}, current_folder())
    data["launch"] = merge_launch(profile.launch, config_launch, cli_launch)
    # Decided here, once: the job name names the run folder, which the plan below mounts.
    data["launch"].setdefault("job_name", path.stem)
    # The default output_dir is relative too: like every relative path, it is taken from the config's folder.
    data.setdefault("output_dir", TrainConfig.model_fields["output_dir"].default)
    resolve_paths(data, path.parent, where, warnings)
    resolve_eval_paths(data, path.parent, where)
    for key in token_like_values(data):
        warnings.append(
            f"{where}: key '{key}' looks like an access token; pass secrets through the environment "
            "(e.g. export HF_TOKEN) instead of the config"
        )
    warnings += _check_secret_file(profile)
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None
    cfg, muon_note = muon_without_fsdp(cfg)
    if muon_note:
        warnings.append(f"{where}: {muon_note}")
    nodes_given = any((layer or {}).get("nodes") is not None for layer in (profile.launch, config_launch, cli_launch))
    cfg, parallel_warnings = check_parallelism(cfg, nodes_given, where)
    warnings += parallel_warnings
    if cfg.uses_fsdp:
        try:
            transformers_fsdp_config(cfg)  # the FSDP settings must make sense whichever node runs them
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    liger = [key for key in LIGER_KEYS if getattr(cfg, key)]
    if liger and cfg.launch.gpus_per_node == 0:
        warnings.append(
            f"{where}: {', '.join(liger)}: Liger kernels need CUDA GPUs; this profile has none, so the job "
            "trains with the model's own layers (same results, more memory)"
        )
    warnings += [f"{where}: {note}" for note in gpu_only_notes(cfg)]
    problem = moe_model_problem(cfg)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    try:
        warnings += [f"{where}: {note}" for note in check_nvfp4_base(cfg)]  # NVFP4 (ModelOpt) base_model folder
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for note in (qat_cpu_note(cfg), *fp8_notes(cfg, cfg.launch.gpus_per_node), *sparse_notes(cfg)):
        if note:
            warnings.append(f"{where}: {note}")
    if (
        cfg.hub_model_id
        and not profile.secret_file
        and not any(os.environ.get(name) for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"))
    ):
        warnings.append(
            f"{where}: hub_model_id: no HF_TOKEN in your environment, so the push to {cfg.hub_model_id} "
            "at the end of the job will fail (the trained model stays in output_dir); export HF_TOKEN "
            "before submitting"
        )
    if cfg.uses_fsdp and cfg.launch.gpus_per_node == 0:
        warnings.append(f"{where}: {cpu_translation_note(cfg)}")
    warnings += check_job_loading(cfg, where)
    warnings += training_loop_warnings(cfg, where, secret_file=bool(profile.secret_file))
    check_preference_rows(cfg, where)  # a preference row missing a field fails here, not after the queue wait
    check_streamed_rows(cfg, where)  # a stream is read only on the nodes: its first rows are checked here
    check_dataset_heads(cfg, where)  # every local file: what it is, its format, and its first MiB parses
    warnings += check_multimodal(cfg, where)  # processor_type: family, dataset type, first rows and images
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    job = Job(
        cfg=cfg,
        profile=profile,
        config_path=path,
        config_sha256=sha,
        overrides=list(overrides or []),
        warnings=warnings,
    )
    check_job(job)
    return job


def check_job(job: Job) -> None:
    """The checks that need the whole job: its plan (mounts, image), the DeepSpeed file against the batch sizes,
    and whether the compute nodes can see its paths. validate, render and submit all run them here."""
    make_plan(job, default_run_dir(job))  # the run folder may still change (-o): render checks the real one
    job.sharding = sharding_files(job.cfg, str(job.config_path))
    job.warnings.extend(check_node_paths(job, job_paths(job)))
    _check_train_yaml_size(job)
    job.warnings.extend(check_eval_datasets(job.cfg, job_env(job), str(job.config_path)))


def _check_train_yaml_size(job: Job) -> None:
    """Chat template files are copied into train.yaml, which the trainer reads under MAX_CONFIG_BYTES: several large
    ones must be refused here, not by the trainer after the queue wait. Only then is the text dumped to measure it."""
    cfg = job.cfg
    entries = [*cfg.datasets, *(cfg.test_datasets or []), *(cfg.pretraining_dataset or [])]
    templates = [cfg.chat_template_jinja, *(getattr(ds, "chat_template_jinja", None) for ds in entries)]
    if sum(len(text) for text in templates if text) <= MAX_CHAT_TEMPLATE_BYTES:
        return
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    size = len(yaml.dump(cfg.training_dict(), Dumper=dumper, allow_unicode=True).encode())
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{job.config_path}: the chat templates (chat_template_jinja) make train.yaml {size / 2**20:.1f} MiB, over "
            f"the {MAX_CONFIG_BYTES // 2**20} MiB the trainer reads; use smaller templates or name one template "
            "for all datasets (chat_template_jinja at the top level)"
        )


def _check_secret_file(profile: Profile) -> list[str]:
    """The profile's secret file is read on the node; it must be readable by its owner only."""
    if not profile.secret_file:
        return []
    path = Path(profile.secret_file).expanduser()
    if not path.is_file():
        return [f"profile '{profile.name}': secret_file {path} does not exist; the job will run without it"]
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"profile '{profile.name}': secret_file {path} is readable by others; run `chmod 600 {path}`")
    return []
