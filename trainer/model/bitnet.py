"""use_onebitllms: BitNet b1.58 quantisation-aware training with the onebitllms package's linear layers.

onebitllms' layers quantise weights (ternary) and activations (8-bit) in Triton kernels that run on CUDA GPUs
only. Elsewhere hpcft trains the model's ordinary linear layers and says so: the run works, but it is not
1.58-bit quantisation-aware training.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

log = logging.getLogger("hpcft.trainer")


def bitnet_linear_layers(model: torch.nn.Module, cuda: bool | None = None, installed: bool | None = None):
    """The model with every linear layer except the output head replaced by onebitllms' BitNetLinear (weights
    kept), or unchanged with a warning where those layers cannot run."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if installed is None:
        installed = all(importlib.util.find_spec(name) is not None for name in ("onebitllms", "triton"))
    if not cuda:
        reason = "there is no CUDA GPU"
    elif not installed:
        reason = "the onebitllms package is not installed (pip install 'hpcft[gpu]', or use the hpcft image)"
    else:
        from onebitllms import replace_linear_with_bitnet_linear

        log.info("use_onebitllms: linear layers replaced by onebitllms' BitNetLinear")
        default_dtype = torch.get_default_dtype()
        try:
            return replace_linear_with_bitnet_linear(model)
        finally:  # it sets torch's default dtype to the model's and leaves it so
            torch.set_default_dtype(default_dtype)
    log.warning(
        "use_onebitllms: onebitllms' BitNet layers need a CUDA GPU and the onebitllms package, but %s; training "
        "the model's ordinary linear layers (not 1.58-bit quantisation-aware training)",
        reason,
    )
    return model
