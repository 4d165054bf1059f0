"""`hpcft doctor`'s reading of what the nodes found: NCCL's debug output in the format NCCL prints it, per-node
rows, slow and broken nodes named, the --exclude line. (The probe itself runs on the local Slurm:
tests/slurm/test_doctor.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from hpcft.launcher.jobs.doctor_report import analyse, format_result, parse_nccl_debug

# NCCL 2.2x with the aws-ofi-nccl plugin on Slingshot (CSCS Alps): host:pid:tid [cuda device] NCCL INFO text.
ALPS_NCCL = """\
nid005101:183021:183021 [0] NCCL INFO Bootstrap: Using hsn0:172.28.20.101<0>
nid005101:183021:183021 [0] NCCL INFO cudaDriverVersion 12080
nid005101:183021:183021 [0] NCCL INFO NCCL version 2.27.7+cuda12.9
nid005101:183021:183102 [0] NCCL INFO NET/OFI Initializing aws-ofi-nccl 1.14.0
nid005101:183021:183102 [0] NCCL INFO NET/OFI Using Libfabric version 1.22
nid005101:183021:183102 [0] NCCL INFO NET/OFI Using CUDA driver version 12080 with runtime 12090
nid005101:183021:183102 [0] NCCL INFO NET/OFI Selected provider is cxi, fabric is cxi (found 4 nics)
nid005101:183021:183102 [0] NCCL INFO NET/OFI Selected Provider is cxi (found 4 nics)
nid005101:183021:183102 [0] NCCL INFO Using network AWS Libfabric
nid005101:183021:183102 [0] NCCL INFO DMA-BUF is available on GPU device 0
nid005101:183021:183102 [0] NCCL INFO comm 0x55d0c8a3e1a0 rank 0 nRanks 8 nNodes 2 localRanks 4 localRank 0 MNNVL 0
"""
# Without a plugin NCCL falls back to its own socket transport: works, but slowly.
SOCKET_FALLBACK_NCCL = """\
nid005102:90211:90211 [0] NCCL INFO Bootstrap: Using hsn0:172.28.20.102<0>
nid005102:90211:90211 [0] NCCL INFO NET/Plugin: Plugin load (libnccl-net.so) returned 2 : libnccl-net.so: \
cannot open shared object file: No such file or directory
nid005102:90211:90211 [0] NCCL INFO NET/Plugin: No plugin found, using internal implementation
NCCL version 2.27.7+cuda12.9
nid005102:90211:90290 [0] NCCL INFO NET/IB : No device found.
nid005102:90211:90290 [0] NCCL INFO NET/Socket : Using [0]hsn0:172.28.20.102<0> [1]nmn0:10.100.4.22<0>
nid005102:90211:90290 [0] NCCL INFO Using network Socket
nid005102:90211:90290 [0] NCCL WARN NET/Socket : message truncated : receiving 1048576 bytes instead of 65536
"""


def test_aws_ofi_nccl_on_slingshot():
    info = parse_nccl_debug(ALPS_NCCL)
    assert info.version == "2.27.7+cuda12.9"
    assert (info.plugin, info.provider, info.nics, info.network) == ("aws-ofi-nccl 1.14.0", "cxi", 4, "AWS Libfabric")
    assert not info.no_plugin and info.warnings == []
    assert info.describe() == "AWS Libfabric via aws-ofi-nccl 1.14.0 (cxi, 4 NICs)"


def test_no_plugin_falls_back_to_sockets():
    info = parse_nccl_debug(SOCKET_FALLBACK_NCCL)
    assert info.no_plugin and info.plugin is None and info.network == "Socket"
    assert info.version == "2.27.7+cuda12.9"  # the bare banner line NCCL prints on rank 0
    assert info.describe() == "Socket (no net plugin found: NCCL's internal transport)"
    assert info.warnings == ["nid005102: NET/Socket : message truncated : receiving 1048576 bytes instead of 65536"]


def test_labelled_and_timestamped_lines_are_read_too():
    text = "1: 2026-11-30T04:00:00 nid7:1:2 [3] NCCL INFO Using network IB\n"
    assert parse_nccl_debug(text).network == "IB"


def write_report(folder: Path, rank: int, node: int, host: str, pair: float | None, **extra) -> None:
    report = {
        "rank": rank,
        "world_size": 8,
        "local_rank": rank % 2,
        "node_rank": node,
        "stage": "done",
        "backend": "nccl",
        "host": host,
        "gpus": ["NVIDIA GH200 120GB"] * 4,
        "image": "/capstor/hpcft.sqsh",
        "hpcft_version": "0.1.0",
        "rendezvous_s": 3.2,
        "allreduce": [
            {"bytes": 2**20, "seconds": 0.0002, "busbw_gbs": 7.9},
            {"bytes": 2**30, "seconds": 0.0165, "busbw_gbs": 97.6},
        ],
        "pair_busbw_gbs": {} if pair is None else {"x": pair},
        "write_mb_s": 1800.0,
        **extra,
    }
    (folder / f"rank-{rank}.json").write_text(json.dumps(report))


def test_slow_and_broken_nodes_are_named_with_the_exclude_line(tmp_path):
    hosts = ["nid005101", "nid005102", "nid005103", "nid005104", "nid005105"]
    for node, host in enumerate(hosts[:4]):
        for local in range(2):
            pair = {0: 88.0, 1: 21.5, 2: 90.1, 3: 87.3}[node]
            extra = {"gpus": ["NVIDIA GH200 120GB"] * 3} if node == 3 else {}
            write_report(tmp_path, node * 2 + local, node, host, pair, **extra)
    (tmp_path / "nccl-nid005101-183021.log").write_text(ALPS_NCCL)
    (tmp_path / "nccl-nid005102-90211.log").write_text(SOCKET_FALLBACK_NCCL)
    result = analyse(
        tmp_path,
        gpus_per_node=4,
        expected_busbw=75.0,
        expected_network="AWS Libfabric",
        hpcft_version="0.1.0",
        hosts=hosts,
    )
    verdicts = {row.host: row.verdict for row in result.nodes}
    assert verdicts["nid005101"] == "ok" and verdicts["nid005103"] == "ok"
    assert verdicts["nid005102"] == "NCCL uses Socket, not AWS Libfabric; slow: 21.50 GB/s < 70% of 75.00"
    assert verdicts["nid005104"] == "3 of 4 GPUs visible"
    assert verdicts["nid005105"] == "no report: the probe did not start here"
    text = format_result(result, 75.0, pair_bytes=256 * 2**20)
    assert "avoid them:  #SBATCH --exclude=nid005102,nid005104,nid005105" in text
    assert "AWS Libfabric via aws-ofi-nccl 1.14.0 (cxi, 4 NICs)" in text
    assert "1 GiB" in text and "97.60" in text and "the profile expects 75 GB/s" in text


def test_without_an_expected_figure_nodes_are_compared_with_each_other(tmp_path):
    for node, pair in enumerate([0.61, 0.58, 0.12]):
        write_report(tmp_path, node, node, f"node{node + 1}", pair, backend="gloo", gpus=[], local_rank=0)
    result = analyse(tmp_path, gpus_per_node=0, expected_busbw=None, expected_network=None, hpcft_version="0.1.0")
    assert [row.network for row in result.nodes] == ["gloo (CPU, no NCCL)"] * 3
    assert result.bad_hosts == ["node3"]
    assert "slow: 0.12 GB/s < 70% of 0.58" in result.nodes[2].verdict


def test_a_rank_that_never_got_past_the_rendezvous(tmp_path):
    write_report(tmp_path, 0, 0, "node1", None, stage="started", rendezvous_s=None, allreduce=None)
    result = analyse(tmp_path, gpus_per_node=4, expected_busbw=None, expected_network=None, hpcft_version="0.1.0")
    assert result.nodes[0].verdict == "stopped at stage 'started' (rendezvous failed)"
