"""What to do with a config key neither hpcft nor axolotl knows: a near-certain typo is an error, anything else
has no effect (axolotl drops it too) and is a warning, or an error under `--strict` / `launch.strict_keys: true`.

A typo is an error because it silently changes the run (`micro_batch_sise: 2` trains with the default batch); a
leftover from another tool (`report_to`, `lr_scheduler_type`) changes nothing under axolotl either, so refusing it
would refuse a config that runs there.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Keys neither axolotl nor hpcft has, written the way other tools (HF TrainingArguments, PEFT, bitsandbytes,
# PyTorch schedulers) name a setting both have: the hint says where the setting lives here.
OTHER_TOOLS_NAMES: dict[str, str] = {
    "eta_min": "the cosine schedule's floor is 'cosine_min_lr_ratio' (a fraction of learning_rate)",
    "adam_eps": "did you mean 'adam_epsilon'?",
    "lr": "did you mean 'learning_rate'?",
    "num_train_epochs": "did you mean 'num_epochs'?",
    "per_device_train_batch_size": "did you mean 'micro_batch_size'?",
    "per_device_eval_batch_size": "did you mean 'eval_batch_size'?",
    "max_seq_length": "did you mean 'sequence_len'?",
    "max_length": "did you mean 'sequence_len'?",
    "lora_rank": "did you mean 'lora_r'?",
    "warmup": "did you mean 'warmup_steps' or 'warmup_ratio'?",
    "report_to": "trackers are chosen by wandb_project, use_tensorboard, swanlab_project, ...",
    "lr_scheduler_type": "did you mean 'lr_scheduler'?",
    "wandb_run_name": "did you mean 'wandb_name'?",
    "bnb_4bit_quant_type": "4-bit settings go under bnb_config_kwargs (e.g. {bnb_4bit_quant_type: nf4})",
    "bnb_4bit_compute_dtype": "4-bit settings go under bnb_config_kwargs",
    "bnb_4bit_use_double_quant": "4-bit settings go under bnb_config_kwargs",
    "use_qlora": "QLoRA is 'adapter: qlora' with 'load_in_4bit: true'",
    "dropout": "did you mean 'lora_dropout'?",
    "eval_datasets": "evaluation data is 'test_datasets' (or val_set_size)",
    "push_adapter_to_hub": "uploading is 'hub_model_id'",
    "padding_side": "the tokenizer's own padding side is used",
    "offload_folder": "offloading is 'deepspeed' (zero3_offload) or activation_offloading",
}

OTHER_TOOLS_DATASET_NAMES: dict[str, str] = {
    "train_on_split": "did you mean 'split'?",
    "streaming": "streaming is the top-level key 'streaming: true'",
    "field_prompt": "did you mean 'field_instruction' (under a type: mapping)?",
}


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[len(b)]


def typo_of(key: str, known: Iterable[str], already_set: Iterable[str]) -> str | None:
    """The known key `key` is almost certainly a misspelling of, if any: one edit for keys under 10 characters, two
    for longer ones (case ignored), and never a key the config already sets (then `key` is not its stand-in)."""
    if len(key) < 4:  # `lr`, `bf`: too short for one edit to mean a typo rather than another word
        return None
    limit = 2 if len(key) >= 10 else 1
    taken = set(already_set)
    best: tuple[int, str] | None = None
    for name in known:
        if name == key or name in taken or abs(len(name) - len(key)) > limit:
            continue
        distance = edit_distance(key.lower(), name.lower())
        if distance <= limit and (best is None or (distance, name) < best):
            best = (distance, name)
    return best[1] if best else None


def no_effect_hint(key: str, known: Iterable[str], dataset: bool) -> str:
    """`; <hint>` for a key that has no effect: where the setting lives, or the closest known key."""
    names = OTHER_TOOLS_DATASET_NAMES if dataset else OTHER_TOOLS_NAMES
    if key in names:
        return f"; {names[key]}"
    # 0.75: close enough for a misremembered name (adam_eps), far enough to avoid eta_min -> 'streaming'.
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return f"; did you mean '{close[0]}'?" if close else ""


def no_effect_message(where: str, name: str, hint: str) -> str:
    return f"{where}: '{name}' is not an axolotl key and has no effect (axolotl ignores it too){hint}"


def strict_refusal(where: str, found: list[tuple[str, str]]) -> str:
    """One line for every no-effect key at once (name and hint), under --strict or launch.strict_keys: true."""
    listed = ", ".join(f"'{name}'" + (f" ({hint.removeprefix('; ')})" if hint else "") for name, hint in found)
    one = len(found) == 1
    return (
        f"{where}: {listed} {'is not an axolotl key' if one else 'are not axolotl keys'} and would have no effect; "
        f"remove {'it' if one else 'them'} (--strict and launch.strict_keys: true refuse keys that have no effect)"
    )
