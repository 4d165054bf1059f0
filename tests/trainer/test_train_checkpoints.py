"""Complete-checkpoint detection, rotation, resume resolution, the stop file and fault injection (one process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from hpcft.core.errors import ConfigError
from hpcft.trainer.loop.checkpoints import (
    COMPLETE_MARKER,
    CompleteCheckpointCallback,
    find_latest_complete_checkpoint,
    mark_complete,
    resolve_resume_checkpoint,
    rotate_checkpoints,
)
from hpcft.trainer.loop.faults import FaultInjectionCallback, InjectedFault, StopFileCallback


def _checkpoint(root: Path, step: int, complete: bool) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text("{}")
    if complete:
        mark_complete(path, step, world_size=2)
    return path


def test_latest_complete_checkpoint_skips_incomplete_and_sorts_numerically(tmp_path):
    assert find_latest_complete_checkpoint(tmp_path / "missing") is None
    assert find_latest_complete_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 9, complete=True)
    _checkpoint(tmp_path, 20, complete=True)
    _checkpoint(tmp_path, 100, complete=True)  # "checkpoint-100" < "checkpoint-20" as text
    _checkpoint(tmp_path, 110, complete=False)  # cut off by a crash
    (tmp_path / "checkpoint-200").write_text("a file, not a checkpoint")
    (tmp_path / "checkpoint-x").mkdir()
    assert find_latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-100"
    marker = json.loads((tmp_path / "checkpoint-100" / COMPLETE_MARKER).read_text())
    assert marker["step"] == 100 and marker["world_size"] == 2


def test_rotation_never_deletes_the_newest_complete_checkpoint(tmp_path):
    for step in (10, 20, 30):
        _checkpoint(tmp_path, step, complete=True)
    _checkpoint(tmp_path, 25, complete=False)  # abandoned, older than the newest complete: garbage
    _checkpoint(tmp_path, 40, complete=False)  # being written right now by the ranks: keep
    deleted = rotate_checkpoints(tmp_path, save_total_limit=2)
    assert sorted(p.name for p in deleted) == ["checkpoint-10", "checkpoint-25"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-20", "checkpoint-30", "checkpoint-40"]
    rotate_checkpoints(tmp_path, save_total_limit=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-30", "checkpoint-40"]
    only_incomplete = tmp_path / "b"
    _checkpoint(only_incomplete, 5, complete=False)
    assert rotate_checkpoints(only_incomplete, save_total_limit=1) == []  # nothing complete: delete nothing
    no_limit = tmp_path / "c"
    _checkpoint(no_limit, 5, complete=False)
    _checkpoint(no_limit, 10, complete=True)
    assert rotate_checkpoints(no_limit, save_total_limit=None) == []  # no limit: never delete


def test_resolve_resume_checkpoint(train_config, tmp_path):
    cfg = train_config()
    out = Path(cfg.output_dir)
    assert resolve_resume_checkpoint(cfg) is None  # fresh start
    _checkpoint(out, 10, complete=True)
    _checkpoint(out, 20, complete=False)
    assert resolve_resume_checkpoint(cfg) == str(out / "checkpoint-10")
    assert resolve_resume_checkpoint(train_config(auto_resume_from_checkpoints=False)) is None
    explicit = train_config(resume_from_checkpoint=str(out / "checkpoint-20"))
    assert resolve_resume_checkpoint(explicit) == str(out / "checkpoint-20")
    with pytest.raises(ConfigError, match="resume_from_checkpoint: no such folder"):
        resolve_resume_checkpoint(train_config(resume_from_checkpoint=str(tmp_path / "nope")))
    # An output_dir given for a checkpoint: the message names its latest checkpoint (the same check as validate's).
    with pytest.raises(
        ConfigError, match=r"is not a checkpoint \(no trainer_state.json\); it is an output_dir: use .*"
    ):
        resolve_resume_checkpoint(train_config(resume_from_checkpoint=str(out)))


def _args(tmp_path: Path) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")


def test_complete_checkpoint_callback_marks_and_rotates(tmp_path):
    args, control = _args(tmp_path), TrainerControl()
    callback = CompleteCheckpointCallback(save_total_limit=1)
    _checkpoint(tmp_path, 2, complete=False)  # e.g. a checkpoint of another tool, before the resume point
    _checkpoint(tmp_path, 3, complete=False)  # an interrupted save after it: would mix with the next save at 3
    callback.on_train_begin(args, TrainerState(global_step=2), control)
    assert (tmp_path / "checkpoint-2").exists() and not (tmp_path / "checkpoint-3").exists()
    for step in (5, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        callback.on_save(args, TrainerState(global_step=step), control)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint")] == ["checkpoint-10"]
    assert find_latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"


def test_stop_file_requests_save_and_stop(tmp_path):
    args, control = _args(tmp_path), TrainerControl()
    stop = StopFileCallback(tmp_path / "STOP")
    stop.on_step_end(args, TrainerState(global_step=3), control)
    assert not control.should_save and stop.stopped_at is None
    (tmp_path / "STOP").touch()
    stop.on_step_end(args, TrainerState(global_step=4), control)
    assert control.should_save and control.should_training_stop and stop.stopped_at == 4


def test_fault_injection_from_env(tmp_path, monkeypatch):
    assert FaultInjectionCallback.from_env() is None
    monkeypatch.setenv("HPCFT_FAULT_CRASH_AT_STEP", "3")
    monkeypatch.setenv("HPCFT_FAULT_RANK", "1")
    fault = FaultInjectionCallback.from_env()
    assert fault == FaultInjectionCallback(crash_at_step=3, rank=1)
    args, control = _args(tmp_path), TrainerControl()
    fault.on_step_end(args, TrainerState(global_step=3), control)  # this process is rank 0: not hit
    crash_here = FaultInjectionCallback(crash_at_step=3)
    crash_here.on_step_end(args, TrainerState(global_step=2), control)
    with pytest.raises(InjectedFault, match="HPCFT_FAULT_CRASH_AT_STEP=3"):
        crash_here.on_step_end(args, TrainerState(global_step=3), control)
    monkeypatch.setenv("HPCFT_STOP_FILE", str(tmp_path / "STOP"))
    assert StopFileCallback.from_env().stop_file == tmp_path / "STOP"


def test_rotation_keeps_the_best_checkpoint(tmp_path):
    for step in (2, 4, 6, 8):
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        mark_complete(path, step, 1, 1, 1)
    deleted = rotate_checkpoints(tmp_path, save_total_limit=1, best=str(tmp_path / "checkpoint-4"))
    assert sorted(p.name for p in deleted) == ["checkpoint-2", "checkpoint-6"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-8"]
