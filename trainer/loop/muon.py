"""`optimizer: muon`: torch's Muon for the hidden weight matrices, AdamW for everything else (embeddings, the
output head, norms, biases), as the Muon authors recommend and as axolotl splits them.

Both run as one torch Optimizer (their param groups side by side), so the Trainer's schedule, gradient clipping,
checkpoints and resumes see one optimizer. The run is plain DDP (core/features/training_loop.py): Muon orthogonalises
each matrix's whole update, which ZeRO's flattened shards cannot give it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from transformers import TrainingArguments

from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")


def split_parameters(model: torch.nn.Module) -> tuple[list[tuple[str, torch.nn.Parameter]], list[tuple[str, Any]]]:
    """(Muon's, AdamW's) trainable parameters: 2-D weights of the hidden layers go to Muon; the input and output
    embeddings (and any tied copy) and every 0-/1-D parameter go to AdamW."""
    embeddings = set()
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None and getattr(module, "weight", None) is not None:
            embeddings.add(id(module.weight))
    muon, adamw = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim == 2 and id(param) not in embeddings and "lm_head" not in name and "embed" not in name:
            muon.append((name, param))
        else:
            adamw.append((name, param))
    return muon, adamw


class JoinedState(Mapping):
    """The per-parameter state of several optimizers as one read-only mapping (a parameter belongs to one of
    them). Not a ChainMap: the inner states are defaultdicts, which would answer {} for the other's parameters."""

    def __init__(self, states: list[Mapping]):
        self.states = states

    def __getitem__(self, param: torch.Tensor) -> Any:
        for state in self.states:
            if param in state:
                return state[param]
        raise KeyError(param)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for state in self.states:
            yield from state

    def __len__(self) -> int:
        return sum(len(state) for state in self.states)


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer over two: its param_groups are Muon's then AdamW's (the same dicts, so a scheduler setting
    `lr` on them sets it for both), step() steps both, the state dict holds both."""

    def __init__(self, muon: torch.optim.Optimizer | None, adamw: torch.optim.Optimizer | None):
        self.inner = [opt for opt in (muon, adamw) if opt is not None]
        params = [p for opt in self.inner for group in opt.param_groups for p in group["params"]]
        super().__init__(params, {"lr": self.inner[0].defaults["lr"]})
        # Replace the base class's single group by the inner optimizers' own (shared) groups and state.
        self.param_groups = [group for opt in self.inner for group in opt.param_groups]
        self.state = JoinedState([opt.state for opt in self.inner])  # type: ignore[assignment]
        self.muon, self.adamw = muon, adamw

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.inner:
            opt.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"inner": [opt.state_dict() for opt in self.inner]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for opt, saved in zip(self.inner, state_dict["inner"], strict=True):
            opt.load_state_dict(saved)
        self.param_groups = [group for opt in self.inner for group in opt.param_groups]
        self.state = JoinedState([opt.state for opt in self.inner])  # type: ignore[assignment]


def build_muon(model: torch.nn.Module, args: TrainingArguments) -> MuonWithAdamW:
    """Muon and AdamW at the same learning rate and weight decay (axolotl's single learning_rate); AdamW with the
    config's Adam betas and epsilon, and no decay on biases and norms."""
    muon_params, adamw_params = split_parameters(model)
    if not muon_params:
        raise ConfigError(
            "optimizer: muon found no 2-D hidden weight matrix to train (only embeddings, head, norms or biases); "
            "use adamw_torch"
        )
    muon = torch.optim.Muon(
        [p for _, p in muon_params], lr=args.learning_rate, weight_decay=args.weight_decay, momentum=0.95
    )
    adamw = None
    if adamw_params:
        # As the Trainer's own AdamW: no weight decay on biases and norm gains (the 0-/1-D tensors).
        decayed = [p for _, p in adamw_params if p.ndim >= 2]
        kept = [p for _, p in adamw_params if p.ndim < 2]
        groups = [
            {"params": params, "weight_decay": decay}
            for params, decay in ((decayed, args.weight_decay), (kept, 0.0))
            if params
        ]
        adamw = torch.optim.AdamW(
            groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon
        )
    log.info(
        "optimizer: Muon for %d weight matrices (%d values), AdamW for %d other tensors (%d values)",
        len(muon_params),
        sum(p.numel() for _, p in muon_params),
        len(adamw_params),
        sum(p.numel() for _, p in adamw_params),
    )
    return MuonWithAdamW(muon, adamw)


def muon_optimizer(
    cfg: TrainConfig, args: TrainingArguments
) -> tuple[Callable[[], Callable[..., torch.optim.Optimizer]], dict[str, Any]] | None:
    """The Trainer's `optimizer_cls_and_kwargs` for optimizer: muon, or None for any other optimizer."""
    if cfg.optimizer != "muon":
        return None
    if args.deepspeed or args.fsdp:
        # The launcher never writes this (it runs Muon as plain DDP); a train.yaml edited by hand can.
        raise ConfigError(
            "optimizer: muon needs whole weight matrices; remove deepspeed/fsdp from train.yaml (hpcft runs Muon "
            "with plain DDP)"
        )

    def build(opt_model: torch.nn.Module, **_: Any) -> torch.optim.Optimizer:
        return build_muon(opt_model, args)

    # transformers calls a factory with no arguments, then the result with (model, **kwargs).
    return (lambda: build), {}
