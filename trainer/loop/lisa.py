"""LISA (layerwise importance sampling, arXiv 2403.17919): a full fine-tune that trains only `lisa_n_layers`
randomly chosen decoder layers at a time and draws new ones every `lisa_step_interval` steps; the embeddings, the
output layer and the final norm always train.

The draw of each interval comes from the seed and the interval's number, so every rank freezes the same layers and
a resumed run continues with the layers the interrupted one had (axolotl draws from the global RNG at each switch,
and a resume between switches trains every layer until the next one). The optimizer was built with every layer
trainable; a frozen layer gets no gradient, and torch's optimizers skip a weight without one (launcher/
training_loop.py: LISA runs with DDP, not DeepSpeed, for that reason).
"""

from __future__ import annotations

import logging
import random
from functools import reduce

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")


def decoder_layers(model: torch.nn.Module, attribute: str) -> torch.nn.ModuleList:
    """The model's list of decoder layers at `lisa_layers_attribute` (e.g. model.layers), through a PEFT or DDP
    wrapper if there is one."""
    for candidate in (model, getattr(model, "module", None)):
        try:
            layers = reduce(getattr, attribute.split("."), candidate)
        except AttributeError:
            continue
        if isinstance(layers, torch.nn.ModuleList):
            return layers
    raise ConfigError(
        f"lisa_layers_attribute: {attribute} is not a list of layers of {type(model).__name__}; name the "
        "attribute that holds the decoder layers (model.layers for Llama, Mistral, Qwen, Gemma)"
    )


def chosen_layers(seed: int, interval: int, total: int, count: int) -> list[int]:
    """The layers that train during interval number `interval` (sorted)."""
    return sorted(random.Random(seed * 1_000_003 + interval).sample(range(total), count))


class LisaCallback(TrainerCallback):
    """Freezes every decoder layer but the interval's chosen ones at the start of each interval."""

    def __init__(self, n_layers: int, step_interval: int, attribute: str, seed: int):
        self.n_layers, self.step_interval, self.attribute, self.seed = n_layers, step_interval, attribute, seed
        self.active: list[int] = []
        self.interval: int | None = None  # number of the interval whose layers train now
        self.history: list[tuple[int, list[int]]] = []  # (step, layers) of each switch, for logs and tests

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> LisaCallback | None:
        if not cfg.lisa_n_layers:
            return None
        attribute = cfg.lisa_layers_attribute or "model.layers"
        return cls(cfg.lisa_n_layers, cfg.lisa_step_interval or 1, attribute, cfg.seed)

    def switch(self, model: torch.nn.Module, step: int) -> None:
        layers = decoder_layers(model, self.attribute)
        if self.n_layers >= len(layers) and self.interval is None:
            log.warning(
                "lisa_n_layers: %d, and the model has %d layers: every layer trains (a full fine-tune)",
                self.n_layers,
                len(layers),
            )
        self.interval = step // self.step_interval
        self.active = chosen_layers(self.seed, self.interval, len(layers), min(self.n_layers, len(layers)))
        for index, layer in enumerate(layers):
            for param in layer.parameters():
                param.requires_grad_(index in self.active)
        self.history.append((step, self.active))
        log.info("lisa: step %d: training layers %s of %d", step, self.active, len(layers))

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ):
        self.switch(model, state.global_step)  # also after a resume between two switches

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ):
        if state.global_step // self.step_interval != self.interval:
            self.switch(model, state.global_step)
