"""Memory per GPU of a fine-tuning job, from the model's shape alone: model states (weights, gradients, optimizer)
under DeepSpeed ZeRO stages and offload, and activations for one micro-batch.

Model states follow the accounting of DeepSpeed's own estimators (`estimate_zero2_model_states_mem_needs`,
`estimate_zero3_model_states_mem_needs`; tests/trainer/test_forecast_vs_libraries.py compares the two); activations
are counted tensor by tensor for a Llama-style layer. No torch: `hpcft plan` runs on the login node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpcft.core.model_size import ModelShape

GIB = 2**30
# CUDA context, NCCL buffers and allocator slack that no tensor accounts for.
RUNTIME_RESERVE_BYTES = 2 * GIB
# DeepSpeed's estimators multiply offloaded (CPU) memory by this for pinned-buffer and allocator overhead.
CPU_BUFFER_FACTOR = 1.5
# 4-bit NF4 with double quantisation: 4 bits + 8-bit absmax per block of 64 + fp32 scale per 256 blocks.
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)


@dataclass(frozen=True)
class Sharding:
    """How DeepSpeed spreads model states: the ZeRO stage, what is offloaded, over how many GPUs."""

    stage: int
    offload_optimizer: bool
    offload_params: bool
    gpus_per_node: int
    nodes: int

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    def describe(self) -> str:
        offload = [
            name for name, on in (("optimizer", self.offload_optimizer), ("parameters", self.offload_params)) if on
        ]
        return f"ZeRO-{self.stage}" + (f" with {' and '.join(offload)} offloaded to CPU" if offload else "")


def sharding_from_deepspeed(ds: dict[str, Any], gpus_per_node: int, nodes: int) -> Sharding:
    zero = ds.get("zero_optimization") or {}
    stage = int(zero.get("stage", 0))

    def on_cpu(key: str) -> bool:
        return str((zero.get(key) or {}).get("device", "none")) in ("cpu", "nvme")

    return Sharding(
        stage,
        on_cpu("offload_optimizer") and stage >= 1,
        on_cpu("offload_param") and stage == 3,
        max(1, gpus_per_node),
        nodes,
    )


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter of each model state. Mixed precision keeps fp32 master weights and fp32 gradient
    partitions next to the 16-bit copies, as DeepSpeed's estimator counts them."""

    weights: int = 2
    grads16: int = 2
    grads32: int = 4
    master: int = 4
    adam: int = 8  # momentum and variance, fp32

    @classmethod
    def full_fp32(cls) -> Precision:
        return cls(weights=4, grads16=4, grads32=0, master=0, adam=8)


@dataclass
class ModelStates:
    """Model-state bytes per GPU, and what offloading puts in each node's CPU memory."""

    weights: float = 0.0
    gradients: float = 0.0
    optimizer: float = 0.0
    gathered: float = 0.0  # ZeRO-3: the largest layer's full 16-bit parameters and gradients while in use
    cpu_per_node: float = 0.0

    @property
    def gpu_total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.gathered


def model_states(
    trainable: int,
    frozen: int,
    largest_layer: int,
    sharding: Sharding,
    precision: Precision = Precision(),
    frozen_bytes: float | None = None,
) -> ModelStates:
    """Bytes per GPU for weights, gradients and optimizer states of `trainable` parameters (plus the weights of
    `frozen` ones: a LoRA/QLoRA base, `frozen_bytes` each), under the given ZeRO stage and offload."""
    n, s = sharding.gpus, sharding.stage
    frozen_bytes = precision.weights if frozen_bytes is None else frozen_bytes
    states = ModelStates()
    cpu_per_gpu = 0.0
    # Weights: replicated below ZeRO-3, partitioned by ZeRO-3 (and then possibly offloaded).
    weight_bytes = trainable * precision.weights + frozen * frozen_bytes
    weights = weight_bytes / n if s == 3 else weight_bytes
    if sharding.offload_params:
        cpu_per_gpu += weights
    else:
        states.weights = weights
    # Gradients: 16-bit (full below ZeRO-2, partitioned by ZeRO-2; ZeRO-3 reduces them in buckets) and the fp32
    # partition the optimizer steps on.
    grads16 = {0: trainable, 1: trainable, 2: trainable / n}.get(s, 0) * precision.grads16
    grads32 = (trainable if s == 0 else trainable / n) * precision.grads32
    optimizer = (trainable if s == 0 else trainable / n) * (precision.master + precision.adam)
    if sharding.offload_optimizer:
        # Gradient partitions are copied to the CPU, where the optimizer steps; ZeRO-1/2 keep full 16-bit grads.
        cpu_per_gpu += grads32 + optimizer + (grads16 if s == 2 else 0)
        states.gradients = grads16 if s < 2 else 0
    else:
        states.gradients = grads16 + grads32
        states.optimizer = optimizer
    if s == 3:
        # A frozen base (LoRA) gathers only the weights of its largest layer; full fine-tuning also its gradients.
        per_param = precision.weights + (0 if frozen else precision.grads16)
        states.gathered = largest_layer * per_param
    states.cpu_per_node = cpu_per_gpu * sharding.gpus_per_node * CPU_BUFFER_FACTOR
    return states


@dataclass(frozen=True)
class Activations:
    """Activation bytes per GPU for one micro-batch: with and without gradient checkpointing, and the logits."""

    full: float  # every layer keeps what its backward needs
    checkpointed: float  # each layer keeps its input; one layer is recomputed at a time
    logits: float  # output logits and the fp32 loss computation


def activation_bytes(
    shape: ModelShape, micro_batch: int, seq_len: int, attention: str, bytes_per_value: int = 2
) -> Activations:
    """Tensors a Llama-style layer saves for backward, per token: the two norm inputs and outputs, q/k/v (before
    and after rotary embedding), the attention output, and the MLP's intermediate tensors (gate, up, activation,
    product; two without a gate). Eager attention also keeps the b x heads x s x s probabilities; sdpa and flash
    attention keep only a log-sum-exp per row."""
    tokens = micro_batch * seq_len
    q, kv = shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim
    mlp = (4 if shape.gated_mlp else 2) * shape.intermediate_size
    per_token = 4 * shape.hidden_size + 3 * q + 4 * kv + mlp
    per_layer = tokens * per_token * bytes_per_value
    if attention == "eager":
        per_layer += micro_batch * shape.num_heads * seq_len * seq_len * bytes_per_value * 2
    # Logits in 16-bit, their fp32 copy for the loss, and the fp32 log-softmax cross-entropy saves for backward.
    logits = tokens * shape.vocab_size * (bytes_per_value + 4 + 4)
    full = shape.num_layers * per_layer
    checkpointed = shape.num_layers * tokens * shape.hidden_size * bytes_per_value + per_layer
    return Activations(full, checkpointed, logits)
