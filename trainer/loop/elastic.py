"""Resume on a different world size: the same global batch, the same data order, ZeRO partitions converted.

Every complete checkpoint records the batch layout it was written with (COMPLETE_MARKER: world size, micro
batch, gradient accumulation, global batch, samples consumed). A resume on another number of ranks then:
- keeps the global batch: gradient_accumulation_steps = global_batch / (micro_batch_size x world_size), or refuses
  (unless `elastic_allow_batch_change: true`), since another global batch changes the optimisation and the data
  position;
- continues the data order exactly: the sampler's order is one permutation of the train rows (seeded by the seed,
  over a dataset padded to a multiple of the global batch, so its length does not depend on the world size);
  accelerate hands micro-batch i to rank i % world_size, so optimizer step s consumes rows [s*G, (s+1)*G) of that
  permutation whatever the world size, and the Trainer skips s*GA micro-batches per rank on resume;
- converts a DeepSpeed ZeRO checkpoint (optimizer state and, under ZeRO-3, weights partitioned per rank) with
  DeepSpeed's universal checkpoint (`ds_to_universal`), which the engine loads into any number of partitions with
  `checkpoint.load_universal`. The optimizer state is kept. Without DeepSpeed (LoRA under DDP) every rank's state
  is a whole replica: only the batch layout changes.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from argparse import Namespace
from dataclasses import asdict, dataclass
from pathlib import Path

from hpcft.core.errors import ConfigError
from hpcft.core.protocol import COMPLETE_MARKER, MANIFEST
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")


@dataclass(frozen=True)
class BatchLayout:
    """How one optimizer step's samples are spread: global batch = micro batch x accumulation x ranks."""

    world_size: int
    micro_batch_size: int
    gradient_accumulation_steps: int

    @property
    def global_batch_size(self) -> int:
        return self.world_size * self.micro_batch_size * self.gradient_accumulation_steps

    def describe(self) -> str:
        return (
            f"global batch {self.global_batch_size} = micro_batch_size {self.micro_batch_size} x "
            f"gradient_accumulation_steps {self.gradient_accumulation_steps} x {self.world_size} rank(s)"
        )


@dataclass(frozen=True)
class Conversion:
    """A ZeRO checkpoint converted to DeepSpeed's universal format for another world size."""

    checkpoint: str
    from_world_size: int
    to_world_size: int
    seconds: float
    universal_dir: str
    reused: bool = False


@dataclass(frozen=True)
class ResumePlan:
    """What a resume from `checkpoint` changes for the current world size."""

    checkpoint: Path
    step: int
    saved: BatchLayout
    layout: BatchLayout
    zero_checkpoint: bool  # a DeepSpeed engine checkpoint (global_step* folder) is inside

    @property
    def world_size_changed(self) -> bool:
        return self.saved.world_size != self.layout.world_size

    @property
    def needs_conversion(self) -> bool:
        return self.world_size_changed and self.zero_checkpoint


def checkpoint_metadata(layout: BatchLayout, step: int) -> dict:
    """What the completion marker records about a checkpoint (data position = samples consumed so far)."""
    return {
        "step": step,
        "world_size": layout.world_size,
        "micro_batch_size": layout.micro_batch_size,
        "gradient_accumulation_steps": layout.gradient_accumulation_steps,
        "global_batch_size": layout.global_batch_size,
        "samples_seen": step * layout.global_batch_size,
    }


def saved_layout(checkpoint: Path, cfg: TrainConfig) -> BatchLayout:
    """The layout a checkpoint was written with: from its marker, else (not written by hpcft) the config's."""
    marker = checkpoint / COMPLETE_MARKER
    meta = json.loads(marker.read_text()) if marker.is_file() else {}
    return BatchLayout(
        int(meta.get("world_size", 0)) or _zero_world_size(checkpoint) or 1,
        int(meta.get("micro_batch_size", cfg.micro_batch_size)),
        int(meta.get("gradient_accumulation_steps", cfg.gradient_accumulation_steps)),
    )


def _zero_dir(checkpoint: Path) -> Path | None:
    """The DeepSpeed engine folder the checkpoint's `latest` file names (global_step<N>), if any."""
    latest = checkpoint / "latest"
    if latest.is_file() and (checkpoint / latest.read_text().strip()).is_dir():
        return checkpoint / latest.read_text().strip()
    return None


def _zero_world_size(checkpoint: Path) -> int:
    """Ranks that wrote a ZeRO checkpoint: one optimizer-state file each (0 when there is none)."""
    zero = _zero_dir(checkpoint)
    return len(list(zero.glob("*_optim_states.pt"))) if zero else 0


def plan_resume(cfg: TrainConfig, checkpoint: str | Path, world_size: int) -> ResumePlan:
    """The batch layout to resume `checkpoint` on `world_size` ranks with; ConfigError when the checkpoint's global
    batch cannot be kept and the config does not allow changing it."""
    path = Path(checkpoint)
    saved = saved_layout(path, cfg)
    step = _checkpoint_step(path)
    target = saved.global_batch_size
    per_step = cfg.micro_batch_size * world_size
    if target % per_step == 0:
        layout = BatchLayout(world_size, cfg.micro_batch_size, target // per_step)
    elif cfg.elastic_allow_batch_change:
        layout = BatchLayout(world_size, cfg.micro_batch_size, cfg.gradient_accumulation_steps)
        log.warning(
            "elastic resume: %s on %d rank(s) cannot keep the checkpoint's %s; "
            "elastic_allow_batch_change: true, so training continues with %s",
            path.name,
            world_size,
            saved.describe(),
            layout.describe(),
        )
    else:
        raise ConfigError(
            f"resume: {path} was written with {saved.describe()}; on {world_size} rank(s) micro_batch_size "
            f"{cfg.micro_batch_size} x {world_size} = {per_step} samples per micro-step does not divide {target}, "
            "so the global batch cannot stay the same. Resume on a number of ranks (nodes x processes per node) "
            f"for which it does, lower micro_batch_size, or set elastic_allow_batch_change: true to continue with "
            f"a global batch of {per_step * cfg.gradient_accumulation_steps} (the data position and learning "
            "dynamics then differ from an uninterrupted run)"
        )
    return ResumePlan(path, step, saved, layout, zero_checkpoint=_zero_dir(path) is not None)


def _checkpoint_step(path: Path) -> int:
    state = path / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text()).get("global_step", 0))
    return int(path.name.rsplit("-", 1)[-1]) if path.name.rsplit("-", 1)[-1].isdigit() else 0


def log_plan(plan: ResumePlan) -> None:
    """Say what the resume changes (rank 0)."""
    if plan.world_size_changed:
        log.info(
            "elastic resume: %s was written by %d rank(s), resuming on %d",
            plan.checkpoint.name,
            plan.saved.world_size,
            plan.layout.world_size,
        )
    if plan.layout.gradient_accumulation_steps != plan.saved.gradient_accumulation_steps or plan.world_size_changed:
        log.info(
            "elastic resume: gradient_accumulation_steps %d -> %d: %s (was %s); data position: %d samples "
            "consumed, continuing from there",
            plan.saved.gradient_accumulation_steps,
            plan.layout.gradient_accumulation_steps,
            plan.layout.describe(),
            plan.saved.describe(),
            plan.step * plan.saved.global_batch_size,
        )


def deepspeed_for_resume(config: dict, plan: ResumePlan) -> dict:
    """The run's DeepSpeed config with the resumed batch layout (the rendered deepspeed.json has the batch numbers
    of the config's gradient_accumulation_steps, which an elastic resume changes), and, when the checkpoint is
    converted, loading from DeepSpeed's universal format (any number of partitions)."""
    layout = plan.layout
    config = {
        **config,
        "train_micro_batch_size_per_gpu": layout.micro_batch_size,
        "gradient_accumulation_steps": layout.gradient_accumulation_steps,
        "train_batch_size": layout.global_batch_size,
    }
    if plan.needs_conversion:
        config["checkpoint"] = {**config.get("checkpoint", {}), "load_universal": True}
    return config


def convert_to_universal(plan: ResumePlan) -> Conversion:
    """Convert the checkpoint's ZeRO state to DeepSpeed's universal format, in place (checkpoint/<tag>_universal and
    checkpoint/latest_universal, which DeepSpeed's load_checkpoint reads with load_universal). Runs on one rank; a
    conversion finished earlier (same checkpoint, an earlier resume) is reused."""
    from deepspeed.checkpoint import ds_to_universal

    zero = _zero_dir(plan.checkpoint)
    assert zero is not None
    output = plan.checkpoint / f"{zero.name}_universal"
    latest = plan.checkpoint / "latest_universal"
    started = time.monotonic()
    reused = latest.is_file() and latest.read_text().strip() == output.name and output.is_dir()
    if not reused:
        shutil.rmtree(output, ignore_errors=True)  # a conversion cut off earlier
        latest.unlink(missing_ok=True)
        # One worker: no process pool inside a torchrun rank; the work is one pass over the files.
        args = Namespace(
            input_folder=str(zero),
            output_folder=str(output),
            num_extract_workers=1,
            num_merge_workers=1,
            keep_temp_folder=False,
            strict=True,
            inject_missing_state=True,
        )
        ds_to_universal.main(args)
    conversion = Conversion(
        str(plan.checkpoint),
        plan.saved.world_size,
        plan.layout.world_size,
        round(time.monotonic() - started, 3),
        str(output),
        reused,
    )
    log.info(
        "elastic resume: %s the ZeRO checkpoint %s (%d partitions) to DeepSpeed's universal format in %s "
        "in %.1f s, for %d rank(s); optimizer state kept",
        "reused" if reused else "converted",
        zero,
        plan.saved.world_size,
        output,
        conversion.seconds,
        plan.layout.world_size,
    )
    return conversion


def record_attempt(
    run_dir: str | None, job_id: str | None, world_size: int, plan: ResumePlan | None, conversion: Conversion | None
) -> None:
    """Add this attempt (world size, what it resumed from, any conversion) to the run directory's manifest
    ("attempts"), which `hpcft status` shows. Nothing without a run directory (a run started by hand)."""
    from hpcft.core.manifest import read_manifest, update_manifest

    if not run_dir or not (Path(run_dir) / MANIFEST).is_file():
        return
    entry = {
        "job_id": job_id,
        "world_size": world_size,
        "time": round(time.time(), 3),
        "resumed_from": str(plan.checkpoint) if plan else None,
        "resumed_step": plan.step if plan else None,
        "gradient_accumulation_steps": plan.layout.gradient_accumulation_steps if plan else None,
        "conversion": asdict(conversion) if conversion else None,
    }
    attempts = read_manifest(Path(run_dir)).get("attempts") or []
    update_manifest(Path(run_dir), attempts=[*attempts, entry])
