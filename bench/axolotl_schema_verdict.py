"""axolotl's own verdict on config files: its `validate_config` (the pydantic schema with every validator) as its CLI
calls it on a GPU machine (bf16, one node). Runs under a Python where axolotl is importable, not hpcft's.

How: a throwaway venv that sees torch/transformers/peft/trl (e.g. a .pth file naming hpcft's site-packages) plus
`pip install --no-deps axolotl==0.19.0 addict posthog backoff monotonic` (posthog: imported by its plugin
loader). Run it with HF_HUB_OFFLINE=1 (bench/user_configs.py does): nothing is downloaded, no model, no dataset.

Prints one JSON object per file: {"file": ..., "verdict": "accepted" | "refused" | "error", "reason": first line}.
Run: python bench/axolotl_schema_verdict.py CONFIG.yaml ...
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import warnings

import yaml

# What `axolotl train` detects on an H100 node (axolotl.cli.config.load_cfg passes the same two mappings).
CAPABILITIES = {"bf16": True, "fp8": False, "n_gpu": 1, "n_node": 1, "compute_capability": "sm_90"}
ENV_CAPABILITIES = {"torch_version": "2.7.1"}


def verdict(path: str) -> dict[str, str]:
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        return {"file": path, "verdict": "refused", "reason": "not a mapping"}
    cfg = DictDefault(raw)
    try:
        if cfg.plugins:
            from axolotl.cli.config import prepare_plugins

            prepare_plugins(cfg)
        validate_config(cfg, capabilities=CAPABILITIES, env_capabilities=ENV_CAPABILITIES)
    except ImportError as exc:
        return {"file": path, "verdict": "error", "reason": f"ImportError: {exc}"}
    except Exception as exc:  # noqa: BLE001 - any exception is axolotl refusing to start with this config
        return {"file": path, "verdict": "refused", "reason": _reason(exc)}
    return {"file": path, "verdict": "accepted", "reason": ""}


def _reason(exc: Exception) -> str:
    """One line: the key pydantic names and its message, or the exception's first line."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(part) for part in err["loc"])
        return f"{loc}: {err['msg']}" if loc else err["msg"]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class _NoAnswer(Exception):
    pass


def _no_answer(signum: int, frame: object) -> None:
    raise _NoAnswer


def main(paths: list[str]) -> int:
    logging.disable(logging.CRITICAL)  # axolotl logs its warnings; the verdict is all we read
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _no_answer)
    for path in paths:
        signal.alarm(60)  # a validator that waits on the network must not stop the whole corpus
        try:
            found = verdict(path)
        except _NoAnswer:
            found = {"file": path, "verdict": "error", "reason": "no answer within 60 s"}
        signal.alarm(0)
        print(json.dumps(found), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
