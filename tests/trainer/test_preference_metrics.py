"""Step and eval lines of preference tuning carry TRL's reward metrics under readable names."""

from __future__ import annotations

import json

from hpcft.trainer.reporting.metrics import format_metrics_line, preference_values

TRL_LOGS = {
    "loss": 0.5,
    "rewards/chosen": 0.2,
    "rewards/rejected": -0.3,
    "rewards/accuracies": 0.75,
    "rewards/margins": 0.5,
    "logps/chosen": -12.0,
    "eval_rewards/accuracies": 1.0,
    "eval_rewards/margins": 0.9,
}


def test_step_line_appends_the_rewards_after_the_usual_keys():
    line = json.loads(format_metrics_line(3, 0.5, 1e-3, 0.7, None, 0.1, preference_values(TRL_LOGS)))
    assert list(line) == [
        "step",
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "epoch",
        "rewards_chosen",
        "rewards_rejected",
        "reward_accuracy",
        "reward_margin",
    ]
    assert (line["reward_accuracy"], line["reward_margin"], line["tokens_per_s"]) == (0.75, 0.5, None)


def test_eval_values_keep_their_prefix_and_sft_logs_add_nothing():
    assert preference_values(TRL_LOGS, "eval_") == {"eval_reward_accuracy": 1.0, "eval_reward_margin": 0.9}
    assert preference_values({"loss": 1.0, "grad_norm": 0.1}) == {}
    assert list(json.loads(format_metrics_line(1, 1.0, 1e-3, 0.1, 5.0, 0.0))) == [
        "step",
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "epoch",
    ]
