"""`python -m hpcft.trainer doctor --out DIR`: what `hpcft doctor` runs on every node, under torchrun, in the
training job's container and environment. Each rank writes DIR/rank-<R>.json (updated after every stage, so a
rank that hangs or dies still says how far it got):

  - the node: host, GPUs visible, the image it runs in and the hpcft/torch/NCCL versions inside it;
  - the rendezvous: how long init_process_group took (NCCL or, without GPUs, gloo);
  - an all-reduce bus-bandwidth sweep over all ranks (1 MiB .. 1 GiB), timed as nccl-tests does;
  - per node: the all-reduce bandwidth with each neighbouring node (node pairs), which singles out a slow node;
  - the write speed of the output filesystem (one writer per node).

NCCL's own debug output (NCCL_DEBUG=INFO, subsystems INIT and NET) goes to DIR/nccl-<host>-<pid>.log; the
launcher reads which network plugin NCCL actually loaded from it (hpcft.launcher.jobs.doctor).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

MIB = 2**20
DEFAULT_SIZES_MIB = (1, 4, 16, 64, 256, 1024)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hpcft.trainer doctor")
    parser.add_argument("--out", required=True, help="folder for the per-rank JSON reports and NCCL logs")
    parser.add_argument("--max-mib", type=int, default=1024, help="largest all-reduce message (MiB)")
    parser.add_argument("--write-dir", help="folder on the output filesystem to time writes in (default: --out)")
    parser.add_argument("--write-mib", type=int, default=256, help="bytes each node writes for the speed test")
    parser.add_argument("--iters", type=int, default=5, help="timed all-reduces per message size")
    parser.add_argument("--timeout", type=int, default=180, help="seconds the rendezvous and each collective wait")
    parser.add_argument("--image", help="the container image the job was started with (reported as is)")
    return parser.parse_args(argv)


class Report:
    """One rank's findings, rewritten to disk after each stage (atomically: the launcher may read any time)."""

    def __init__(self, out: Path, rank: int) -> None:
        self.path = out / f"rank-{rank}.json"
        self.data: dict[str, Any] = {}

    def update(self, **values: Any) -> None:
        self.data.update(values)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def node_facts(image: str | None) -> dict[str, Any]:
    import torch

    from hpcft.trainer.reporting.image_info import describe_image

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    nccl = None
    if torch.cuda.is_available():
        nccl = ".".join(str(part) for part in torch.cuda.nccl.version())
    return {
        "host": socket.gethostname(),
        "gpus": gpus,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "image": image if image and image != "none" else None,
        # What the node actually runs in, from inside (None on a bare host): not the path it was given.
        "image_inside": describe_image(),
        "hpcft_version": _version("hpcft"),
        "torch_version": torch.__version__,
        "nccl_version": nccl,
    }


def timed_allreduce(numel: int, device: Any, iters: int, group: Any = None) -> float:
    """Seconds per all-reduce of `numel` float32 values (one warm-up, then `iters` timed back to back)."""
    import torch
    import torch.distributed as dist

    tensor = torch.ones(numel, dtype=torch.float32, device=device)
    dist.all_reduce(tensor, group=group)
    _sync(device)
    dist.barrier(group=group)
    start = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(tensor, group=group)
    _sync(device)
    return (time.perf_counter() - start) / iters


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bus_bandwidth(nbytes: int, seconds: float, ranks: int) -> float:
    """GB/s as nccl-tests reports all-reduce bus bandwidth: algorithm bandwidth x 2(n-1)/n."""
    if seconds <= 0 or ranks < 2:
        return 0.0
    return nbytes / seconds / 1e9 * 2 * (ranks - 1) / ranks


def node_pairs(nodes: int) -> list[list[tuple[int, int]]]:
    """The ring of nodes' neighbour pairs, in rounds of disjoint pairs: each node meets both neighbours, so a
    slow node is slow with both while its neighbours are fast with their other neighbour."""
    if nodes < 2:
        return []
    edges = [(0, 1)] if nodes == 2 else [(i, (i + 1) % nodes) for i in range(nodes)]
    rounds: list[list[tuple[int, int]]] = []
    for edge in edges:
        free = next((r for r in rounds if not any(set(edge) & set(pair) for pair in r)), None)
        if free is None:
            rounds.append([edge])
        else:
            free.append(edge)
    return rounds


def write_speed(folder: Path, mib: int) -> float:
    """MB/s of writing `mib` MiB and fsync-ing it (the file is removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".hpcft-doctor-{socket.gethostname()}-{os.getpid()}"
    block = os.urandom(MIB)
    start = time.perf_counter()
    try:
        with open(path, "wb") as handle:
            for _ in range(mib):
                handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())
        return mib * MIB / (time.perf_counter() - start) / 1e6
    finally:
        path.unlink(missing_ok=True)


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    node = int(os.environ.get("GROUP_RANK", rank // per_node))
    report = Report(out, rank)
    started = time.perf_counter()
    # SLURM_PROCID: the node's task number, as `hpcft logs` labels its lines ([host/task]).
    report.update(
        rank=rank,
        world_size=world,
        local_rank=local_rank,
        node_rank=node,
        slurm_task=int(os.environ.get("SLURM_PROCID", node)),
        stage="started",
    )

    import torch

    if torch.cuda.is_available():
        backend, device = "nccl", torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        # NCCL's own account of what it loaded, one file per process (NCCL expands %h and %p).
        os.environ.setdefault("NCCL_DEBUG", "INFO")
        os.environ.setdefault("NCCL_DEBUG_SUBSYS", "INIT,NET")
        os.environ.setdefault("NCCL_DEBUG_FILE", str(out / "nccl-%h-%p.log"))
    else:
        backend, device = "gloo", torch.device("cpu")
    report.update(backend=backend, **node_facts(args.image))

    import torch.distributed as dist

    dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout))
    dist.barrier()
    report.update(stage="rendezvous", rendezvous_s=round(time.perf_counter() - started, 2))

    sweep = []
    for mib in [m for m in DEFAULT_SIZES_MIB if m <= args.max_mib]:
        seconds = timed_allreduce(mib * MIB // 4, device, args.iters)
        sweep.append({"bytes": mib * MIB, "seconds": seconds, "busbw_gbs": bus_bandwidth(mib * MIB, seconds, world)})
        report.update(stage="allreduce", allreduce=sweep)

    nodes = world // per_node
    pair_mib = min(args.max_mib, 256)
    pairs: dict[str, float] = {}
    for round_pairs in node_pairs(nodes):
        # Every rank creates every group (new_group is collective), then each pair measures at the same time.
        groups = [
            (pair, dist.new_group([n * per_node + i for n in pair for i in range(per_node)])) for pair in round_pairs
        ]
        for pair, group in groups:
            if node in pair:
                seconds = timed_allreduce(pair_mib * MIB // 4, device, args.iters, group=group)
                peer = pair[1] if pair[0] == node else pair[0]
                pairs[str(peer)] = bus_bandwidth(pair_mib * MIB, seconds, 2 * per_node)
        dist.barrier()
    report.update(stage="pairs", pair_bytes=pair_mib * MIB, pair_busbw_gbs=pairs)

    if local_rank == 0:
        report.update(
            write_mb_s=write_speed(Path(args.write_dir or out), args.write_mib), write_dir=str(args.write_dir or out)
        )
    dist.barrier()
    dist.destroy_process_group()
    report.update(stage="done", seconds=round(time.perf_counter() - started, 2))
    return 0
