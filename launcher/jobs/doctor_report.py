"""Reading what `hpcft doctor`'s probe found on each node: the per-rank JSON reports and NCCL's own debug output,
condensed into one row per node, with slow or broken nodes named and the `--exclude` line that avoids them.

NCCL lines look like `nid001234:53812:53890 [0] NCCL INFO NET/OFI Selected Provider is cxi (found 4 nics)`
(host:pid:tid [cuda device] NCCL INFO|WARN text); some launchers prefix them with a timestamp or a rank label.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_NCCL_LINE = re.compile(
    r"(?:^|\s)(?P<host>[\w.-]+):(?P<pid>\d+):(?P<tid>\d+) \[(?P<dev>\d+)\] NCCL "
    r"(?P<level>INFO|WARN) (?P<text>.*)$"
)
# A node whose pair bandwidth is below this share of the expected (or of the median node's) is called slow.
SLOW_SHARE = 0.7


@dataclass
class NcclInfo:
    """What NCCL says it loaded: its version, the network plugin and provider, and the network in use."""

    version: str | None = None
    plugin: str | None = None  # e.g. "aws-ofi-nccl 1.14.0"; None: NCCL's internal IB/socket transports
    provider: str | None = None  # libfabric provider (cxi on Slingshot, efa on AWS)
    nics: int | None = None
    network: str | None = None  # "AWS Libfabric", "IB", "Socket", ...
    no_plugin: bool = False  # NCCL looked for a net plugin and found none
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.network is None and self.plugin is None:
            return "unknown (no NCCL INFO lines)"
        parts = [self.network or "?"]
        if self.plugin:
            parts.append(
                f"via {self.plugin}"
                + (f" ({self.provider}" + (f", {self.nics} NICs)" if self.nics else ")") if self.provider else "")
            )
        elif self.no_plugin:
            parts.append("(no net plugin found: NCCL's internal transport)")
        return " ".join(parts)


def parse_nccl_debug(text: str) -> NcclInfo:
    """The facts in NCCL_DEBUG=INFO output (any number of processes' lines, the first of each kind wins)."""
    info = NcclInfo()
    for raw in text.splitlines():
        bare = re.search(r"NCCL version (\S+)", raw)
        if bare and info.version is None:
            info.version = bare.group(1)
        match = _NCCL_LINE.search(raw)
        if not match:
            continue
        text_part = match.group("text").strip()
        if match.group("level") == "WARN":
            info.warnings.append(f"{match.group('host')}: {text_part}")
            continue
        if m := re.match(r"NET/OFI (?:Initializing|Using) aws-ofi-nccl (\S+)", text_part):
            info.plugin = info.plugin or f"aws-ofi-nccl {m.group(1)}"
        elif m := re.match(r"NET/OFI Selected [Pp]rovider is ([\w-]+)", text_part):
            # "... is cxi (found 4 nics)" or, in newer plugins, "... is cxi, fabric is cxi (found 4 nics)"
            info.provider = info.provider or m.group(1)
            nics = re.search(r"\(found (\d+) nics\)", text_part)
            if nics and info.nics is None:
                info.nics = int(nics.group(1))
        elif m := re.match(r"NET/Plugin\s*: Loaded (?:net|collnet) plugin (.+?)(?: \(v\d+\))?$", text_part):
            info.plugin = info.plugin or m.group(1)
        elif re.match(r"NET/Plugin\s*:.*(?:No plugin found|Plugin load .* returned|dlerror=)", text_part):
            info.no_plugin = True
        elif m := re.match(r"Using network (.+)$", text_part):
            info.network = info.network or m.group(1).strip()
    return info


@dataclass
class NodeRow:
    """One node of the doctor job, as the table shows it."""

    host: str
    node_rank: int
    ranks: int = 0
    gpus: int = 0
    gpu_name: str = ""
    image: str | None = None
    image_inside: str | None = None  # what the node found inside its container (/etc/hpcft-image), if anything
    hpcft_version: str | None = None
    network: str = ""
    rendezvous_s: float | None = None
    pair_busbw_gbs: float | None = None  # the best of its pairs: a healthy node has at least one fast neighbour
    write_mb_s: float | None = None
    stage: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "ok" if not self.problems else "; ".join(self.problems)


@dataclass
class DoctorResult:
    nodes: list[NodeRow]
    sweep: list[dict[str, Any]]  # rank 0's all-reduce sweep over all ranks
    backend: str
    nccl: NcclInfo

    @property
    def bad_hosts(self) -> list[str]:
        return [n.host for n in self.nodes if n.problems]


def read_reports(folder: Path) -> list[dict[str, Any]]:
    reports = []
    for path in sorted(folder.glob("rank-*.json")):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(reports, key=lambda r: r.get("rank", 0))


def analyse(
    folder: Path,
    *,
    gpus_per_node: int,
    expected_busbw: float | None,
    expected_network: str | None,
    hpcft_version: str,
    hosts: list[str] | None = None,
) -> DoctorResult:
    """Per-node rows with problems named: missing reports, GPUs not visible, another hpcft in the image, the wrong
    NCCL network, a failed rendezvous, a pair bandwidth below SLOW_SHARE of the expected (or median) figure."""
    reports = read_reports(folder)
    nccl_by_host: dict[str, NcclInfo] = {}
    for path in sorted(folder.glob("nccl-*.log")):
        info = parse_nccl_debug(path.read_text(errors="replace"))
        host = path.stem[len("nccl-") :].rsplit("-", 1)[0]
        nccl_by_host.setdefault(host, info)
    rows: dict[str, NodeRow] = {}
    for report in reports:
        # The Slurm task number (as `hpcft logs` labels lines); torchrun's node rank is assigned at rendezvous.
        node = int(report.get("slurm_task", report.get("node_rank", 0)))
        host = report.get("host", "?")
        row = rows.setdefault(host, NodeRow(host=host, node_rank=node))
        row.ranks += 1
        if report.get("local_rank", 0) == 0:
            row.gpus = len(report.get("gpus") or [])
            row.gpu_name = (report.get("gpus") or [""])[0]
            row.image, row.hpcft_version = report.get("image"), report.get("hpcft_version")
            row.image_inside = report.get("image_inside")
            row.write_mb_s = report.get("write_mb_s")
            row.stage = report.get("stage", "")
            row.rendezvous_s = report.get("rendezvous_s")
            pairs = report.get("pair_busbw_gbs") or {}
            row.pair_busbw_gbs = max(pairs.values()) if pairs else None
        if report.get("backend") == "gloo":
            row.network = "gloo (CPU, no NCCL)"
        elif row.host in nccl_by_host:
            row.network = nccl_by_host[row.host].describe()
    for index, host in enumerate(hosts or []):  # Slurm's node list, in task order
        if host not in rows:
            rows[host] = NodeRow(host=host, node_rank=index, problems=["no report: the probe did not start here"])
    for row in rows.values():
        if row.ranks and row.stage != "done":
            row.problems.append(
                f"stopped at stage '{row.stage or 'start'}'"
                + (" (rendezvous failed)" if row.rendezvous_s is None else "")
            )
        if row.ranks and gpus_per_node and row.gpus != gpus_per_node:
            row.problems.append(f"{row.gpus} of {gpus_per_node} GPUs visible")
        if row.hpcft_version and row.hpcft_version != hpcft_version:
            row.problems.append(f"hpcft {row.hpcft_version} in the image, {hpcft_version} here")
        info = nccl_by_host.get(row.host)
        if expected_network and info is not None and info.network and info.network != expected_network:
            row.problems.append(f"NCCL uses {info.network}, not {expected_network}")
    measured = [r.pair_busbw_gbs for r in rows.values() if r.pair_busbw_gbs]
    reference = expected_busbw or (statistics.median(measured) if len(measured) >= 3 else None)
    for row in rows.values():
        if reference and row.pair_busbw_gbs is not None and row.pair_busbw_gbs < SLOW_SHARE * reference:
            row.problems.append(f"slow: {row.pair_busbw_gbs:.2f} GB/s < {SLOW_SHARE:.0%} of {reference:.2f}")
    first = next((r for r in reports if r.get("rank") == 0), reports[0] if reports else {})
    nccl = next(iter(nccl_by_host.values()), NcclInfo())
    nccl.warnings = [w for info in nccl_by_host.values() for w in info.warnings]
    return DoctorResult(
        nodes=sorted(rows.values(), key=lambda r: (r.node_rank, r.host)),
        sweep=first.get("allreduce") or [],
        backend=first.get("backend", "?"),
        nccl=nccl,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_result(result: DoctorResult, expected_busbw: float | None, pair_bytes: int | None = None) -> str:
    """The per-node table, the all-reduce sweep, and the verdict with the --exclude line."""
    header = ("NODE", "HOST", "GPUS", "IMAGE", "HPCFT", "NETWORK", "RDZV_S", "PAIR_BUSBW_GB/S", "WRITE_MB/S", "VERDICT")
    table = [header] + [
        (
            str(n.node_rank),
            n.host,
            str(n.gpus) + (f" {n.gpu_name}" if n.gpu_name else ""),
            Path(n.image).name if n.image else "-",
            n.hpcft_version or "-",
            n.network or "-",
            _fmt(n.rendezvous_s, ".1f"),
            _fmt(n.pair_busbw_gbs, ".2f"),
            _fmt(n.write_mb_s, ".0f"),
            n.verdict,
        )
        for n in result.nodes
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in table
    ]
    lines += [f"{n.host}: runs in {n.image_inside}" for n in result.nodes if n.image_inside]
    if pair_bytes:
        lines.append(
            f"(pair bandwidth: all-reduce of {pair_bytes // 2**20} MiB between neighbouring nodes, "
            "the better of a node's two pairs)"
        )
    if result.sweep:
        lines += ["", f"all-reduce over all ranks ({result.backend}):", "  size      time ms  busbw GB/s"]
        for point in result.sweep:
            size = point["bytes"] / 2**20
            label = f"{size:.0f} MiB" if size < 1024 else f"{size / 1024:.0f} GiB"
            lines.append(f"  {label:8s}  {point['seconds'] * 1000:7.2f}  {point['busbw_gbs']:10.2f}")
        if expected_busbw:
            best = max(p["busbw_gbs"] for p in result.sweep)
            lines.append(
                f"  largest message: {result.sweep[-1]['busbw_gbs']:.2f} GB/s (best {best:.2f}); the profile "
                f"expects {expected_busbw:.0f} GB/s"
            )
    for warning in result.nccl.warnings[:5]:
        lines.append(f"NCCL WARN {warning}")
    bad = result.bad_hosts
    lines.append("")
    if bad:
        lines.append(f"{len(bad)} of {len(result.nodes)} node(s) slow or broken: {', '.join(bad)}")
        lines.append(f"avoid them:  #SBATCH --exclude={','.join(bad)}")
        lines.append(f"         or  hpcft submit ... 'launch.sbatch_args=[--exclude={','.join(bad)}]'")
    else:
        lines.append(f"all {len(result.nodes)} node(s) healthy")
    return "\n".join(lines)
