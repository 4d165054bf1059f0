"""The table of lr_scheduler_kwargs (core/checks/scheduler_kwargs.py) against transformers' real schedules."""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION, SchedulerType, get_scheduler

from hpcft.core.checks.scheduler_kwargs import SCHEDULER_KWARGS
from hpcft.core.schema import TrainConfig
from hpcft.trainer.loop.optim import scheduler_arguments

# What Trainer passes itself: never a user's kwarg.
PASSED_BY_TRAINER = {"optimizer", "num_warmup_steps", "num_training_steps"}
# Schedules get_scheduler calls without scheduler_specific_kwargs.
CALLED_WITHOUT_KWARGS = {"constant", "constant_with_warmup"}


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


@pytest.mark.parametrize("name", sorted(SCHEDULER_KWARGS))
def test_table_is_the_schedule_functions_signature(name):
    function = TYPE_TO_SCHEDULER_FUNCTION[SchedulerType(name)]
    taken = set(inspect.signature(function).parameters) - PASSED_BY_TRAINER
    expected = set() if name in CALLED_WITHOUT_KWARGS else taken
    assert set(SCHEDULER_KWARGS[name]) == expected


@pytest.mark.parametrize("name", sorted(CALLED_WITHOUT_KWARGS))
def test_constant_schedules_drop_kwargs_silently(name):
    """Why the table gives them none: transformers would ignore anything given (not even a TypeError)."""
    scheduler = get_scheduler(
        name, _optimizer(), num_warmup_steps=2, num_training_steps=10, scheduler_specific_kwargs={"no_such": 1}
    )
    assert scheduler.get_last_lr() == [0.0 if name == "constant_with_warmup" else 0.1]


@pytest.mark.parametrize("name", sorted(set(SCHEDULER_KWARGS) - CALLED_WITHOUT_KWARGS))
def test_a_kwarg_outside_the_table_fails_in_transformers(name):
    with pytest.raises(TypeError):
        get_scheduler(
            name, _optimizer(), num_warmup_steps=2, num_training_steps=10, scheduler_specific_kwargs={"eta_min": 0.0}
        )


def test_accepted_kwargs_build_the_real_scheduler(tmp_path):
    """A config the launcher accepts builds its scheduler in transformers (cosine with num_cycles, and the floor)."""
    data = {
        "base_model": "m",
        "datasets": [{"path": "d", "type": "completion"}],
        "lr_scheduler": "cosine",
        "cosine_min_lr_ratio": 0.1,
        "lr_scheduler_kwargs": {"num_cycles": 0.5},
    }
    args = scheduler_arguments(TrainConfig.model_validate(data))
    scheduler = get_scheduler(
        args["lr_scheduler_type"],
        _optimizer(),
        num_warmup_steps=0,
        num_training_steps=10,
        scheduler_specific_kwargs=args["lr_scheduler_kwargs"],
    )
    for _ in range(10):
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        ({"lr_scheduler_kwargs": {"eta_min": 1e-7}}, "cosine_min_lr_ratio"),
        ({"lr_scheduler_kwargs": {"min_lr": 1e-7}}, "does not take 'min_lr'"),
        ({"lr_scheduler": "constant", "lr_scheduler_kwargs": {"num_cycles": 1}}, "takes no lr_scheduler_kwargs"),
        ({"cosine_min_lr_ratio": 0.1, "lr_scheduler_kwargs": {"min_lr": 1e-7}}, "keep one"),
        ({"lr_scheduler_kwargs": {"num_cycles": "half"}}, "must be a number"),
        ({"lr_scheduler_kwargs": {"num_cycles": float("inf")}}, "finite"),
    ],
)
def test_schema_refuses_what_transformers_would(extra, expect):
    data = {"base_model": "m", "datasets": [{"path": "d", "type": "completion"}], **extra}
    with pytest.raises(ValueError, match="lr_scheduler_kwargs") as caught:
        TrainConfig.model_validate(data)
    assert expect in str(caught.value)
