"""`hpcft plan`: before submitting, will the job fit in GPU memory, how long will it take, what will it cost.

Everything here runs on the login node from the config, the profile and the model's config.json (no torch, no
weights): the model's size (model_size.py), memory per GPU (memory_model.py), the data (data_size.py), and time
from a tokens/s-per-GPU table in the profile (or --tokens-per-s).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from hpcft.core.model_size import ModelShape, model_shape
from hpcft.core.multimodal_plan import plan_notes
from hpcft.launcher.config import Job
from hpcft.launcher.estimates.data_size import DataSize, dataset_size
from hpcft.launcher.estimates.memory_model import (
    CPU_BUFFER_FACTOR,
    GIB,
    NF4_BYTES_PER_PARAM,
    RUNTIME_RESERVE_BYTES,
    Activations,
    ModelStates,
    Precision,
    Sharding,
    activation_bytes,
    model_states,
    sharding_from_deepspeed,
)

# A job whose estimate uses more than this share of GPU memory is called tight: fragmentation eats the rest.
TIGHT_SHARE = 0.9


def tokens_per_s_per_gpu(table: dict[float, float], billions: float) -> float | None:
    """Interpolate a tokens/s-per-GPU table keyed by model size (billions of parameters) in log-log space:
    compute per token grows with parameters, so tokens/s x parameters is about constant between entries."""
    points = sorted((float(k), float(v)) for k, v in table.items() if float(k) > 0 and float(v) > 0)
    if not points:
        return None
    if len(points) == 1:
        return points[0][1] * points[0][0] / billions
    # The segment that holds `billions` (the first or last one beyond the table's ends).
    index = next((i for i in range(1, len(points)) if billions <= points[i][0]), len(points) - 1)
    (x0, y0), (x1, y1) = points[index - 1], points[index]
    slope = (math.log(y1) - math.log(y0)) / (math.log(x1) - math.log(x0))
    return math.exp(math.log(y0) + slope * (math.log(billions) - math.log(x0)))


def compute_factor(adapter: str | None, checkpointing: bool) -> float:
    """Work per token relative to the table's full fine-tuning without checkpointing (6 x params FLOPs): LoRA
    skips the frozen weights' gradients (4x), checkpointing recomputes the forward pass (+2x)."""
    flops = (4.0 if adapter else 6.0) + (2.0 if checkpointing else 0.0)
    return 6.0 / flops


# ---------------------------------------------------------------- the plan


@dataclass
class Forecast:
    shape: ModelShape
    total_params: int
    trainable_params: int
    sharding: Sharding
    states: ModelStates
    activations: Activations
    checkpointing: bool
    gpu_memory: float | None
    micro_batch: int
    grad_accum: int
    seq_len: int
    data: DataSize
    max_steps: int | None
    num_epochs: float
    tokens_per_s: float | None
    tokens_per_s_source: str
    time_limit_s: int
    max_requeues: int
    on_gpus: bool = True
    suggestions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def activation_total(self) -> float:
        kept = self.activations.checkpointed if self.checkpointing else self.activations.full
        return kept + self.activations.logits

    @property
    def gpu_total(self) -> float:
        return self.states.gpu_total + self.activation_total + self.reserve

    @property
    def reserve(self) -> float:
        return RUNTIME_RESERVE_BYTES if self.on_gpus else 0.0

    @property
    def device(self) -> str:
        return "GPU" if self.on_gpus else "process"

    @property
    def devices(self) -> str:
        return "GPUs" if self.on_gpus else "processes"

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.sharding.gpus

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.seq_len

    @property
    def steps_per_epoch(self) -> int | None:
        if self.data.rows is None:
            return None
        return max(1, math.ceil(math.ceil(self.data.rows / (self.micro_batch * self.sharding.gpus)) / self.grad_accum))

    @property
    def total_steps(self) -> int | None:
        if self.max_steps:
            return self.max_steps
        per_epoch = self.steps_per_epoch
        return None if per_epoch is None else math.ceil(per_epoch * self.num_epochs)

    @property
    def step_seconds(self) -> float | None:
        if not self.tokens_per_s:
            return None
        return self.tokens_per_step / (self.tokens_per_s * self.sharding.gpus)

    @property
    def run_seconds(self) -> float | None:
        steps, step = self.total_steps, self.step_seconds
        return None if steps is None or step is None else steps * step

    @property
    def fits(self) -> bool | None:
        return None if not self.gpu_memory else self.gpu_total <= self.gpu_memory


def trainable_split(job: Job, shape: ModelShape) -> tuple[int, int, float]:
    """(trainable, frozen, bytes per frozen parameter) for full, LoRA and QLoRA fine-tuning."""
    cfg = job.cfg
    total = shape.total_parameters
    if not cfg.adapter:
        frozen = shape.vision_parameters if cfg.processor_type and cfg.freeze_mm_modules else 0
        return total - frozen, frozen, 2.0
    targets = shape.lora_targets(cfg.lora_target_modules, cfg.lora_target_linear)
    trainable = shape.lora_parameters(cfg.lora_r, targets)
    saved = cfg.lora_modules_to_save or []
    # modules_to_save train a full copy of the module next to the frozen original.
    trainable += sum(shape.embedding_parameters for name in saved if name in ("embed_tokens", "lm_head"))
    frozen_bytes = 2.0
    if cfg.load_in_4bit:
        linear = shape.num_layers * sum(a * b for a, b in shape.linear_shapes().values())
        frozen_bytes = (linear * NF4_BYTES_PER_PARAM + (total - linear) * 2.0) / total
    elif cfg.load_in_8bit:
        linear = shape.num_layers * sum(a * b for a, b in shape.linear_shapes().values())
        frozen_bytes = (linear * 1.0 + (total - linear) * 2.0) / total
    return trainable, total, frozen_bytes


def make_forecast(
    job: Job, *, tokens_per_s: float | None = None, gpu_memory_gib: float | None = None, model_config: str | None = None
) -> Forecast:
    """The whole estimate for a validated job on its profile."""
    from hpcft.core.features.deepspeed_config import default_preset, resolve_deepspeed
    from hpcft.core.features.training_loop import runs_plain_ddp

    cfg, launch, profile = job.cfg, job.cfg.launch, job.profile
    shape = model_shape(model_config or cfg.base_model_config or cfg.base_model)
    gpus_per_node = launch.nproc_per_node
    if runs_plain_ddp(cfg):
        ds: dict = {"zero_optimization": {"stage": 0}}  # plain DDP: every rank holds every state
    else:
        ds = resolve_deepspeed(cfg.deepspeed or default_preset(cfg), cfg, gpus_per_node * launch.nodes)
    sharding = sharding_from_deepspeed(ds, gpus_per_node, launch.nodes)
    mixed = bool(launch.gpus_per_node) and (cfg.bf16 is not False or cfg.fp16)
    precision = Precision() if mixed else Precision.full_fp32()
    trainable, frozen, frozen_bytes = trainable_split(job, shape)
    frozen_bytes = frozen_bytes if mixed or frozen_bytes < 2 else 4.0
    states = model_states(trainable, frozen, shape.largest_layer_parameters, sharding, precision, frozen_bytes)
    acts = activation_bytes(shape, cfg.micro_batch_size, cfg.sequence_len, cfg.attention, precision.weights)
    memory = gpu_memory_gib if gpu_memory_gib is not None else profile.gpu_memory_gib
    billions = shape.total_parameters / 1e9
    if tokens_per_s is not None:
        speed, speed_source = tokens_per_s, "--tokens-per-s"
    else:
        base = tokens_per_s_per_gpu(profile.tokens_per_s_per_gpu, billions)
        speed = None if base is None else base * compute_factor(cfg.adapter, cfg.gradient_checkpointing)
        for_gpu = f" for {profile.gpu_name}" if profile.gpu_name else ""
        speed_source = (
            f"profile '{profile.name}' table{for_gpu}"
            if base
            else f"none: profile '{profile.name}' has no tokens_per_s_per_gpu table; give --tokens-per-s"
        )
    forecast = Forecast(
        shape=shape,
        total_params=shape.total_parameters,
        trainable_params=trainable,
        sharding=sharding,
        states=states,
        activations=acts,
        checkpointing=cfg.gradient_checkpointing,
        gpu_memory=memory * GIB if memory else None,
        micro_batch=cfg.micro_batch_size,
        grad_accum=cfg.gradient_accumulation_steps,
        seq_len=cfg.sequence_len,
        data=dataset_size(job),
        max_steps=cfg.max_steps,
        num_epochs=cfg.num_epochs,
        tokens_per_s=speed,
        tokens_per_s_source=speed_source,
        time_limit_s=launch.time_seconds,
        max_requeues=launch.max_requeues if launch.requeue else 0,
        on_gpus=bool(launch.gpus_per_node),
    )
    forecast.warnings += plan_warnings(job, forecast)
    forecast.notes += plan_notes(cfg, shape)  # processor_type: the vision tower and the tokens of an image
    if forecast.fits is False or (forecast.gpu_memory and forecast.gpu_total > TIGHT_SHARE * forecast.gpu_memory):
        forecast.suggestions = fit_suggestions(job, forecast, precision, frozen_bytes)
    return forecast


def _total_with(forecast: Forecast, states: ModelStates, acts: Activations, checkpointing: bool) -> float:
    kept = acts.checkpointed if checkpointing else acts.full
    return states.gpu_total + kept + acts.logits + forecast.reserve


def fit_suggestions(job: Job, forecast: Forecast, precision: Precision, frozen_bytes: float) -> list[str]:
    """What would make the job fit, each with the memory it would need (tried one change at a time)."""
    cfg, s, shape = job.cfg, forecast.sharding, forecast.shape
    trainable, frozen = forecast.trainable_params, forecast.total_params if cfg.adapter else 0
    largest = shape.largest_layer_parameters
    tries: list[tuple[str, float]] = []
    if not forecast.checkpointing:
        tries.append(
            ("gradient_checkpointing: true", _total_with(forecast, forecast.states, forecast.activations, True))
        )
    if s.stage < 3:
        z3 = Sharding(3, s.offload_optimizer, False, s.gpus_per_node, s.nodes)
        tries.append(
            (
                "deepspeed: zero3",
                _total_with(
                    forecast,
                    model_states(trainable, frozen, largest, z3, precision, frozen_bytes),
                    forecast.activations,
                    forecast.checkpointing,
                ),
            )
        )
    if not (s.offload_optimizer and s.offload_params):
        off = Sharding(3, True, True, s.gpus_per_node, s.nodes)
        tries.append(
            (
                "deepspeed: zero3_offload (optimizer and parameters in CPU memory; slower)",
                _total_with(
                    forecast,
                    model_states(trainable, frozen, largest, off, precision, frozen_bytes),
                    forecast.activations,
                    forecast.checkpointing,
                ),
            )
        )
    if cfg.micro_batch_size > 1:
        half = cfg.micro_batch_size // 2
        acts = activation_bytes(shape, half, cfg.sequence_len, cfg.attention, precision.weights)
        tries.append(
            (
                f"micro_batch_size: {half} with gradient_accumulation_steps: "
                f"{cfg.gradient_accumulation_steps * cfg.micro_batch_size // half} (same global batch)",
                _total_with(forecast, forecast.states, acts, forecast.checkpointing),
            )
        )
    for nodes in (s.nodes * 2, s.nodes * 4):
        more = Sharding(s.stage, s.offload_optimizer, s.offload_params, s.gpus_per_node, nodes)
        if s.stage >= 1:
            tries.append(
                (
                    f"--nodes {nodes}",
                    _total_with(
                        forecast,
                        model_states(trainable, frozen, largest, more, precision, frozen_bytes),
                        forecast.activations,
                        forecast.checkpointing,
                    ),
                )
            )
    return [f"{change}: {need / GIB:.1f} GiB" for change, need in tries]


_BATCH_COMMENT = re.compile(r"#.*?\b(?:global|effective|total)[ _-]?batch(?:[ _-]?size)?\D{0,12}?(\d[\d_,]*)", re.I)


def plan_warnings(job: Job, forecast: Forecast) -> list[str]:
    """Warnings in words: memory, a global batch other than the config's comments say, a time limit too short."""
    warnings: list[str] = []
    if forecast.gpu_memory:
        need, have = forecast.gpu_total / GIB, forecast.gpu_memory / GIB
        if forecast.fits is False:
            warnings.append(
                f"will not fit: about {need:.1f} GiB per GPU needed, {have:.0f} GiB available; see the changes below"
            )
        elif need > TIGHT_SHARE * have:
            warnings.append(f"tight: about {need:.1f} GiB of {have:.0f} GiB per GPU; fragmentation may tip it over")
    elif job.cfg.launch.gpus_per_node:
        warnings.append(
            f"profile '{job.profile.name}' has no gpu_memory_gib: cannot say whether it fits "
            "(set it in the profile or give --gpu-memory-gib)"
        )
    node_memory = job.profile.node_memory_gib
    if node_memory and forecast.states.cpu_per_node > node_memory * GIB:
        warnings.append(
            f"offloaded states need about {forecast.states.cpu_per_node / GIB:.0f} GiB of CPU memory "
            f"per node, more than the node's {node_memory:.0f} GiB; use more nodes or less offload"
        )
    try:
        text = job.config_path.read_text()
    except OSError:
        text = ""
    for match in _BATCH_COMMENT.finditer(text):
        said = int(re.sub(r"[_,]", "", match.group(1)))
        if said != forecast.global_batch:
            warnings.append(
                f"the config's comment says global batch {said}, but micro_batch_size "
                f"{forecast.micro_batch} x gradient_accumulation_steps {forecast.grad_accum} x "
                f"{forecast.sharding.gpus} {forecast.devices} = {forecast.global_batch}"
            )
    run = forecast.run_seconds
    if run is not None and run > forecast.time_limit_s:
        allocations = math.ceil(run / max(1, forecast.time_limit_s - job.cfg.launch.signal_grace))
        needed = allocations - 1
        more = (
            ""
            if needed <= forecast.max_requeues
            else (f", more than launch.max_requeues ({forecast.max_requeues}): raise it or --time")
        )
        warnings.append(
            f"the run (~{format_duration(run)}) is longer than the time limit {job.cfg.launch.time}: "
            f"it needs {needed} requeue(s), resuming from checkpoints{more}"
        )
    return warnings


# ---------------------------------------------------------------- printing


def format_duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    if minutes < 1:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}d " if days else "") + f"{hours}:{minutes:02d} h" if hours or days else f"{minutes} min"


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def format_forecast(job: Job, f: Forecast) -> str:
    cfg, launch = job.cfg, job.cfg.launch

    def gib(value: float) -> str:
        return f"{value / GIB:6.1f} GiB" if value >= GIB / 10 or not value else f"{value / 2**20:6.1f} MiB"

    mode = {None: "full fine-tuning", "lora": f"LoRA r={cfg.lora_r}", "qlora": f"QLoRA (4-bit base) r={cfg.lora_r}"}
    lines = [
        f"hpcft plan: {job.config_path.name} on profile '{job.profile.name}', {launch.nodes} node(s) x "
        f"{launch.nproc_per_node} {'GPUs' if launch.gpus_per_node else 'processes'} = {f.sharding.gpus}",
        "",
        f"model      {cfg.base_model} ({f.shape.model_type}, from {f.shape.source})",
        f"parameters {f.total_params:,} ({_count(f.total_params)}); trainable {f.trainable_params:,} "
        f"({100 * f.trainable_params / f.total_params:.2f}%, {mode[cfg.adapter]})",
        "",
        f"memory per {f.device} ({f.sharding.describe()})",
        f"  weights              {gib(f.states.weights)}",
        f"  gradients            {gib(f.states.gradients)}",
        f"  optimizer states     {gib(f.states.optimizer)}",
        f"  gathered layer       {gib(f.states.gathered)}   (ZeRO-3 working set)",
        f"  activations          {gib(f.activation_total - f.activations.logits)}   "
        f"(micro_batch_size {f.micro_batch} x sequence_len {f.seq_len}, gradient checkpointing "
        f"{'on' if f.checkpointing else 'off'}; "
        f"{'without' if f.checkpointing else 'with'} it: "
        f"{gib(f.activations.full if f.checkpointing else f.activations.checkpointed).strip()})",
        f"  logits and loss      {gib(f.activations.logits)}",
        *([f"  runtime reserve      {gib(f.reserve)}   (CUDA context, NCCL buffers)"] if f.reserve else []),
        f"  total                {gib(f.gpu_total)}"
        + (
            f"   of {f.gpu_memory / GIB:.0f} GiB ({job.profile.gpu_name or 'GPU'}): "
            + (
                "fits"
                if f.fits and f.gpu_total <= TIGHT_SHARE * f.gpu_memory
                else "tight"
                if f.fits
                else "DOES NOT FIT"
            )
            if f.gpu_memory
            else ""
        ),
    ]
    if f.states.cpu_per_node:
        lines.append(
            f"  CPU memory per node  {gib(f.states.cpu_per_node)}   (offloaded states, x{CPU_BUFFER_FACTOR} "
            "for pinned buffers)"
        )
    steps = f.total_steps
    lines += [
        "",
        "batch",
        f"  global batch         {f.global_batch} = micro_batch_size {f.micro_batch} x "
        f"gradient_accumulation_steps {f.grad_accum} x {f.sharding.gpus} {f.devices}",
        f"  tokens per step      {f.tokens_per_step:,} (at most: global batch x sequence_len"
        + (", packed rows are nearly full)" if cfg.sample_packing else ")"),
        f"  dataset              {f.data.source}",
        f"  steps per epoch      {f.steps_per_epoch if f.steps_per_epoch is not None else 'unknown'}",
        f"  steps                {steps if steps is not None else 'unknown'}"
        + (" (max_steps)" if f.max_steps else f" ({f.num_epochs:g} epoch(s))" if steps else ""),
    ]
    lines += ["", "time"]
    if f.tokens_per_s:
        lines.append(f"  throughput           {f.tokens_per_s:,.0f} tokens/s per {f.device} ({f.tokens_per_s_source})")
        lines.append(f"  per step             {f.step_seconds:.2f} s")
        if f.run_seconds is not None:
            node_hours = f.run_seconds / 3600 * launch.nodes
            gpu_hours = f" ({node_hours * launch.nproc_per_node:,.1f} GPU-hours)" if f.on_gpus else ""
            lines.append(
                f"  run                  {format_duration(f.run_seconds)}, {node_hours:,.1f} node-hours"
                f"{gpu_hours}; time limit {launch.time}"
            )
    else:
        lines.append(f"  throughput           unknown ({f.tokens_per_s_source})")
    if f.notes:
        lines += [""] + [f"note: {n}" for n in f.notes]
    if f.warnings:
        lines += [""] + [f"warning: {w}" for w in f.warnings]
    if f.suggestions:
        lines += ["", f"to fit, one change at a time (memory per {f.device} it would need):"]
        lines += [f"  {s}" for s in f.suggestions]
    return "\n".join(lines)
