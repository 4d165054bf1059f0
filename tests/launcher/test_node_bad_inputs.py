"""Hostile dataset and template files found on the login node, not after the queue wait: every config in
tests/data/bad_inputs/node/ names files that this module makes (FIFOs, 5 MB templates, broken rows), and must
give one clear line naming the key and the file, exit 2, and leave no run directory (as tests/launcher/
test_bad_inputs.py asks of the rest of the corpus)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

CASES = sorted((Path(__file__).resolve().parents[1] / "data" / "bad_inputs" / "node").glob("*.yaml"))
ROWS = "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(3))
FILES: dict[str, bytes] = {
    "blank_lines.jsonl": b"\n   \n\n",
    "first_line_broken.jsonl": b"{text: 'single quotes'}\n" + ROWS.encode(),
    "row_not_object.jsonl": b'{"text": "a"}\n["b"]\n',
    "broken_list.json": b'[\n{"text": "a"},\n{"text": }\n]\n',
    "extra_field.csv": b"text,id\na,1\nb,2\nc,3,extra\n",
    "unterminated.csv": b'text,id\na,1\n"b,2\n',
    "not.parquet": b"text\nthis is CSV named .parquet\n",
    "latin1.jsonl": b'{"text": "caf\xe9"}\n',
    "rows.data": ROWS.encode(),
    "folder_of_parts/part-0.data": ROWS.encode(),
    "huge.jinja": b"{# padding #}" * (5 * 2**20 // 13 + 1),
    "latin1.jinja": b"{{ messages[0]['content'] }} caf\xe9",
}


def _header(path: Path) -> str:
    return path.read_text().splitlines()[0].removeprefix("# expect: ")


@pytest.fixture
def node_data(workspace: Path) -> Path:
    folder = workspace / "node_data"
    for name, content in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    (folder / "empty_folder").mkdir()
    os.mkfifo(folder / "rows.fifo")  # opened, it would block validate forever
    return folder


def test_every_case_has_its_files():
    lines = [line for case in CASES for line in case.read_text().splitlines() if "./node_data/" in line]
    named = {line.split("./node_data/")[1].strip() for line in lines}
    assert named - set(FILES) == {"rows.fifo", "empty_folder", "folder_of_parts"}
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
@pytest.mark.parametrize("verb", ["render", "validate"])
def test_node_failure_is_caught_on_the_login_node(case, verb, workspace, node_data, run_cli, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(workspace / "xdg"))
    cfg = workspace / "bad.yaml"
    shutil.copy(case, cfg)
    extra = ["-o", str(workspace / "run")] if verb == "render" else []
    result = run_cli(verb, cfg, "--profile", "local", *extra, cwd=workspace)
    assert result.code == 2, result.err
    errors = [line for line in result.err.strip().splitlines() if not line.startswith("hpcft: warning:")]
    assert len(errors) == 1 and errors[0].startswith("hpcft: error: "), result.err
    assert _header(case) in errors[0]
    assert "Traceback" not in result.err
    assert not (workspace / "run").exists() and not (workspace / "runs").exists()


# Found by tests/launcher/test_schema_fuzz.py: values too long to be a path made validate crash with an OSError.
GENERATED = {
    "base_model_100k_chars": ("base_model", "x" * 100_000, "is longer than the 4096 bytes a path may have"),
    "output_dir_long_name": ("output_dir", "./" + "o" * 300, "has a folder or file name longer than 255 bytes"),
    "runs_dir_long_name": ("launch", {"runs_dir": "/tmp/" + "r" * 300}, "key 'launch.runs_dir': the value has a"),
    "dataset_path_long": ("datasets", [{"path": "d" * 5000, "type": "completion"}], "key 'datasets[0].path'"),
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_value_too_long_for_a_path(name, workspace, run_cli):
    key, value, expect = GENERATED[name]
    data = yaml.safe_load((workspace / "cfg.yaml").read_text())
    data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    cfg = workspace / "bad.yaml"
    cfg.write_text(yaml.safe_dump(data, width=10**9))
    result = run_cli("validate", cfg, "--profile", "local", cwd=workspace)
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and result.err.startswith("hpcft: error: ") and expect in result.err


def test_plan_refuses_a_zero_stage_deepspeed_does_not_have(workspace, run_cli):
    """`hpcft plan` used to print "ZeRO-7" for such a file; it runs the same checks as validate."""
    (workspace / "ds.json").write_text('{"zero_optimization": {"stage": 7}}')
    cfg = workspace / "cfg.yaml"
    cfg.write_text(cfg.read_text() + "deepspeed: ./ds.json\n")
    result = run_cli("plan", cfg, "--profile", "local", cwd=workspace)
    assert result.code == 2 and "ZeRO-7" not in result.out
    assert "zero_optimization.stage is 7; DeepSpeed's ZeRO stages are 0, 1, 2 and 3" in result.err
