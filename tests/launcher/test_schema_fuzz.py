"""Fuzz the schema's types through `hpcft validate` (in-process): every top-level key of the training config,
every `launch:` key and every key of a `datasets:` entry gets wrong-typed and extreme values. Whatever the value,
validate answers with exit 0 or 2, no traceback, and on 2 one error line that names the key. Seeded: a failure
reproduces. HPCFT_FUZZ_VALUES=all tries every value on every key (bench/RESULTS.md); the default samples a few
per key to stay fast."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest
import yaml

from hpcft.core.schema import DatasetConfig, LaunchConfig, TrainConfig, field_aliases

SEED = 24
HOSTILE_VALUES: list[object] = [
    None,
    "",
    " ",
    0,
    -1,
    2**63,
    -(2**63) - 1,
    10**40,
    1.5,
    -1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    [],
    [1, "a", None],
    {},
    {"a": {"b": [1, {"c": None}]}},
    "x" * 100_000,
    "${oc.env:HPCFT_FUZZ_NOT_SET}",
    "$HPCFT_FUZZ_NOT_SET",
    "~",
    "../../..",
    "a\nb",
    "\x00",
]
# Keys whose value is a file the job reads are fuzzed too: a huge string there is a path that does not exist.
SAMPLED_PER_KEY = 2
ANSWER_WITHIN_S = 20  # validate answers any config within seconds; longer is a hang (a loop over a huge size)


NESTED = {"launch.": LaunchConfig, "datasets[0].": DatasetConfig}


def _keys() -> list[str]:
    top = [name for name in TrainConfig.model_fields if name != "launch"]
    return sorted(top) + [prefix + name for prefix, model in NESTED.items() for name in sorted(model.model_fields)]


def _spellings(key: str) -> set[str]:
    """The names an error may use for a key: its own, its aliases, and the last part of a dotted key."""
    prefix = next((p for p in NESTED if key.startswith(p)), "")
    model, name = NESTED.get(prefix, TrainConfig), key.removeprefix(prefix)
    names = {key, name, *field_aliases(name, model.model_fields[name])}
    return names | {prefix + n for n in names}


def _cases() -> list[tuple[str, int]]:
    rng = random.Random(SEED)
    everything = os.environ.get("HPCFT_FUZZ_VALUES") == "all"
    cases = []
    for key in _keys():
        indices = list(range(len(HOSTILE_VALUES)))
        cases += [(key, i) for i in (indices if everything else rng.sample(indices, SAMPLED_PER_KEY))]
    return cases


def _config(workspace: Path, key: str, value: object) -> Path:
    data = yaml.safe_load((workspace / "cfg.yaml").read_text())
    if key.startswith("launch."):
        data.setdefault("launch", {})[key.removeprefix("launch.")] = value
    elif key.startswith("datasets[0]."):
        data["datasets"][0][key.removeprefix("datasets[0].")] = value
    else:
        data[key] = value
    path = workspace / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, width=10**9))
    return path


class Hung(Exception):
    pass


def _hung(signum: int, frame: object) -> None:
    raise Hung(f"no answer within {ANSWER_WITHIN_S} s")


def _verdict(key: str, value: object, code: int, err: str) -> str | None:
    """What is wrong with validate's answer (None: a right answer)."""
    if "Traceback" in err or code not in (0, 2):
        return f"exit {code}: {err.strip().splitlines()[-1] if err.strip() else ''}"
    if code == 0:
        return None
    errors = [line for line in err.strip().splitlines() if not line.startswith("hpcft: warning:")]
    if len(errors) != 1 or not errors[0].startswith("hpcft: error: "):
        return f"{len(errors)} error lines: {errors[:2]}"
    if not any(name in errors[0] for name in _spellings(key)):
        return f"the error does not name the key: {errors[0][:300]}"
    return None


@pytest.mark.parametrize(("key", "index"), _cases(), ids=lambda v: str(v))
def test_a_hostile_value_is_accepted_or_one_clear_error(key, index, workspace, run_cli, monkeypatch):
    monkeypatch.delenv("HPCFT_FUZZ_NOT_SET", raising=False)
    value = HOSTILE_VALUES[index]
    cfg = _config(workspace, key, value)
    signal.signal(signal.SIGALRM, _hung)
    signal.alarm(ANSWER_WITHIN_S)
    try:
        result = run_cli("validate", cfg, "--profile", "local", cwd=workspace)
    except BaseException as exc:  # noqa: BLE001 - an escaping exception (or a hang) is the finding itself
        pytest.fail(f"{key}={value!r:.60}: validate raised {type(exc).__name__}: {exc}"[:500])
    finally:
        signal.alarm(0)
    problem = _verdict(key, value, result.code, result.err)
    assert problem is None, f"{key}={value!r:.60}: {problem}"
    assert not (workspace / "runs").exists()
