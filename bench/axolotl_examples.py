"""Compatibility matrix: every YAML under an axolotl checkout's examples/ through `hpcft validate --profile local`,
then a stratified sample trained 2 steps on CPU.

Each config is validated as a user would (from a copy of the examples folder, so relative output folders are
writable) and lands in one column: accepted, refused by name (an axolotl option hpcft does not support yet, the
key named), unknown key, another one-line error (a missing local file, a value out of range), or a traceback
(a bug). For the training sample (at least one config per model family, adapter kind and dataset type among the
accepted ones) base_model is swapped for a tiny random model of the same architecture and every dataset for a
small local file of the same type; the trainer then runs 2 steps in one process.

Run: python bench/axolotl_examples.py /path/to/axolotl [--commit SHA] [--no-train] [--limit-train N]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import record, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MULTIMODAL_KEYS = ("processor_type", "processor_kwargs", "image_size", "image_resize_algorithm", "freeze_mm_modules")
_REFUSED = re.compile(r"'([^']+)' is an axolotl (?:option|chat template) hpcft does not (?:support|ship) yet")
_UNKNOWN = re.compile(r"unknown key '([^']+)'")


@dataclass
class Outcome:
    """One example config: what kind of config it is and what `hpcft validate` said."""

    path: str
    kind: str  # text | rl | multimodal | not a training config | unreadable
    result: str  # accepted | refused | unknown key | other error | traceback
    detail: str = ""
    warnings: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def config_kind(raw: Any) -> str:
    if not isinstance(raw, dict):
        return "unreadable"
    if "base_model" not in raw and "datasets" not in raw:
        return "not a training config"
    if raw.get("rl"):
        return "rl"
    if any(raw.get(key) for key in MULTIMODAL_KEYS):
        return "multimodal"
    return "text"


def validate_one(path: Path, shown: str) -> Outcome:
    """Validate in-process (as `hpcft validate --profile local` does); a traceback is caught and counted."""
    from hpcft.core.errors import ConfigError
    from hpcft.launcher.config import load_job

    try:
        raw = yaml.safe_load(path.read_text())
    except Exception:  # noqa: BLE001 - unreadable examples are counted, hpcft's own reading is what is tested
        raw = None
    kind = config_kind(raw)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            job = load_job(path, "local")
    except ConfigError as exc:
        message = str(exc).replace(str(path), shown).replace(str(path.parents[len(Path(shown).parts) - 1]), "")
        if match := _REFUSED.search(message):
            return Outcome(shown, kind, "refused", match.group(1), raw=raw or {})
        if match := _UNKNOWN.search(message):
            return Outcome(shown, kind, "unknown key", match.group(1), raw=raw or {})
        return Outcome(shown, kind, "other error", message.split(": ", 1)[-1], raw=raw or {})
    except Exception:  # noqa: BLE001 - a traceback is exactly what this benchmark looks for
        return Outcome(shown, kind, "traceback", traceback.format_exc().strip().splitlines()[-1], raw=raw or {})
    return Outcome(shown, kind, "accepted", warnings=len(job.warnings), raw=raw or {})


def validate_all(examples: Path, work: Path) -> list[Outcome]:
    copy = work / "examples"
    shutil.copytree(examples, copy, symlinks=True)
    paths = sorted(p for p in copy.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return [validate_one(p, str(p.relative_to(work))) for p in paths]


# --- the 2-step training sample -------------------------------------------------------------------------------

# Model families transformers can build a tiny random model for from a config (no Hub), keyed by how the
# family shows in base_model (first match wins; None: a family the sample skips).
FAMILIES: list[tuple[re.Pattern[str], str | None]] = [
    # Hybrid, MoE or multimodal architectures whose base_model name alone does not pin the tiny build.
    (re.compile(r"qwen3[._-]?5|qwen3-?next|gemma-?3n|llama-?4|granite-?4", re.I), None),
    (re.compile(r"glm-?4\.[56]", re.I), "glm4_moe"),
    (re.compile(r"qwen3-\d+b-a\d+b", re.I), "qwen3_moe"),
    (re.compile(r"qwen3", re.I), "qwen3"),
    (re.compile(r"qwen", re.I), "qwen2"),
    (re.compile(r"gemma-?3", re.I), "gemma3_text"),
    (re.compile(r"gemma-?2", re.I), "gemma2"),
    (re.compile(r"gemma", re.I), "gemma"),
    (re.compile(r"phi-?3|phi-?4", re.I), "phi3"),
    (re.compile(r"mixtral", re.I), "mixtral"),
    (re.compile(r"mistral|ministral|magistral|devstral", re.I), "mistral"),
    (re.compile(r"apertus", re.I), "apertus"),
    (re.compile(r"arcee", re.I), "arcee"),
    (re.compile(r"olmo-?3", re.I), "olmo3"),
    (re.compile(r"smollm-?3", re.I), "smollm3"),
    (re.compile(r"granite", re.I), "granite"),
    (re.compile(r"llama|tinyllama|smollm", re.I), "llama"),
]


# Vision language families the sample swaps for a tiny model of trainer/tiny_vlm.py (SmolVLM for Idefics3, the
# architecture it extends), with images of coloured shapes as data.
VISION_FAMILIES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"qwen2[._]?5-?vl", re.I), "qwen2_5_vl", "make_tiny_qwen25_vl"),
    (re.compile(r"qwen2-?vl", re.I), "qwen2_vl", "make_tiny_qwen2_vl"),
    (re.compile(r"llava", re.I), "llava", "make_tiny_llava"),
    (re.compile(r"gemma-?3-(?!n)", re.I), "gemma3", "make_tiny_gemma3"),
    (re.compile(r"smolvlm", re.I), "idefics3", "make_tiny_idefics3"),
]


def vision_family(base_model: str) -> tuple[str, str] | None:
    """(family, tiny builder) of a vision language model's base_model, None for one the sample skips."""
    return next(((family, builder) for p, family, builder in VISION_FAMILIES if p.search(base_model)), None)


def vision_sample(accepted: list[Outcome]) -> list[Outcome]:
    """The first accepted multimodal config of each vision family."""
    chosen: dict[str, Outcome] = {}
    for outcome in accepted:
        found = vision_family(str(outcome.raw.get("base_model", "")))
        if found and found[0] not in chosen:
            chosen[found[0]] = outcome
    return list(chosen.values())


def multimodal_dataset(entry: dict[str, Any], out: Path) -> dict[str, Any]:
    """16 rows asking the colour of a shape drawn in a PNG next to the data file."""
    from hpcft.trainer.tiny_vlm import COLOURS, draw_shape

    folder = out / f"images-{len(list(out.glob('images-*')))}"
    folder.mkdir()
    rows = []
    for i in range(16):
        colour = list(COLOURS)[i % len(COLOURS)]
        draw_shape(colour, "circle" if i % 2 else "square").save(folder / f"{i}.png")
        question = [{"type": "image", "path": f"{folder.name}/{i}.png"}, {"type": "text", "text": "Which colour?"}]
        rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": colour}]})
    path = out / f"data-{len(list(out.glob('data-*')))}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"path": str(path), "type": "chat_template", **{k: v for k, v in entry.items() if k == "roles_to_train"}}


def model_family(base_model: str) -> str | None:
    for pattern, family in FAMILIES:
        if pattern.search(base_model):
            return family
    return None


def dataset_kind(raw: dict[str, Any]) -> str:
    entries = raw.get("datasets") or raw.get("pretraining_dataset") or []
    if isinstance(entries, str):
        return "pretrain"
    types = sorted({str(d.get("type") or "pretokenized") for d in entries if isinstance(d, dict)})
    return "+".join(types) or "none"


def adapter_kind(raw: dict[str, Any]) -> str:
    return str(raw.get("adapter") or "full")


def stratified_sample(accepted: list[Outcome], limit: int) -> list[Outcome]:
    """Greedy cover: at least one config per model family, adapter kind and dataset type (first found wins)."""
    candidates = [o for o in accepted if model_family(str(o.raw.get("base_model", "")))]
    chosen: list[Outcome] = []
    covered: set[tuple[str, str]] = set()
    for outcome in candidates:
        tags = {
            ("family", model_family(str(outcome.raw["base_model"])) or ""),
            ("adapter", adapter_kind(outcome.raw)),
            ("data", dataset_kind(outcome.raw)),
        }
        if tags - covered and len(chosen) < limit:
            chosen.append(outcome)
            covered |= tags
    return chosen


# MoE families: 4 experts of which 2 per token (fused 3-D expert weights, as the full-size models store them).
MOE_SETTINGS: dict[str, dict[str, Any]] = {
    "glm4_moe": dict(
        moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2, first_k_dense_replace=0, head_dim=16
    ),
    "qwen3_moe": dict(moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, head_dim=16),
}


def make_tiny_model(family: str, out: Path, mistral_common: bool = False) -> None:
    """A 2-layer random model of the family's architecture with hpcft's tiny tokenizer, or with mistral_common the
    tekken tokenizer file the mistral-common package ships (as Mistral's models carry one)."""
    import torch
    import transformers

    from hpcft.trainer.tiny import make_tiny_tokenizer

    if mistral_common:
        from importlib.resources import files

        from transformers.tokenization_mistral_common import MistralCommonBackend

        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(files("mistral_common") / "data" / "tekken_240911.json", out / "tekken.json")
        tok = MistralCommonBackend.from_pretrained(str(out))
    else:
        tok = make_tiny_tokenizer(out)
    # Headroom: some families' tokenizer classes (Qwen2Tokenizer) add a special token of their own on loading.
    common = dict(
        vocab_size=len(tok) + 16,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    if family.startswith("gemma"):
        common["head_dim"] = 16
    common.update(MOE_SETTINGS.get(family, {}))
    config = transformers.AutoConfig.for_model(family, **common)
    torch.manual_seed(0)
    # eager builds every architecture (some, like Gemma 2, have no sdpa path); the trainer picks its own attention.
    transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").save_pretrained(str(out))


def local_dataset(entry: dict[str, Any], out: Path) -> dict[str, Any]:
    """A small local file of the same dataset type, with the same field names as the entry expects."""
    kind = entry.get("type") or "pretokenized"
    rows: list[dict[str, Any]] = []
    if str(kind).startswith("chat_template"):
        mapping = entry.get("message_property_mappings") or {}
        role_key = mapping.get("role", entry.get("message_field_role") or "role")
        content_key = mapping.get("content", entry.get("message_field_content") or "content")
        roles = entry.get("roles") or {}
        user = (roles.get("user") or ["user"])[0]
        assistant = (roles.get("assistant") or ["assistant"])[0]
        for i in range(16):
            rows.append(
                {
                    entry.get("field_messages") or "messages": [
                        {role_key: user, content_key: f"What is {i} plus {i}?"},
                        {role_key: assistant, content_key: f"{i} plus {i} is {2 * i}."},
                    ]
                }
            )
    elif str(kind).split(":")[0] == "alpaca":
        rows = [{"instruction": f"Add {i} and {i}.", "input": "", "output": f"{2 * i}"} for i in range(16)]
    elif kind == "bradley_terry.chat_template":
        rows = [
            {"system": "", "input": f"What is {i} plus {i}?", "chosen": f"{i} plus {i} is {2 * i}.", "rejected": "No."}
            for i in range(16)
        ]
    elif kind == "stepwise_supervised":
        rows = [
            {"prompt": f"What is {i} plus {i}?", "completions": [f"{i} plus {i}", f"is {2 * i}."], "labels": [1, i % 2]}
            for i in range(16)
        ]
    elif str(kind).split(":")[0] == "jeopardy":
        rows = [{"question": f"It is {2 * i}", "category": "SUMS", "answer": f"{i} plus {i}"} for i in range(16)]
    elif kind in ("completion", "pretrain"):
        column = entry.get("text_column") or entry.get("field") or "text"
        rows = [{column: f"The sky is blue. {i} plus {i} is {2 * i}."} for i in range(16)]
    else:
        rows = [{"input_ids": list(range(1, 20)), "labels": list(range(1, 20)), "attention_mask": [1] * 19}] * 16
    path = out / f"data-{len(list(out.glob('data-*')))}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    keep = {
        k: v
        for k, v in entry.items()
        if k
        in (
            "type",
            "field_messages",
            "message_property_mappings",
            "message_field_role",
            "message_field_content",
            "roles",
            "roles_to_train",
            "train_on_eos",
            "field",
            "text_column",
            "field_thinking",
            "template_thinking_key",
            "drop_system_message",
            "train_on_inputs",
            "step_separator",
            "max_completion_length",
            "train_on_last_step_only",
        )
    }
    return {**keep, "path": str(path)}


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def train_one(outcome: Outcome, work: Path, models: dict[str, Path], timeout: int) -> tuple[str, str]:
    """Swap model and data, validate again, run 2 steps; return (result, detail)."""
    from hpcft.core.protocol import METRICS_FILE
    from hpcft.launcher.config import load_job

    vision = vision_family(str(outcome.raw["base_model"])) if outcome.kind == "multimodal" else None
    family = vision[0] if vision else model_family(str(outcome.raw["base_model"])) or "llama"
    mistral_common = bool(outcome.raw.get("tokenizer_use_mistral_common"))
    model_key = f"{family}-mistral-common" if mistral_common else family
    if vision and model_key not in models:
        from hpcft.trainer import tiny_vlm

        models[model_key] = work / "models" / model_key
        getattr(tiny_vlm, vision[1])(models[model_key])
    # An NVFP4 release (nvidia/*-NVFP4) is swapped for a tiny model stored in the same ModelOpt NVFP4 layout.
    nvfp4 = "nvfp4" in str(outcome.raw["base_model"]).lower()
    if nvfp4:
        model_key += "-nvfp4"
    if model_key not in models:
        from hpcft.trainer.tiny import make_nvfp4_copy

        models[model_key] = work / "models" / model_key
        plain = work / "models" / f"{model_key}-16bit" if nvfp4 else models[model_key]
        make_tiny_model(family, plain, mistral_common)
        if nvfp4:
            make_nvfp4_copy(plain, models[model_key])
    run = work / "train" / re.sub(r"[^A-Za-z0-9]+", "_", outcome.path)
    run.mkdir(parents=True)
    raw = dict(outcome.raw)
    for key in (
        "base_model_config",
        "tokenizer_config",
        "tokenizer_type",
        "model_type",
        "hub_model_id",
        "chat_template",
        "chat_template_jinja",
        "test_datasets",
        "deepspeed",
        "wandb_project",
        "wandb_entity",
        "wandb_name",
        "wandb_log_model",
        "special_tokens",
        "tokens",
        "dataset_prepared_path",
        "resume_from_checkpoint",
        "lora_model_dir",
        # One process cannot be split (tests/trainer/test_train_parallel.py runs the sizes on 2 and 4).
        "dp_shard_size",
        "dp_replicate_size",
        "tensor_parallel_size",
        "context_parallel_size",
        "sequence_parallel_degree",
        "expert_parallel_size",
    ):
        if not (vision and key == "chat_template"):  # a vision model keeps its template (tiny_vlm's tokens)
            raw.pop(key, None)
    raw.update(
        base_model=str(models[model_key]),
        output_dir=str(run / "out"),
        max_steps=2,
        sequence_len=128,
        # The samples are short lines: a long-context floor (alst's 200,000 tokens) would drop every one.
        min_sample_len=min(int(raw.get("min_sample_len") or 2), 2),
        micro_batch_size=1,
        gradient_accumulation_steps=1,
        val_set_size=0,
        eval_steps=None,
        evals_per_epoch=None,
        save_steps=None,
        saves_per_epoch=None,
        logging_steps=1,
        bf16=False,
        fp16=False,
        bfloat16=None,
        float16=None,
        tf32=False,
        flash_attention=False,
        attn_implementation=None,
    )
    # With val_set_size 0 there is nothing to evaluate: the keys that compare evaluations go too.
    for key in ("early_stopping_patience", "do_causal_lm_eval", "eval_causal_lm_metrics", "eval_strategy"):
        raw.pop(key, None)
    for key in ("metric_for_best_model", "greater_is_better", "load_best_model_at_end", "evaluation_strategy"):
        raw.pop(key, None)
    if raw.get("save_strategy") == "best":
        raw.pop("save_strategy")
    make_data = multimodal_dataset if vision else local_dataset
    raw["datasets"] = [make_data(d, run) for d in raw.get("datasets") or [] if isinstance(d, dict)]
    pretraining = raw.get("pretraining_dataset")
    if pretraining:  # axolotl's string form names one dataset; a stream of a small local file of the same type
        entries = [{"path": pretraining}] if isinstance(pretraining, str) else pretraining
        raw["pretraining_dataset"] = [
            local_dataset({"type": "pretrain", **e}, run) for e in entries if isinstance(e, dict)
        ]
    config = run / "cfg.yaml"
    config.write_text(yaml.safe_dump(raw))
    job = load_job(config, "local")
    train_yaml = run / "train.yaml"
    train_yaml.write_text(yaml.safe_dump(job.cfg.training_dict()))
    # One rank as torchrun would start it: DeepSpeed (which FSDP configs run as on CPU) otherwise looks for MPI.
    rank_env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    rank_env["MASTER_PORT"] = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "2", **rank_env}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "hpcft.trainer", "train", str(train_yaml)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        return "failed", (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:160]
    metrics = run / "out" / METRICS_FILE  # the trainer's stdout is for people; metrics.jsonl for machines
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    losses = [row["loss"] for row in rows if row.get("loss") is not None]
    return "trained", f"{len(losses)} steps, loss {losses[-1]:.3f}, {seconds:.0f} s" if losses else "no loss logged"


# --- reporting -------------------------------------------------------------------------------------------------

RESULTS = ("accepted", "refused", "unknown key", "other error", "traceback")


def summary_rows(outcomes: list[Outcome]) -> list[list[object]]:
    kinds = sorted({o.kind for o in outcomes}, key=lambda k: (k != "text", k))
    rows = []
    for kind in [*kinds, "all"]:
        group = [o for o in outcomes if kind in ("all", o.kind)]
        counts = collections.Counter(o.result for o in group)
        rows.append([kind, len(group), *(counts.get(r, 0) for r in RESULTS)])
    return rows


def top_details(outcomes: list[Outcome], result: str, n: int = 15) -> str:
    counts = collections.Counter(o.detail for o in outcomes if o.result == result)
    return ", ".join(f"`{detail}` {count}" for detail, count in counts.most_common(n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("axolotl", type=Path, help="an axolotl checkout (its examples/ folder is read)")
    parser.add_argument("--commit", help="the checkout's commit (default: git rev-parse HEAD in it)")
    parser.add_argument("--no-train", action="store_true", help="only validate")
    parser.add_argument("--limit-train", type=int, default=12, help="at most this many training runs")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per training run")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    commit = (
        args.commit
        or subprocess.run(
            ["git", "-C", str(args.axolotl), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    with tempfile.TemporaryDirectory(prefix="hpcft-axolotl-") as tmp:
        work = Path(tmp)
        start = time.monotonic()
        outcomes = validate_all(args.axolotl / "examples", work)
        validate_s = time.monotonic() - start
        for o in outcomes:
            print(f"{o.result:12s} {o.kind:10s} {o.path}  {o.detail}")
        headers = ["kind", "configs", *RESULTS]
        notes = (
            f"axolotl commit {commit}: `hpcft validate --profile local` on every YAML under examples/ "
            f"({validate_s:.0f} s). Refusing keys: {top_details(outcomes, 'refused')}. Unknown keys: "
            f"{top_details(outcomes, 'unknown key') or 'none'}. Other errors: "
            f"{top_details(outcomes, 'other error', 8) or 'none'}."
        )
        train_rows: list[list[object]] = []
        if not args.no_train:
            models: dict[str, Path] = {}
            sample = stratified_sample(
                [o for o in outcomes if o.result == "accepted" and o.kind == "text"], args.limit_train
            )
            sample += vision_sample([o for o in outcomes if o.result == "accepted" and o.kind == "multimodal"])
            for outcome in sample:
                try:
                    result, detail = train_one(outcome, work, models, args.timeout)
                except Exception as exc:  # noqa: BLE001 - a failed swap or run is a row, not the end of the matrix
                    result, detail = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                train_rows.append(
                    [
                        outcome.path,
                        (vision_family(str(outcome.raw["base_model"])) or (None,))[0]
                        if outcome.kind == "multimodal"
                        else model_family(str(outcome.raw["base_model"])),
                        adapter_kind(outcome.raw),
                        dataset_kind(outcome.raw),
                        result,
                        detail,
                    ]
                )
                print(" | ".join(str(c) for c in train_rows[-1]), flush=True)
        if args.no_record:
            print(table(headers, summary_rows(outcomes)))
            print(notes)
            if train_rows:
                print(table(["config", "family", "adapter", "data", "result", "detail"], train_rows))
            return 0
        record("axolotl examples (validate)", headers, summary_rows(outcomes), notes=notes)
        if train_rows:
            record(
                "axolotl examples (2 CPU steps, tiny model of the same architecture)",
                ["config", "family", "adapter", "data", "result", "detail"],
                train_rows,
                notes=f"axolotl commit {commit}; base_model swapped for a 2-layer random model of the family, "
                "datasets for 16-row local files of the same type, sequence_len 128, 1 process, fp32",
                packages=["torch", "transformers", "peft"],
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
