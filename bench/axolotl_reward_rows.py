"""Side by side with axolotl: reward-model rows (bradley_terry.chat_template, stepwise_supervised) through axolotl's
own prompt strategies and through hpcft's (trainer/objectives/reward_data.py), token ids and labels compared row by row.

The tokenizer is hpcft's tiny BPE with its ChatML template (both sides get the same template text). axolotl's
strategies need two small packages beyond hpcft's:
    pip install --target /tmp/axdeps colorama addict
    PYTHONPATH=/tmp/axdeps python bench/axolotl_reward_rows.py --axolotl /path/to/axolotl [--commit SHA] [--record]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import record, table  # noqa: E402

PAIR = {"input": "What color is the sky?", "chosen": "The sky is blue.", "rejected": "I do not know."}
BT_CASES = {
    "system": {**PAIR, "system": "You are a tiny assistant."},
    "empty system": {**PAIR, "system": ""},
    "no system field": PAIR,
}
STEPS = {"prompt": "What is one plus two?", "completions": ["one plus one is two.", "two plus one is three."]}
STEPWISE_CASES = {
    "two steps": ({**STEPS, "labels": [True, False]}, {}),
    "train_on_last_step_only": ({**STEPS, "labels": [True, False]}, {"train_on_last_step_only": True}),
    "max_completion_length 6": ({**STEPS, "labels": [False, True]}, {"max_completion_length": 6}),
    "step_separator ' ; '": ({**STEPS, "labels": [True, True]}, {"step_separator": " ; "}),
}
SEQUENCE_LEN = 2048


def axolotl_bt(tokenizer: Any, row: dict) -> dict[str, list[int]]:
    from axolotl.prompt_strategies.bradley_terry.chat_template import load
    from axolotl.utils.dict import DictDefault

    cfg = DictDefault({"sequence_len": SEQUENCE_LEN, "reward_model": True, "train_on_inputs": False})
    ds_cfg = {"chat_template": "jinja", "chat_template_jinja": tokenizer.chat_template}
    out = load(tokenizer, cfg, ds_cfg)._tokenize_single_prompt(dict(row))
    return {"chosen_ids": out["chosen_ids"], "rejected_ids": out["rejected_ids"]}


def axolotl_stepwise(tokenizer: Any, row: dict, keys: dict) -> dict[str, list[int]]:
    from axolotl.prompt_strategies.stepwise_supervised import load
    from axolotl.utils.dict import DictDefault

    out = load(tokenizer, DictDefault({"sequence_len": SEQUENCE_LEN}), DictDefault(keys)).tokenize_prompt(dict(row))
    return {"input_ids": out["input_ids"], "labels": out["labels"]}


def hpcft_rows(model_dir: Path, kind: str, row: dict, keys: dict) -> dict[str, list[int]]:
    from hpcft.core.schema import TrainConfig
    from hpcft.trainer.model.loading import load_tokenizer
    from hpcft.trainer.objectives.reward_data import tokenize_bradley_terry, tokenize_stepwise

    objective = {"reward_model": True} if kind == "bradley_terry.chat_template" else {"process_reward_model": True}
    cfg = TrainConfig.model_validate(
        {
            "base_model": str(model_dir),
            "sequence_len": SEQUENCE_LEN,
            "datasets": [{"path": "rows.jsonl", "type": kind, **keys}],
            **objective,
        }
    )
    tokenizer = load_tokenizer(cfg)
    if kind == "stepwise_supervised":
        return tokenize_stepwise(row, tokenizer, cfg.datasets[0], cfg, "row")
    return tokenize_bradley_terry(row, tokenizer.chat_template, tokenizer, cfg.datasets[0], cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axolotl", type=Path, required=True, help="an axolotl checkout (its src/ is imported)")
    parser.add_argument("--commit", default="", help="the checkout's commit, for the record")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.axolotl / "src"))
    commit = (
        args.commit
        or subprocess.run(
            ["git", "-C", str(args.axolotl), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    )

    from transformers import AutoTokenizer

    from hpcft.trainer.tiny import make_tiny_model

    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        make_tiny_model(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        for name, row in BT_CASES.items():
            ours = hpcft_rows(model_dir, "bradley_terry.chat_template", row, {})
            try:
                theirs = axolotl_bt(tokenizer, row)
            except KeyError as exc:  # axolotl reads row["system"] unconditionally
                note = f"axolotl raises KeyError {exc}; hpcft renders no system turn"
                rows.append(["bradley_terry.chat_template", name, note])
                continue
            rows.append(["bradley_terry.chat_template", name, "yes" if ours == theirs else f"NO: {ours} != {theirs}"])
        for name, (row, keys) in STEPWISE_CASES.items():
            ours = hpcft_rows(model_dir, "stepwise_supervised", row, keys)
            theirs = axolotl_stepwise(tokenizer, row, keys)
            rows.append(["stepwise_supervised", name, "yes" if ours == theirs else f"NO: {ours} != {theirs}"])
    headers = ["dataset type", "case", "token ids and labels equal"]
    print(table(headers, rows))
    if args.record:
        notes = f"axolotl commit {commit}; hpcft's tiny tokenizer and its ChatML template on both sides."
        record("axolotl_reward_rows", headers, rows, notes, packages=["transformers"])
    return 0 if all(not str(r[2]).startswith("NO") for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
