"""Validate every `rl:` config of an axolotl checkout's examples/ with hpcft and say what each one gives.

A config that stops at a key which is not about preference tuning is validated again without that key, so the
report separates "refused for rl" from "refused for another key". No config may end in a Python traceback.
Usage: python scripts/check_axolotl_rl_examples.py /path/to/axolotl
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

RL_KEY = re.compile(r"\b(rl|trl|dpo_\w+|orpo_alpha|kto_\w+|simpo_gamma|cpo_alpha|rl_beta|type)\b")


def validate(path: Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "hpcft.launcher.cli", "validate", str(path), "--profile", "local"],
        capture_output=True,
        text=True,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def main(axolotl: Path) -> int:
    bad = 0
    for config in sorted(axolotl.glob("examples/**/*.y*ml")):
        data = yaml.safe_load(config.read_text())
        if not isinstance(data, dict) or "rl" not in data:
            continue
        removed: list[str] = []
        code, out = validate(config)
        while code != 0 and "Traceback" not in out:
            key = re.search(r"(?:unknown key|') ?'?([\w.]+)' (?:is an axolotl option|$)", out.splitlines()[-1])
            key = key or re.search(r"unknown key '([\w.]+)'", out) or re.search(r"key '(plugins)'", out)
            if not key or RL_KEY.fullmatch(key.group(1).split(".")[0]) or key.group(1) in data.get("datasets", {}):
                break
            removed.append(key.group(1))
            data.pop(key.group(1), None)
            with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=config.parent, delete=False) as tmp:
                yaml.safe_dump(data, tmp)
            code, out = validate(Path(tmp.name))
            Path(tmp.name).unlink()
        bad += "Traceback" in out
        verdict = "OK" if code == 0 else out.splitlines()[-1]
        print(
            f"{config.relative_to(axolotl)} (rl: {data['rl']}): {verdict}"
            + (f"  [after removing non-rl keys: {', '.join(removed)}]" if removed else "")
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/axolotl")))
