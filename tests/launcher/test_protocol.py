"""The launcher/trainer contract (core/protocol.py) is one torch-free module both sides use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hpcft.core import protocol


def test_protocol_imports_nothing_heavy_and_the_trainer_uses_its_names():
    code = (
        "import sys, hpcft.core.protocol; "
        "print(sorted(m for m in ('torch', 'transformers', 'pydantic', 'omegaconf') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    # The trainer's modules take the names from the protocol instead of spelling them again.
    for module, names in {
        "trainer/loop/checkpoints.py": ["COMPLETE_MARKER"],
        "trainer/reporting/metrics.py": ["METRICS_FILE"],
        "trainer/loop/watchdog.py": ["HPCFT_RUN_DIR", "HPCFT_HANG_TIMEOUT"],
        "trainer/loop/faults.py": ["HPCFT_STOP_FILE"],
    }.items():
        source = (Path(__file__).resolve().parents[2] / module).read_text()
        assert "hpcft.core.protocol" in source, module
        for name in names:
            value = getattr(protocol, name, None) or name
            assert f'"{value}"' not in source, f"{module} spells {value!r} itself"


def test_completion_marker_round_trip_and_incomplete_checkpoints(tmp_path):
    done, cut = tmp_path / "checkpoint-10", tmp_path / "checkpoint-20"
    done.mkdir()
    cut.mkdir()
    protocol.write_complete_marker(done, step=10, world_size=4)
    marker = protocol.read_complete_marker(done)
    assert marker is not None and (marker.step, marker.world_size) == (10, 4)
    assert protocol.is_complete(done) and not protocol.is_complete(cut)
    assert protocol.read_complete_marker(cut) is None
    (cut / protocol.COMPLETE_MARKER).write_text("{half")
    assert protocol.read_complete_marker(cut) is None


def test_stop_file_shell_word_names_the_same_file_as_the_python_helper(tmp_path):
    expanded = subprocess.run(
        ["bash", "-c", f"printf %s {protocol.STOP_FILE_SHELL}"],
        capture_output=True,
        text=True,
        check=True,
        env={"HPCFT_RUN_DIR": str(tmp_path), "SLURM_JOB_ID": "1234", "PATH": "/usr/bin:/bin"},
    )
    assert expanded.stdout == str(protocol.stop_file(tmp_path, "1234"))


def test_last_metrics_reads_the_last_loss_line(tmp_path):
    lines = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}, {"eval_loss": 1.4}]
    (tmp_path / protocol.METRICS_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines) + "{partial")
    assert protocol.last_metrics(tmp_path) == (2, 1.5)
    assert protocol.last_metrics(tmp_path / "missing") == (None, None)
