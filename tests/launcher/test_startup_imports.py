"""What a command imports at start-up (login nodes import from parallel file systems, where every module costs):
checked by module, not by time; bench/cli_latency.py measures the time."""

from __future__ import annotations

import json
import subprocess
import sys

from omegaconf import OmegaConf

from hpcft.launcher.profiles import merge_mappings

LOADED = """
import json, sys
from hpcft.launcher.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help
    code = exc.code
heavy = ("pydantic", "omegaconf", "jinja2", "yaml", "importlib.metadata", "plotext", "submitit", "torch")
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def loaded_by(*args: str, cwd=None) -> dict:
    run = subprocess.run([sys.executable, "-c", LOADED, *args], capture_output=True, text=True, cwd=cwd)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.splitlines()[-1])


def test_help_loads_no_library():
    assert loaded_by("--help") == {"code": 0, "loaded": []}


def test_validate_without_interpolations_loads_neither_omegaconf_nor_jinja(workspace):
    seen = loaded_by("validate", "--profile", "local", str(workspace / "cfg.yaml"), cwd=workspace)
    assert seen["code"] == 0 and "pydantic" in seen["loaded"]  # the check that the run did validate
    assert not {"omegaconf", "jinja2", "plotext", "submitit"} & set(seen["loaded"])


def test_profile_layers_merge_as_omegaconf_merges_them():
    base = {"launch": {"nodes": 1, "mounts": ["/a"], "env": {"A": "1"}}, "env": {"X": "${oc.env:HOME}"}, "gres": True}
    over = {"launch": {"mounts": ["/b"], "env": {"B": "2"}, "time": "01:00:00"}, "gres": False, "setup": ["module"]}
    expected = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(over)), resolve=False)
    assert merge_mappings(base, over) == expected
