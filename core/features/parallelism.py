"""axolotl's parallelism sizes laid out over the job's processes, and checked on the login node.

`expert_parallel_size`, `tensor_parallel_size`, `context_parallel_size`, `dp_replicate_size` and `dp_shard_size`
split the job's processes (nodes x processes per node) into orthogonal groups, as axolotl lays them out: expert,
tensor and context parallel groups are carved out first, replicas next, and the data-parallel shard group takes
what is left. A size of 1, or a shard group that is the whole data-parallel world, is the plain ZeRO-3/FSDP run.
When the config fixes no node count, the job gets as many nodes as the sizes need (axolotl's examples state their
layout, e.g. `context_parallel_size: 8` for one 8-GPU node); when it does, the sizes must divide it.

What each size runs (docs/parallelism.md):
- dp_shard_size < the data-parallel world (HSDP): FSDP2 with a (replicate, shard) device mesh on GPUs; under
  DeepSpeed ZeRO-3 the hierarchical partitioning of ZeRO++ (`zero_hpz_partition_size`), which keeps the weight
  all-gathers inside each shard group.
- context_parallel_size: DeepSpeed Ulysses sequence parallelism (ALST) through accelerate, or torch ring-attention
  context parallelism with FSDP2 on GPUs.
- tensor_parallel_size: DeepSpeed AutoTP (also for FSDP configs on nodes without GPUs, which run as ZeRO); with
  FSDP on GPU nodes it is refused for now.
- expert_parallel_size: checked and sized like the others; the experts are then sharded with the other weights
  (ZeRO-3/FSDP), which trains the same model without axolotl's DeepEP token dispatch.
Standard library only (no torch): the launcher imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hpcft.core.errors import ConfigError

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig


@dataclass(frozen=True)
class ParallelLayout:
    """How the job's processes are split: world = ep x tp x cp x dp_replicate x dp_shard."""

    world: int
    dp_replicate: int = 1
    dp_shard: int = 1
    tp: int = 1
    cp: int = 1
    ep: int = 1

    @property
    def data_parallel(self) -> int:
        """Processes that each see a different batch (the rest of the world splits one batch's work)."""
        return self.world // (self.tp * self.cp)

    @property
    def hybrid_shard(self) -> bool:
        """Weights sharded within groups and replicated across them (HSDP), rather than over every rank."""
        return self.dp_replicate > 1 and self.dp_shard > 1

    @property
    def is_plain(self) -> bool:
        """Nothing beyond hpcft's default data parallelism (ZeRO-3/FSDP over every rank)."""
        return self.tp == 1 and self.cp == 1 and self.ep == 1 and self.dp_replicate == 1


def asked_sizes(cfg: TrainConfig) -> dict[str, int]:
    """The sizes the config sets above 1, by axolotl key."""
    keys = ("expert_parallel_size", "tensor_parallel_size", "context_parallel_size", "dp_replicate_size")
    sizes = {key: getattr(cfg, key) for key in keys if (getattr(cfg, key) or 1) > 1}
    if (cfg.dp_shard_size or 1) > 1:
        sizes["dp_shard_size"] = cfg.dp_shard_size
    return sizes


def processes_needed(cfg: TrainConfig) -> int:
    """The smallest world the sizes fit in (their product)."""
    product = 1
    for size in asked_sizes(cfg).values():
        product *= size
    return product


def resolve_layout(cfg: TrainConfig, world: int) -> ParallelLayout:
    """The layout of `world` processes; a ConfigError naming the key whose size does not fit."""
    remaining = world
    taken: dict[str, int] = {}
    for key in ("expert_parallel_size", "tensor_parallel_size", "context_parallel_size", "dp_replicate_size"):
        size = getattr(cfg, key) or 1
        if size == 1:
            continue
        if remaining % size:
            raise ConfigError(_does_not_fit(key, size, world, taken))
        taken[key] = size
        remaining //= size
    shard = cfg.dp_shard_size or 1
    replicate = cfg.dp_replicate_size or 1
    if shard > 1 and shard != remaining:
        if remaining % shard:
            raise ConfigError(_does_not_fit("dp_shard_size", shard, world, taken))
        if cfg.dp_replicate_size:
            raise ConfigError(
                f"key 'dp_shard_size': dp_shard_size {shard} x dp_replicate_size {replicate} must be the "
                f"{remaining * replicate} data-parallel processes of the job's {world}; change one of them "
                "(or launch.nodes)"
            )
        replicate = remaining // shard  # the shard groups are replicated over what is left, as in axolotl
        remaining = shard
    return ParallelLayout(
        world=world,
        dp_replicate=replicate,
        dp_shard=remaining,
        tp=cfg.tensor_parallel_size or 1,
        cp=cfg.context_parallel_size or 1,
        ep=cfg.expert_parallel_size or 1,
    )


def _product(taken: dict[str, int]) -> str:
    return " x ".join(f"{key} {size}" for key, size in taken.items()) or "1"


def _does_not_fit(key: str, size: int, world: int, taken: dict[str, int]) -> str:
    left = world
    for value in taken.values():
        left //= value
    before = f" after {_product(taken)}" if taken else ""
    return (
        f"key '{key}': {size} does not divide the {left} processes left{before} of the job's {world} "
        f"(nodes x processes per node); set launch.nodes (or --nodes) so that the sizes divide it, or change {key}"
    )


def nodes_for(cfg: TrainConfig, procs_per_node: int) -> int:
    """The fewest nodes whose processes the sizes fit in."""
    needed = processes_needed(cfg)
    # nodes x procs_per_node is a multiple of `needed` exactly when nodes is a multiple of this (no search: a size
    # of 10**40 must not loop).
    return needed // math.gcd(needed, procs_per_node)


def check_parallelism(cfg: TrainConfig, nodes_given: bool, where: str) -> tuple[TrainConfig, list[str]]:
    """The login-node check of the sizes: (the config, with launch.nodes set when the config left it open and
    the sizes or ray_num_workers need more processes; warnings). ConfigError names the key that does not fit."""
    warnings: list[str] = []
    launch = cfg.launch
    ppn = launch.nproc_per_node
    nodes = launch.nodes
    if not nodes_given and cfg.use_ray and cfg.ray_num_workers:
        nodes = -(-cfg.ray_num_workers // ppn)
        warnings.append(
            f"{where}: use_ray: hpcft starts the processes with Slurm and torchrun, not Ray: ray_num_workers: "
            f"{cfg.ray_num_workers} becomes {nodes} node(s) x {ppn} process(es) (set launch.nodes to choose)"
        )
    elif cfg.use_ray:
        warnings.append(
            f"{where}: use_ray: hpcft starts the processes with Slurm and torchrun, not Ray: the job runs "
            f"{nodes * ppn} of them (launch.nodes x launch.procs_per_node)"
        )
    if asked_sizes(cfg) and not nodes_given and (nodes * ppn) % processes_needed(cfg):
        nodes = nodes_for(cfg, ppn)
        sizes = ", ".join(f"{key}: {size}" for key, size in asked_sizes(cfg).items())
        warnings.append(
            f"{where}: {sizes} {'needs' if len(asked_sizes(cfg)) == 1 else 'need'} {processes_needed(cfg)} "
            f"processes; with {ppn} per node the job asks for "
            f"{nodes} node(s) (set launch.nodes or --nodes to choose)"
        )
    if nodes != launch.nodes:
        cfg = cfg.model_copy(update={"launch": launch.model_copy(update={"nodes": nodes})})
    try:
        layout = resolve_layout(cfg, nodes * ppn)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    fsdp_on_gpus = cfg.uses_fsdp and launch.gpus_per_node > 0
    if fsdp_on_gpus and (cfg.fsdp_version or 1) != 2 and not layout.is_plain:
        key = next(iter(asked_sizes(cfg)))
        raise ConfigError(f"{where}: key '{key}': with FSDP it runs on FSDP2's device mesh; set fsdp_version: 2")
    if fsdp_on_gpus and layout.tp > 1:
        # transformers 5 shards a tensor-parallel model at load time with its own mesh, which accelerate's FSDP2
        # mesh would have to match; hpcft runs tensor parallelism on DeepSpeed AutoTP only (tested there).
        raise ConfigError(
            f"{where}: key 'tensor_parallel_size': with FSDP on GPU nodes hpcft does not run tensor parallelism "
            "yet; use DeepSpeed (remove fsdp/fsdp_config: tensor_parallel_size then runs as DeepSpeed AutoTP "
            "with ZeRO-2), or remove tensor_parallel_size"
        )
    if layout.cp > 1 and cfg.sequence_len % layout.cp:
        raise ConfigError(
            f"{where}: key 'context_parallel_size': sequence_len {cfg.sequence_len} must be a multiple of "
            f"{layout.cp} (each process takes an equal piece of every row)"
        )
    if layout.cp > 1:
        cfg, notes = context_parallel_attention(cfg, ring=fsdp_on_gpus)
        warnings += [f"{where}: {note}" for note in notes]
    if layout.tp > 1 and layout.cp > 1 and not fsdp_on_gpus:
        warnings.append(
            f"{where}: tensor_parallel_size: {layout.tp} x context_parallel_size: {layout.cp}: under DeepSpeed "
            f"(also FSDP's translation on nodes without GPUs) both run as Ulysses sequence parallelism over "
            f"{layout.tp * layout.cp} processes (AutoTP and Ulysses do not compose); the same processes share "
            "each batch, same results"
        )
    warnings += [f"{where}: {note}" for note in expert_note(layout)]
    return cfg, warnings


def context_parallel_attention(cfg: TrainConfig, ring: bool) -> tuple[TrainConfig, list[str]]:
    """The attention and packing a context-parallel run can keep: (the config, warnings).

    torch's ring attention (FSDP2 on GPUs) runs only on sdpa attention, and without an attention mask, so packed
    samples would attend to each other there. Under DeepSpeed Ulysses, flash-attention 2 keeps packed samples apart
    through their position_ids; sdpa (also what runs on nodes without GPUs) would not. Where packing cannot be kept
    the job trains unpacked rows, which changes how many samples share a row, not what each token sees."""
    updates: dict[str, Any] = {}
    notes = []
    if ring and cfg.attention != "sdpa":
        updates.update(attn_implementation="sdpa", flash_attention=False)
        notes.append(
            f"context_parallel_size: torch's ring attention (FSDP2) runs on sdpa attention: hpcft loads the "
            f"model with sdpa instead of {cfg.attention} (same results)"
        )
    keeps_packing = not ring and cfg.launch.gpus_per_node > 0 and cfg.attention == "flash_attention_2"
    if cfg.sample_packing and not keeps_packing:
        updates["sample_packing"] = False
        why = "on FSDP2's ring attention" if ring else "without flash-attention 2 on GPUs"
        notes.append(
            f"sample_packing: packed samples cannot be kept apart inside a context-parallel row {why}; this job "
            "trains unpacked rows, padded to sequence_len (each token sees the same context)"
        )
    return (cfg.model_copy(update=updates) if updates else cfg), notes


def expert_note(layout: ParallelLayout) -> list[str]:
    """What runs for expert_parallel_size (hpcft has no expert token dispatch of its own yet)."""
    if layout.ep == 1:
        return []
    return [
        f"expert_parallel_size: {layout.ep}: hpcft shards the experts with the other weights over the "
        f"{layout.dp_shard * layout.ep} data-parallel processes (ZeRO-3/FSDP) instead of dispatching tokens to "
        "experts held whole; same results, more communication"
    ]


def runs_autotp(cfg: TrainConfig) -> bool:
    """Tensor parallelism runs as DeepSpeed AutoTP (ZeRO-1/2 only) when there is no context parallelism to fold
    it into; the default DeepSpeed preset (and FSDP's translation) is then ZeRO-2."""
    return (cfg.tensor_parallel_size or 1) > 1 and (cfg.context_parallel_size or 1) == 1


def deepspeed_layout(layout: ParallelLayout) -> ParallelLayout:
    """The layout DeepSpeed runs: tensor x context parallelism becomes Ulysses over both (they do not compose)."""
    if layout.tp > 1 and layout.cp > 1:
        return replace(layout, tp=1, cp=layout.tp * layout.cp)
    return layout


def deepspeed_settings(ds: dict[str, Any], layout: ParallelLayout) -> dict[str, Any]:
    """The DeepSpeed config's share of the layout: AutoTP for tensor parallelism, ZeRO++ hierarchical
    partitioning for HSDP under ZeRO-3. A copy; ConfigError when the ZeRO stage cannot run the layout."""
    layout = deepspeed_layout(layout)
    zero = dict(ds.get("zero_optimization", {}))
    ds = {**ds}
    if layout.tp > 1:
        if zero.get("stage") == 3:
            raise ConfigError(
                f"key 'tensor_parallel_size': {layout.tp} runs DeepSpeed AutoTP, which composes with ZeRO stages "
                "0-2 only; use deepspeed: zero2 (the default with tensor_parallel_size)"
            )
        ds["tensor_parallel"] = {**ds.get("tensor_parallel", {}), "autotp_size": layout.tp}
        # The final save gathers the split weights only with this flag (whatever the ZeRO stage).
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        ds["zero_optimization"] = zero
    if layout.hybrid_shard and zero.get("stage") == 3:
        zero["zero_hpz_partition_size"] = layout.dp_shard
        ds["zero_optimization"] = zero
    return ds
