"""ReLoRA (arXiv 2307.05695): LoRA whose adapter is merged into the base weights and started afresh every
`jagged_restart_steps` steps, so that a run of low-rank updates adds up to a high-rank one. At each restart the
adapter's optimizer state is pruned (`relora_prune_method`, `relora_prune_ratio`) and the learning rate warms up
again (trainer/loop/schedule_shape.py's jagged restarts).

The merged base weights are part of the training state: each checkpoint holds them (relora_base.safetensors,
written before the checkpoint is marked complete), a resume loads them back, and the final model is the base with
every restart merged in (not an adapter, which alone would miss the earlier restarts). ReLoRA runs with plain DDP
(core/features/training_loop.py): the pruning needs the optimizer's per-weight state, which ZeRO flattens. A 4-bit base
is dequantised, added to and requantised at each restart, so each restart adds one rounding of NF4 (axolotl keeps
a full-precision copy on disk instead; hpcft keeps memory and disk as QLoRA has them).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from peft.tuners.lora import LoraLayer
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.errors import ConfigError
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

BASE_WEIGHTS_FILE = "relora_base.safetensors"
# Optimizer state that follows the gradient (Adam's moments; bitsandbytes' 8-bit optimizers call them state1/2).
STATE_KEYS = ("exp_avg", "exp_avg_sq", "state1", "state2")


def lora_layers(model: torch.nn.Module) -> dict[str, LoraLayer]:
    return {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def base_weight(layer: LoraLayer) -> torch.Tensor:
    """The layer's base weight in full precision (4-bit weights dequantised)."""
    base = layer.get_base_layer()
    if getattr(getattr(base.weight, "quant_state", None), "packing_format_for_cpu", False):
        # bitsandbytes repacks 4-bit weights for its CPU kernels at the first inference forward; saving the layer's
        # state puts them back in the plain layout that dequantising reads.
        base.state_dict()
    weight = base.weight
    if getattr(weight, "quant_state", None) is not None:
        from peft.utils.integrations import dequantize_bnb_weight

        return dequantize_bnb_weight(weight, state=weight.quant_state)
    return weight.detach()


@torch.no_grad()
def set_base_weight(layer: LoraLayer, value: torch.Tensor) -> None:
    """Replace the layer's base weight (requantised to 4 bits if it is a 4-bit weight), as peft's merge does."""
    base = layer.get_base_layer()
    weight = base.weight
    if getattr(weight, "quant_state", None) is None:
        weight.copy_(value.to(weight.dtype))
        return
    import bitsandbytes as bnb

    kwargs = {k: v for k, v in weight.__dict__.items() if not k.startswith("_") and k != "data"}
    kwargs.update(bnb_quantized=False, requires_grad=False)
    base.weight = bnb.nn.Params4bit(value.to("cpu"), **kwargs).to(weight.device)


@torch.no_grad()
def prune_(tensor: torch.Tensor, method: str, ratio: float, generator: torch.Generator) -> None:
    """Zero `ratio` of a state tensor's values in place: the smallest by magnitude, or a random share."""
    if not tensor.is_floating_point():
        tensor.zero_()  # quantised state (8-bit codes) cannot be pruned value by value: reset it whole
        return
    if method == "magnitude":
        threshold = torch.quantile(tensor.abs().flatten().float(), ratio)
        tensor.mul_((tensor.abs() > threshold).to(tensor.dtype))
    else:
        keep = torch.rand(tensor.shape, generator=generator, device="cpu").to(tensor.device) > ratio
        tensor.mul_(keep.to(tensor.dtype))


class ReLoraCallback(TrainerCallback):
    """Merge-and-restart at every jagged_restart_steps; keeps the merged base weights in each checkpoint."""

    def __init__(self, cfg: TrainConfig):
        self.restart_steps = int(cfg.jagged_restart_steps or 0)
        self.method = cfg.relora_prune_method or "magnitude"
        default_ratio = 0.999 if self.method == "reset" else 0.9
        self.ratio = cfg.relora_prune_ratio if cfg.relora_prune_ratio is not None else default_ratio
        self.seed = cfg.seed
        self.resume_from = cfg.resume_from_checkpoint
        self.restarts = 0

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> ReLoraCallback | None:
        return cls(cfg) if cfg.relora else None

    @torch.no_grad()
    def restart(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        """Merge every adapter into its base weight, start the adapter afresh, prune its optimizer state."""
        self.restarts = step // self.restart_steps
        # Every rank draws the same new adapter and the same pruning mask: seeded by the restart, not by the
        # global RNG, whose state the ranks' data and dropout may have moved apart.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + self.restarts)
            generator = torch.Generator().manual_seed(self.seed + self.restarts)
            for layer in lora_layers(model).values():
                merged = base_weight(layer) + sum(layer.get_delta_weight(a) for a in layer.active_adapters)
                set_base_weight(layer, merged)
                for adapter in layer.lora_A:
                    layer.reset_lora_parameters(adapter, True)  # A drawn afresh, B = 0: the adapter adds nothing
            trainable = [p for p in model.parameters() if p.requires_grad]
            zeroed = total = 0
            for param in trainable:
                for key in STATE_KEYS:
                    value = optimizer.state.get(param, {}).get(key)
                    if torch.is_tensor(value):
                        prune_(value, self.method, self.ratio, generator)
                        zeroed += int((value == 0).sum())
                        total += value.numel()
        log.info(
            "relora: step %d: restart %d: adapter merged into the base weights and started afresh; %.1f%% of its "
            "optimizer state zeroed (%s)",
            step,
            self.restarts,
            100 * zeroed / max(total, 1),
            self.method,
        )

    def on_step_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model=None,
        optimizer=None,
        **kwargs,
    ):
        step = state.global_step
        if step > 0 and step % self.restart_steps == 0 and step // self.restart_steps != self.restarts:
            self.restart(model, optimizer, step)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs):
        # Before CompleteCheckpointCallback marks the checkpoint complete (train.py lists this callback first).
        if self.restarts and state.is_world_process_zero:
            from safetensors.torch import save_file

            weights = {name: base_weight(layer).contiguous().cpu() for name, layer in lora_layers(model).items()}
            save_file(weights, str(Path(args.output_dir) / f"checkpoint-{state.global_step}" / BASE_WEIGHTS_FILE))

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs
    ):
        self.restarts = state.global_step // self.restart_steps
        if not self.restarts:
            return
        checkpoint = Path(self.resume_from or Path(args.output_dir) / f"checkpoint-{state.global_step}")
        path = checkpoint / BASE_WEIGHTS_FILE
        if not path.is_file():
            raise ConfigError(
                f"relora: resuming at step {state.global_step} after {self.restarts} restart(s), but {checkpoint} "
                f"has no {BASE_WEIGHTS_FILE} (the merged base weights): it was not saved by hpcft's ReLoRA"
            )
        from safetensors.torch import load_file

        saved = load_file(str(path))
        for name, layer in lora_layers(model).items():
            set_base_weight(layer, saved[name].to(layer.get_base_layer().weight.device))
        log.info("relora: loaded the merged base weights of %d layers from %s", len(saved), path)

    def on_log(self, args, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            logs["num_lora_restarts"] = self.restarts


def merge_for_final_save(trainer) -> None:
    """The final model of a ReLoRA run: every restart and the current adapter merged into the base weights."""
    trainer.model = trainer.model.merge_and_unload()
