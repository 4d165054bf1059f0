"""axolotl's `qat:` block (quantization-aware training with torchao), checked on the login node.

QAT trains full-precision weights through fake quantisation (quantise, then dequantise, in the forward pass) so
the model learns to live with the rounding of the format it will be served in; at the end the fake quantisers are
removed and the saved model is an ordinary full-precision one, ready for post-training quantisation to the same
format. The trainer side is trainer/model/qat.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig

QatDtype = Literal["int4", "int8", "float8_e4m3fn", "nvfp4", "mxfp4"]
QAT_DTYPES: tuple[str, ...] = ("int4", "int8", "float8_e4m3fn", "nvfp4", "mxfp4")
_DTYPE_SPELLINGS = {"fp8": "float8_e4m3fn", "float8": "float8_e4m3fn"}

# (activation, weight) pairs torchao can fake-quantise; None: weights only. The same pairs axolotl accepts.
SUPPORTED_SCHEMES: dict[tuple[str | None, str], str] = {
    (None, "int4"): "int4 weights (per group)",
    ("int8", "int4"): "int8 dynamic activations (per token), int4 weights (per group)",
    ("float8_e4m3fn", "float8_e4m3fn"): "float8 activations and weights",
    ("float8_e4m3fn", "int4"): "float8 activations, int4 weights (per group)",
    ("nvfp4", "nvfp4"): "NVFP4 activations and weights (blocks of 16)",  # torchao has no weight-only NVFP4 QAT
    # axolotl fake-quantises activations too for mxfp4 weights, whether activation_dtype says so or not
    **{(act, "mxfp4"): "MXFP4 activations and weights (blocks of 32)" for act in (None, "mxfp4")},
}
# Formats with a fixed block size: group_size must be it.
FIXED_GROUP_SIZE = {"nvfp4": 16, "mxfp4": 32}
# Formats torchao fake-quantises only in its own layer types, which have no switch to turn it off.
NO_EMBEDDING_OR_SWITCH = ("nvfp4", "mxfp4")


class QatConfig(BaseModel):
    """`qat:` (axolotl semantics)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    activation_dtype: QatDtype | None = None
    """Fake-quantise activations to this format: int8, float8_e4m3fn (`fp8`), nvfp4, mxfp4; unset: weights only."""
    weight_dtype: QatDtype = "int8"
    """Fake-quantise the weights of linear layers to this format: int4, int8, float8_e4m3fn (`fp8`), nvfp4, mxfp4."""
    quantize_embedding: bool | None = False
    """Fake-quantise the input embeddings' weights too (weights only)."""
    group_size: int | None = Field(32, ge=1)
    """Elements per quantisation group of the weights (nvfp4: 16, mxfp4: 32)."""
    fake_quant_after_n_steps: int | None = Field(None, ge=0)
    """Train the first N steps without fake quantisation, then turn it on."""

    @field_validator("activation_dtype", "weight_dtype", mode="before")
    @classmethod
    def _spellings(cls, value: Any) -> Any:
        if isinstance(value, str) and value in _DTYPE_SPELLINGS:
            return _DTYPE_SPELLINGS[value]
        if value is not None and value not in QAT_DTYPES:
            raise ValueError(f"'{value}' is not a QAT format; use one of {', '.join(QAT_DTYPES)} (or fp8)")
        return value

    @property
    def scheme(self) -> str:
        return SUPPORTED_SCHEMES[(self.activation_dtype, self.weight_dtype)]

    @property
    def effective_group_size(self) -> int | None:
        """The group size the quantisers use (the fixed block of nvfp4/mxfp4; None: float8 has no groups)."""
        if self.weight_dtype in FIXED_GROUP_SIZE:
            return FIXED_GROUP_SIZE[self.weight_dtype]
        if self.weight_dtype == "float8_e4m3fn":
            return None
        return self.group_size


def check_qat(cfg: TrainConfig) -> None:
    """The `qat:` settings must name a scheme torchao can fake-quantise and fit the rest of the config."""
    qat = cfg.qat
    if qat is None:
        return
    pair = (qat.activation_dtype, qat.weight_dtype)
    if pair not in SUPPORTED_SCHEMES:
        choices = "; ".join(f"{a or 'no activation_dtype'} + {w}" for a, w in SUPPORTED_SCHEMES)
        raise ValueError(
            f"qat: activation_dtype {qat.activation_dtype} with weight_dtype {qat.weight_dtype} is not a scheme "
            f"torchao can fake-quantise; use one of: {choices}"
        )
    fixed = FIXED_GROUP_SIZE.get(qat.weight_dtype)
    if fixed and qat.group_size is not None and qat.group_size != fixed:
        raise ValueError(f"qat.group_size: {qat.weight_dtype} quantises blocks of {fixed}; set group_size: {fixed}")
    if qat.weight_dtype in NO_EMBEDDING_OR_SWITCH:
        for key in ("quantize_embedding", "fake_quant_after_n_steps"):
            if getattr(qat, key):
                raise ValueError(
                    f"qat.{key}: torchao's {qat.weight_dtype} fake quantisation covers linear layers only and "
                    f"cannot be switched off during training; remove {key}"
                )
    if cfg.load_in_4bit or cfg.load_in_8bit:
        raise ValueError(
            "qat trains full-precision weights through fake quantisation; it cannot be combined with "
            "load_in_4bit/load_in_8bit (remove them)"
        )
    if cfg.fp8:
        raise ValueError("qat and fp8 both replace the linear layers; keep one")


def qat_cpu_note(cfg: TrainConfig) -> str | None:
    """What a node without a Blackwell GPU does with this `qat:` block (None: the same as on any node)."""
    if cfg.qat is None or cfg.qat.weight_dtype != "nvfp4":
        return None
    return (
        "qat: NVFP4 matrix multiplies need a Blackwell GPU; on other nodes (CPU, Hopper such as GH200/H100) hpcft "
        "emulates them: activations and weights are rounded to NVFP4 and multiplied in the training precision"
    )
