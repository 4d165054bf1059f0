"""Train on NVIDIA ModelOpt NVFP4 checkpoints (nvidia/Qwen3-30B-A3B-NVFP4, ...), which transformers 5 cannot load.

The checkpoint is dequantised once into a 16-bit copy (value = e2m1 x weight_scale x weight_scale_2, the same
arithmetic as torchao's NVFP4Tensor.dequantize) in a cache folder next to the Hugging Face cache; from_pretrained
then loads that copy as an ordinary model (transformers fuses the MoE experts as usual). Local rank 0 of each node
writes it into a temporary folder renamed into place when complete, the other ranks wait for it; later runs and
requeues reuse it. The per-tensor scale of every quantised layer is kept next to the weights (nvfp4_scales.json):
nvfp4_merge_aware snaps the trained layers back onto that NVFP4 grid (see trainer/model/nvfp4_merge_aware.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hpcft.core.errors import ConfigError
from hpcft.core.features.nvfp4 import GROUP_SIZE, nvfp4_quantization
from hpcft.trainer.loop.distributed import local_rank

log = logging.getLogger("hpcft.trainer")

SCALES_FILE = "nvfp4_scales.json"
# The 16 values of a 4-bit e2m1 code (bit 3: sign), as ModelOpt and torchao pack them: low nibble first.
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
# Per-layer tensors of an NVFP4 layer that have no place in the 16-bit model (k/v_scale: FP8 KV-cache scales).
_SCALE_LEAVES = ("weight_scale", "weight_scale_2", "weight_scale_inv", "input_scale", "k_scale", "v_scale")
WAIT_SECONDS = 6 * 3600
FP8_BLOCK = 128
SHARD_BYTES = 4 * 2**30  # of the copy's shards: the most it holds in memory while writing


def dequantize_nvfp4(
    packed: torch.Tensor, block_scale: torch.Tensor, tensor_scale: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """A ModelOpt NVFP4 weight ([..., K/2] uint8 codes, [..., K/16] float8_e4m3fn scales, a float32 scale) as
    a [..., K] tensor of dtype."""
    codes = torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)
    values = torch.tensor(E2M1_VALUES, dtype=torch.float32)[codes.long()]
    group = values.shape[-1] // block_scale.shape[-1]
    if group != GROUP_SIZE:
        raise ValueError(f"NVFP4 weight of shape {tuple(values.shape)} has {block_scale.shape[-1]} scales per row")
    scales = tensor_scale.to(torch.float32) * block_scale.to(torch.float32)
    return (values * scales.repeat_interleave(group, dim=-1)).to(dtype)


def _weight_map(folder: Path) -> dict[str, str]:
    """Tensor name -> shard file, from the index or from the shards' headers (a single-file checkpoint)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return dict(json.loads(index.read_text())["weight_map"])
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            found.update(dict.fromkeys(f.keys(), path.name))
    return found


def _shards(folder: Path) -> list[str]:
    return sorted(set(_weight_map(folder).values()))


class _Checkpoint:
    """Reads any tensor of a sharded safetensors checkpoint (a layer's scales may sit in another shard)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.where = _weight_map(folder)
        self.files: dict[str, Any] = {}
        self.stack = contextlib.ExitStack()

    def get(self, name: str) -> torch.Tensor:
        shard = self.where[name]
        if shard not in self.files:
            self.files[shard] = self.stack.enter_context(safe_open(str(self.folder / shard), framework="pt"))
        return self.files[shard].get_tensor(name)

    def close(self) -> None:
        self.stack.close()


def dequantize_fp8(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An FP8 weight of a mixed-precision checkpoint: one scale per tensor or row, or one per [bn, bk] block
    (DeepSeek's weight_scale_inv, 128 x 128)."""
    values = weight.to(torch.float32)
    scale = scale.to(torch.float32)
    if scale.numel() == 1 or (scale.numel() == values.shape[0] and scale.dim() <= 2):  # per tensor or per row
        return (values * scale.reshape(-1, *([1] * (values.dim() - 1)))).to(dtype)
    if scale.dim() != values.dim():
        raise ValueError(f"FP8 weight {tuple(values.shape)} with scales {tuple(scale.shape)}: unknown layout")
    for dim in range(values.dim()):
        size, count = values.shape[dim], scale.shape[dim]
        # The usual 128 (DeepSeek's weight_block_size) when it fits: a 200-row weight has 2 blocks of 128, not 100.
        block = FP8_BLOCK if -(-size // FP8_BLOCK) == count else -(-size // count)
        scale = scale.repeat_interleave(block, dim=dim).narrow(dim, 0, values.shape[dim])
    return (values * scale).to(dtype)


def _dequantized(checkpoint: _Checkpoint, name: str, dtype: torch.dtype, scales: dict[str, float]) -> torch.Tensor:
    """One tensor of the copy: an NVFP4 (or FP8) weight dequantised to dtype, anything else as stored."""
    names = checkpoint.where
    base = name.rpartition(".")[0]
    tensor = checkpoint.get(name)
    if name.endswith(".weight") and tensor.dtype == torch.uint8 and f"{base}.weight_scale" in names:
        tensor_scale = checkpoint.get(f"{base}.weight_scale_2")
        scales[base] = float(tensor_scale.to(torch.float32).reshape(-1)[0])
        return dequantize_nvfp4(tensor, checkpoint.get(f"{base}.weight_scale"), tensor_scale, dtype)
    if name.endswith(".weight") and tensor.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        found = [f"{base}.{n}" for n in ("weight_scale_inv", "weight_scale") if f"{base}.{n}" in names]
        if not found:
            raise ValueError(f"{name} is FP8 but the checkpoint has no weight_scale(_inv) for it")
        return dequantize_fp8(tensor, checkpoint.get(found[0]), dtype)
    return tensor.contiguous()


def write_dequantized(source: Path, target: Path, dtype: torch.dtype, shard_bytes: int = SHARD_BYTES) -> None:
    """Write the 16-bit copy of the NVFP4 checkpoint in source to target (a new folder), in shards of about
    shard_bytes so that no more than one shard is held in memory."""
    target.mkdir(parents=True)
    weight_map: dict[str, str] = {}
    scales: dict[str, float] = {}
    checkpoint = _Checkpoint(source)
    pending: dict[str, torch.Tensor] = {}
    held = 0

    def flush() -> None:
        shard = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
        save_file(pending, str(target / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(pending, shard))
        pending.clear()

    try:
        # In the checkpoint's shard order, so each source shard is read once, front to back.
        for name in sorted(checkpoint.where, key=lambda n: (checkpoint.where[n], n)):
            if name.rpartition(".")[2] in _SCALE_LEAVES:
                continue
            pending[name] = _dequantized(checkpoint, name, dtype, scales)
            held += pending[name].numel() * pending[name].element_size()
            if held >= shard_bytes:
                flush()
                held = 0
        if pending:
            flush()
    finally:
        checkpoint.close()
    (target / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (target / SCALES_FILE).write_text(json.dumps(scales, indent=1, sort_keys=True))
    skip = {"hf_quant_config.json", "model.safetensors.index.json", "config.json"}
    for path in source.iterdir():
        if path.is_file() and path.name not in skip and not path.name.endswith(".safetensors"):
            shutil.copy2(path, target / path.name)
    config = json.loads((source / "config.json").read_text())
    config.pop("quantization_config", None)
    config["torch_dtype"] = config["dtype"] = str(dtype).removeprefix("torch.")
    (target / "config.json").write_text(json.dumps(config, indent=2))


def cache_root() -> Path:
    """hpcft-dequantized/ next to the Hugging Face hub cache (HF_HOME, which the job plan points at the cluster's
    cache folder), so it lives on the same filesystem as the downloaded checkpoint."""
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home) / "hpcft-dequantized"


def cache_folder(source: Path, dtype: torch.dtype) -> Path:
    """The copy's folder: named for the checkpoint and dtype, keyed by its path and its shards' sizes and times."""
    key = [str(source.resolve())]
    for shard in _shards(source):
        stat = (source / shard).stat()
        key.append(f"{shard}:{stat.st_size}:{stat.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:12]
    # A Hub snapshot folder is named for its commit: name the copy for the repository (models--org--name).
    label = source.parent.parent.name.removeprefix("models--") if source.parent.name == "snapshots" else source.name
    return cache_root() / f"{label}-{str(dtype).removeprefix('torch.')}-{digest}"


def _size_gib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 2**30


def ensure_dequantized(source: Path, dtype: torch.dtype) -> Path:
    """The 16-bit copy of the NVFP4 checkpoint in source: written by local rank 0 when missing, awaited by the
    other ranks, reused as it is when present."""
    target = cache_folder(source, dtype)
    if target.is_dir():
        log.info("nvfp4: using the dequantised copy of %s in %s (%.1f GiB)", source, target, _size_gib(target))
        return target
    if local_rank() == 0:
        log.warning(
            "nvfp4: %s is an NVFP4 checkpoint (%.1f GiB), which transformers cannot train on; writing a dequantised "
            "%s copy to %s (about 4x its size), reused by later runs",
            source,
            _size_gib(source),
            str(dtype).removeprefix("torch."),
            target,
        )
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            write_dequantized(source, partial, dtype)
        except BaseException:  # a failed or cancelled write leaves no half copy behind
            shutil.rmtree(partial, ignore_errors=True)
            raise
        try:
            partial.rename(target)
        except OSError:  # another node sharing this filesystem finished first: its copy is the same
            shutil.rmtree(partial, ignore_errors=True)
        log.info("nvfp4: wrote %s (%.1f GiB)", target, _size_gib(target))
        return target
    deadline = time.monotonic() + WAIT_SECONDS
    while not target.is_dir():
        if time.monotonic() > deadline:
            raise RuntimeError(f"nvfp4: local rank 0 did not write {target} within {WAIT_SECONDS} s")
        time.sleep(5)
    return target


def _local_folder(base_model: str, revision: str | None) -> Path | None:
    """The folder holding base_model's files when it is an NVFP4 checkpoint (a Hub model is downloaded), else None."""
    folder = Path(base_model).expanduser()
    if folder.is_dir():
        return folder if nvfp4_quantization(folder) else None
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    # config.json only (from_pretrained reads it next anyway): NVIDIA's releases declare NVFP4 in its
    # quantization_config; an hf_quant_config.json is read too when it is already in the snapshot.
    try:
        config = Path(hf_hub_download(base_model, "config.json", revision=revision))
    # No such model, or the Hub out of reach: from_pretrained then says what is wrong.
    except (EntryNotFoundError, HfHubHTTPError, OSError, ValueError):
        return None
    if nvfp4_quantization(config.parent) is None:
        return None
    return Path(snapshot_download(base_model, revision=revision))


def nvfp4_source(base_model: str, revision: str | None, dtype: torch.dtype, adapter: str | None) -> str | None:
    """The folder to load instead of base_model when it is an NVFP4 checkpoint (its dequantised copy), else None.
    A Hub model is known to be NVFP4 only here, on the node: the login-node rule (adapter: lora) is checked again."""
    folder = _local_folder(base_model, revision)
    if folder is None:
        return None
    if adapter != "lora":
        raise ConfigError(
            f"base_model: {base_model} is an NVFP4 (ModelOpt) checkpoint, which is trained through a LoRA adapter: "
            f"set adapter: lora (and no load_in_4bit/load_in_8bit)"
        )
    return str(ensure_dequantized(folder, dtype))


def nvfp4_tensor_scales(folder: str | Path) -> dict[str, float]:
    """The per-tensor scale (weight_scale_2) of every layer of the checkpoint that was NVFP4, by module name."""
    path = Path(folder) / SCALES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
