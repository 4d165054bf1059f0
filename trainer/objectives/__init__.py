"""Training objectives as objects: sft, preference (rl:), reward / process reward, diffusion, multimodal (a
vision-language model). Each says how its data rows are tokenized, which trainer and arguments train it, and what
it needs before the model loads; prepare and build_trainer ask the config's objective instead of branching on it.

May import hpcft.core and hpcft.trainer; the trainer classes (TRL) are imported only when a trainer is built.
"""

from __future__ import annotations

from hpcft.core.schema import TrainConfig
from hpcft.trainer.objectives.base import Objective
from hpcft.trainer.objectives.diffusion import DIFFUSION
from hpcft.trainer.objectives.multimodal import MULTIMODAL
from hpcft.trainer.objectives.preference import PREFERENCE
from hpcft.trainer.objectives.reward import REWARD
from hpcft.trainer.objectives.sft import SFT

OBJECTIVES: dict[str, Objective] = {o.name: o for o in (SFT, PREFERENCE, REWARD, DIFFUSION, MULTIMODAL)}


def objective_for(cfg: TrainConfig) -> Objective:
    """The config's objective (the schema allows one: rl, reward_model/process_reward_model and diffusion exclude
    each other)."""
    for objective in (PREFERENCE, REWARD, DIFFUSION, MULTIMODAL):
        if objective.applies(cfg):
            return objective
    return SFT


__all__ = ["OBJECTIVES", "Objective", "objective_for"]
