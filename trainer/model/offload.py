"""`gradient_checkpointing: offload` or `activation_offloading`: checkpointing plus activation offloading. The
tensors autograd keeps for the backward pass (with checkpointing: mainly each block's input) wait in CPU memory
instead of GPU memory.

The same design as torchtune's activation offloading: saved-tensor hooks (a public autograd API) active during the
model's forward pass, entered and left by module hooks, so no library code is replaced.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")


def offloads_activations(cfg: TrainConfig) -> bool:
    """Whether the run offloads activations. axolotl's `activation_offloading` modes (true, legacy: without CUDA
    streams, hidden_states: the checkpointed layers' inputs, disk) all become hpcft's one offload to pinned CPU
    memory, which with checkpointing holds mainly each layer's input, like `hidden_states`."""
    wanted = bool(cfg.activation_offloading) or cfg.gradient_checkpointing in ("offload", "offload_disk")
    if cfg.activation_offloading == "disk" or cfg.gradient_checkpointing == "offload_disk":
        log.warning("activation offloading to disk: offloading the activations to CPU memory, not to disk")
    if wanted and not torch.cuda.is_available():
        log.warning("activation offloading: no CUDA GPU, so nothing to offload: training with gradient checkpointing")
    return wanted


class ActivationOffload:
    """Moves every CUDA tensor autograd saves in the model's forward pass to (pinned) CPU memory, and back when the
    backward pass unpacks it. CPU tensors stay where they are (a CPU run has nothing to offload)."""

    def __init__(self, model: torch.nn.Module):
        self.packed = 0  # tensors seen, for tests and logs
        self.offloaded_bytes = 0
        self._contexts: list[Any] = []
        model.register_forward_pre_hook(self._enter)
        model.register_forward_hook(self._leave, always_call=True)

    def _pack(self, tensor: torch.Tensor) -> tuple[torch.device | None, torch.Tensor]:
        self.packed += 1
        if tensor.device.type != "cuda":
            return None, tensor
        self.offloaded_bytes += tensor.numel() * tensor.element_size()
        host = torch.empty(tensor.size(), dtype=tensor.dtype, layout=tensor.layout, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        return tensor.device, host

    @staticmethod
    def _unpack(packed: tuple[torch.device | None, torch.Tensor]) -> torch.Tensor:
        device, tensor = packed
        return tensor if device is None else tensor.to(device, non_blocking=True)

    def _enter(self, module: torch.nn.Module, args: Any) -> None:
        context = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        context.__enter__()
        self._contexts.append(context)

    def _leave(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self._contexts:
            self._contexts.pop().__exit__(None, None, None)
