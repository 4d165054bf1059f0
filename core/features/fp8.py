"""axolotl's `fp8` and `fp8_enable_fsdp_float8_all_gather`, checked on the login node (the trainer side is
trainer/model/fp8.py): FP8 mixed precision with torchao's float8 linear layers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig

# torch's float8 matrix multiply runs on CUDA GPUs from Ada/Hopper on (sm_89: L40S; sm_90: H100, GH200) and on CPUs.
FP8_MIN_CAPABILITY = (8, 9)


def check_fp8(cfg: TrainConfig) -> None:
    if cfg.fp8_enable_fsdp_float8_all_gather:
        if not cfg.fp8:
            raise ValueError("fp8_enable_fsdp_float8_all_gather applies to fp8 training; set fp8: true or remove it")
        if not (cfg.uses_fsdp and cfg.fsdp_version == 2):
            raise ValueError(
                "fp8_enable_fsdp_float8_all_gather needs FSDP2 (fsdp_version: 2 with fsdp_config); remove it or "
                "set fsdp_version: 2"
            )
    if cfg.fp8 and (cfg.load_in_4bit or cfg.load_in_8bit):
        raise ValueError(
            "fp8 trains full-precision weights with float8 matrix multiplies; it cannot be combined with "
            "load_in_4bit/load_in_8bit (remove them)"
        )
    if cfg.fp8 and cfg.fp16:
        raise ValueError("fp8 keeps its weights in bf16 or fp32 between float8 matrix multiplies; use bf16, not fp16")


def fp8_notes(cfg: TrainConfig, gpus_per_node: int) -> list[str]:
    """What `hpcft validate` tells about an fp8 run on this profile's nodes."""
    if not cfg.fp8:
        return []
    if gpus_per_node == 0:
        return [
            "fp8: this profile has no GPUs; the job trains with torchao's float8 linear layers on CPU (the same "
            "float8 numerics as on a GPU, without its speed-up)"
        ]
    # GPUs older than sm_89 are only known on the node: the trainer warns there.
    if not cfg.torch_compile:
        return [
            "fp8: float8 layers are fast only when compiled (torch_compile: true), as axolotl recommends; without "
            "it they can be slower than bf16"
        ]
    return []
