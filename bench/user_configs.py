"""Users' own axolotl configs (bench/user_configs/: collected from public repositories, sources in SOURCES.tsv)
through `hpcft validate --profile local`, next to axolotl 0.19's own verdict on the same files.

hpcft's outcome per config is one of: accepted; *absent input*, a refusal only because a local file or folder the
config names is not on this machine (the one-line error is `dataset file not found`, `file not found` or `model
folder not found`; such a config is counted as accepted, since on the user's machine the file exists; hpcft stops
at that error, so a problem behind it would go unseen); refused by name (an axolotl option hpcft does not support
yet, the key or type named); unknown key (a near-certain typo); another one-line error; or a traceback (a bug).

axolotl's verdict comes from AXOLOTL_VERDICTS.tsv next to the configs, written by `--axolotl-python PY`, which runs
bench/axolotl_schema_verdict.py under a Python where axolotl 0.19 is installed (see that file for how).
EXPECTED.tsv records hpcft's outcome per config (`--write-expected`); tests/launcher/test_user_configs.py checks
that every config still gets it.

Run: python bench/user_configs.py [--axolotl-python PY] [--write-expected] [--no-record]
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from axolotl_examples import Outcome, validate_one  # noqa: E402
from results import record, table  # noqa: E402

CORPUS = Path(__file__).resolve().parent / "user_configs"
VERDICTS = CORPUS / "AXOLOTL_VERDICTS.tsv"
EXPECTED = CORPUS / "EXPECTED.tsv"
ABSENT = re.compile(r"^key '([^']+)': (?:dataset file not found|file not found|model folder not found): ")
RESULTS = ("accepted", "absent input", "refused", "unknown key", "other error", "traceback")


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.suffix in (".yml", ".yaml"))


def hpcft_outcome(path: Path, work: Path) -> Outcome:
    """validate as a user would, from a copy in a folder of its own (relative output folders are writable).

    A local file the config names that is not on this machine is replaced by a stand-in (a Hub name for a model or
    dataset, the preset of the same ZeRO stage for a DeepSpeed file) and the copy validated again, so that the
    checks behind that error run too; the outcome is "absent input" when the config then validates."""
    folder = work / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / path.name
    shutil.copy(path, copy)
    absent: list[str] = []
    for _ in range(8):
        outcome = validate_one(copy, path.name)
        match = ABSENT.match(outcome.detail) if outcome.result == "other error" else None
        if not match or not _stand_in(outcome.raw, match.group(1)):
            break
        absent.append(match.group(1))
        copy.write_text(yaml.safe_dump(outcome.raw, sort_keys=False))
    if absent and outcome.result == "accepted":
        outcome.result, outcome.detail = "absent input", ", ".join(absent)
    return outcome


def _stand_in(raw: dict, key: str) -> bool:
    """Replace the absent local file at `key` (base_model, deepspeed, datasets[0].path, ...) in place."""
    if key == "base_model":
        raw["base_model"] = "stand-in/absent-model"
        raw.pop("base_model_config", None)
        raw.pop("tokenizer_config", None)
        return True
    if key == "deepspeed":
        name = str(raw["deepspeed"])
        raw["deepspeed"] = next((p for p in ("zero3_offload", "zero1", "zero2", "zero3") if p in name), "zero2")
        return True
    entry = re.fullmatch(r"(datasets|test_datasets|pretraining_dataset)\[(\d+)\]\.(path|data_files)", key)
    if not entry:
        return False
    dataset = raw[entry.group(1)][int(entry.group(2))]
    dataset["path"] = "stand-in/absent-dataset"
    for local in ("data_files", "ds_type"):
        dataset.pop(local, None)
    return True


def read_tsv(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def axolotl_verdicts(python: str) -> dict[str, dict[str, str]]:
    """Run axolotl's own validation on every corpus file (one process; a file it hangs on is an error row)."""
    helper = Path(__file__).resolve().parent / "axolotl_schema_verdict.py"
    paths = [str(p) for p in corpus_files()]
    # Offline: axolotl's validators look models up on the Hub when they can; the verdict is the schema's alone.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([python, str(helper), *paths], capture_output=True, text=True, env=env).stdout
    found = {Path(r["file"]).name: r for r in map(json.loads, out.splitlines())}
    rows = []
    for path in corpus_files():
        row = found.get(path.name, {"verdict": "error", "reason": "axolotl's validation did not answer"})
        rows.append([path.name, row["verdict"], row["reason"]])
        print(f"axolotl: {row['verdict']:9s} {path.name}  {row['reason'][:120]}", flush=True)
    write_tsv(VERDICTS, ["file", "verdict", "reason"], rows)
    return read_tsv(VERDICTS)


def summary_rows(outcomes: list[Outcome], verdicts: dict[str, dict[str, str]]) -> list[list[object]]:
    rows = []
    groups = collections.defaultdict(list)
    for o in outcomes:
        groups[(o.kind, verdicts.get(o.path, {}).get("verdict", "not run"))].append(o)
    for (kind, verdict), group in sorted(groups.items(), key=lambda kv: (kv[0][0] != "text", kv[0])):
        counts = collections.Counter(o.result for o in group)
        ok = counts["accepted"] + counts["absent input"]
        rows.append([kind, verdict, len(group), *(counts.get(r, 0) for r in RESULTS), f"{ok / len(group):.0%}"])
    return rows


def details(outcomes: list[Outcome], verdicts: dict[str, dict[str, str]], axolotl: str) -> str:
    counts = collections.Counter(
        f"{o.result}: {o.detail}"
        for o in outcomes
        if o.result not in ("accepted", "absent input") and verdicts.get(o.path, {}).get("verdict") == axolotl
    )
    return ", ".join(f"`{detail}` {n}" for detail, n in counts.most_common()) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axolotl-python", help="a Python with axolotl 0.19 installed: (re)write its verdicts")
    parser.add_argument("--write-expected", action="store_true", help="record hpcft's outcomes in EXPECTED.tsv")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    verdicts = axolotl_verdicts(args.axolotl_python) if args.axolotl_python else read_tsv(VERDICTS)
    with tempfile.TemporaryDirectory(prefix="hpcft-user-configs-") as tmp:
        outcomes = [hpcft_outcome(path, Path(tmp)) for path in corpus_files()]
    for o in outcomes:
        verdict = verdicts.get(o.path, {}).get("verdict", "?")
        print(f"{o.result:12s} {o.kind:10s} axolotl {verdict:9s} {o.path}  {o.detail}")
    if args.write_expected:
        write_tsv(EXPECTED, ["file", "result", "detail"], [[o.path, o.result, o.detail] for o in outcomes])
    headers = ["kind", "axolotl 0.19", "configs", *RESULTS, "hpcft accepts"]
    rows = summary_rows(outcomes, verdicts)
    notes = (
        f"{len(outcomes)} configs from {len(read_tsv(CORPUS / 'SOURCES.tsv'))} files listed in "
        "bench/user_configs/SOURCES.tsv; 'absent input' (a local file the config names is not on this machine) "
        "counts as accepted. Not accepted, where axolotl accepts: "
        f"{details(outcomes, verdicts, 'accepted')}. Where axolotl refuses: {details(outcomes, verdicts, 'refused')}."
    )
    if args.no_record:
        print(table(headers, rows))
        print(notes)
        return 0
    record("users' axolotl configs (validate)", headers, rows, notes=notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
