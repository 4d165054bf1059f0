"""Login-node checks of the training-loop keys (activation offloading, model-only checkpoints, schedule shaping,
LISA, the metrics endpoint, SwanLab): combinations that cannot work are errors naming the key, and what hpcft does
differently from axolotl on this job is a warning, both before anything is queued. No torch here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from hpcft.core.errors import ConfigError

if TYPE_CHECKING:
    from hpcft.core.schema import TrainConfig


def has_optimizer_state(checkpoint: str | Path) -> bool:
    """Whether a checkpoint folder can be resumed: it holds optimizer state (DeepSpeed's global_step*/, the
    Trainer's optimizer.pt, FSDP's optimizer_*), which `save_only_model: true` leaves out."""
    folder = Path(checkpoint)
    if not folder.is_dir():
        return False
    return any(p.name.startswith(("global_step", "optimizer")) for p in folder.iterdir())


def runs_plain_ddp(cfg: TrainConfig) -> bool:
    """LISA changes which layers train every few steps: DeepSpeed's ZeRO optimizer flattens the trainable weights
    once, at the start, and would keep moving the frozen ones (momentum, weight decay). ReLoRA prunes the optimizer
    state of each adapter weight, which ZeRO keeps flattened. Muon orthogonalises each weight matrix's whole update.
    All three run with plain DDP and torch's optimizers."""
    return bool(cfg.lisa_n_layers or cfg.relora or cfg.optimizer == "muon")


def check_training_loop(cfg: TrainConfig) -> None:
    """Raise ValueError (one line naming the key and the fix) for a combination of these keys that cannot run."""
    if cfg.activation_offloading and not cfg.gradient_checkpointing:
        raise ValueError(
            f"activation_offloading: {cfg.activation_offloading} needs gradient_checkpointing: true (the offloaded "
            "tensors are the checkpointed layers' inputs); set gradient_checkpointing: true"
        )
    if cfg.jagged_restart_warmup_steps or cfg.jagged_restart_anneal_steps:
        if not cfg.jagged_restart_steps:
            raise ValueError(
                "jagged_restart_warmup_steps/jagged_restart_anneal_steps need jagged_restart_steps (the restart "
                "interval in steps); set it or remove them"
            )
    lisa = (cfg.lisa_n_layers, cfg.lisa_step_interval)
    if any(lisa) and not all(lisa):
        raise ValueError(
            "lisa_n_layers and lisa_step_interval go together (LISA trains n layers, switching every "
            "interval steps); set both or neither"
        )
    if cfg.lisa_n_layers and cfg.adapter:
        raise ValueError(
            f"lisa_n_layers selects which layers a full fine-tune trains; it cannot be combined with adapter: "
            f"{cfg.adapter} (remove one)"
        )
    if cfg.lisa_n_layers and (cfg.deepspeed or cfg.uses_fsdp):
        raise ValueError(
            "lisa_n_layers changes the trained layers during training, which DeepSpeed's and FSDP's sharded "
            "optimizers cannot follow; hpcft runs LISA with plain DDP: remove deepspeed/fsdp"
        )
    if cfg.relora:
        if not cfg.jagged_restart_steps:
            raise ValueError("relora: true needs jagged_restart_steps (the steps between two merges), e.g. 150")
        if cfg.adapter not in ("lora", "qlora"):
            raise ValueError("relora: true needs adapter: lora or qlora (ReLoRA merges and restarts a LoRA adapter)")
        if cfg.peft_use_dora:
            raise ValueError("relora: true cannot merge and restart a DoRA adapter; remove peft_use_dora")
        if cfg.rl:
            raise ValueError(
                f"relora: true with rl: {cfg.rl}: merging the adapter would move the reference model (the base "
                "with the adapter off) during training; remove relora"
            )
        if cfg.deepspeed or cfg.uses_fsdp:
            raise ValueError(
                "relora: true prunes the adapter's optimizer state, which DeepSpeed's and FSDP's sharded "
                "optimizers keep flattened; hpcft runs ReLoRA with plain DDP: remove deepspeed/fsdp"
            )
    if cfg.lisa_n_layers and cfg.unfrozen_parameters:
        raise ValueError("lisa_n_layers and unfrozen_parameters both choose what is trained; keep one")
    if cfg.save_only_model and cfg.fsdp_config and cfg.fsdp_config.state_dict_type == "SHARDED_STATE_DICT":
        raise ValueError(
            "save_only_model: true cannot save the weights as fsdp_config.state_dict_type: SHARDED_STATE_DICT "
            "(transformers refuses it); use FULL_STATE_DICT or remove save_only_model"
        )


def swanlab_logged_in() -> bool:
    """An API key the job will find: $SWANLAB_API_KEY (passed to the job as a secret) or `swanlab login`'s file."""
    root = Path(os.environ.get("SWANLAB_ROOT") or Path.home() / ".swanlab")
    return bool(os.environ.get("SWANLAB_API_KEY")) or (root / ".netrc").is_file()


def training_loop_warnings(cfg: TrainConfig, where: str, secret_file: bool = False) -> list[str]:
    """What `validate` says about these keys on this job (the trainer logs the same on the node); ConfigError
    for what only the login node's filesystem shows (a checkpoint that cannot be resumed)."""
    out: list[str] = []
    if cfg.activation_offloading == "disk" or cfg.gradient_checkpointing == "offload_disk":
        out.append(
            f"{where}: activation_offloading: disk: hpcft offloads the activations to CPU memory, not to disk "
            "(same results)"
        )
    offloads = cfg.activation_offloading or cfg.gradient_checkpointing in ("offload", "offload_disk")
    if offloads and cfg.launch.gpus_per_node == 0:
        out.append(
            f"{where}: activation_offloading: the profile has no GPUs, so there is nothing to offload; the job "
            "trains with gradient checkpointing only"
        )
    if cfg.lr_quadratic_warmup and cfg.lr_scheduler != "cosine":
        out.append(
            f"{where}: lr_quadratic_warmup: shapes the warmup of lr_scheduler: cosine only (as in axolotl); with "
            f"lr_scheduler: {cfg.lr_scheduler} the warmup stays linear"
        )
    if cfg.lr_quadratic_warmup and cfg.lr_scheduler == "cosine" and cfg.cosine_min_lr_ratio is not None:
        out.append(
            f"{where}: lr_quadratic_warmup: with a quadratic warmup the cosine decays to 0, as in axolotl; "
            "cosine_min_lr_ratio (and cosine_constant_lr_ratio) are not used"
        )
    if cfg.save_only_model:
        out.append(
            f"{where}: save_only_model: checkpoints hold the weights but no optimizer state, so they cannot be "
            "resumed; the checkpoint saved when the time limit nears keeps its optimizer state, so a job requeued "
            "then continues, but after a crash or preemption a requeued job trains again from step 0 (set "
            "save_only_model: false to resume from any checkpoint)"
        )
    shaped = (
        (cfg.lr_quadratic_warmup and cfg.lr_scheduler == "cosine")
        or (cfg.cosine_constant_lr_ratio and cfg.lr_scheduler == "cosine")
        or cfg.jagged_restart_steps
    )
    if shaped and cfg.deepspeed and not runs_plain_ddp(cfg):
        from hpcft.core.features.deepspeed_config import load_source

        if "scheduler" in load_source(cfg.deepspeed):
            raise ConfigError(
                f"{where}: lr_quadratic_warmup/cosine_constant_lr_ratio/jagged_restart_steps shape the schedule that "
                "lr_scheduler makes, but "
                f"the DeepSpeed config {cfg.deepspeed} brings its own 'scheduler'; remove that section"
            )
    resume = Path(cfg.resume_from_checkpoint) if cfg.resume_from_checkpoint else None
    if resume and (resume / "trainer_state.json").is_file() and not has_optimizer_state(resume):
        raise ConfigError(
            f"{where}: resume_from_checkpoint: {cfg.resume_from_checkpoint} holds no optimizer state (saved with "
            "save_only_model: true?), so it cannot be resumed; start a new run from its weights with "
            "base_model (or lora_model_dir for an adapter) instead"
        )
    if cfg.use_otel_metrics and (cfg.otel_metrics_host or "localhost") in ("localhost", "127.0.0.1"):
        out.append(
            f"{where}: otel_metrics_host: {cfg.otel_metrics_host or 'localhost'}: the metrics endpoint listens on "
            "the first node only, reachable from that node (ssh there, or set otel_metrics_host: 0.0.0.0)"
        )
    if cfg.use_swanlab and (cfg.swanlab_mode or "cloud") == "cloud" and not (secret_file or swanlab_logged_in()):
        out.append(
            f"{where}: use_swanlab: no SwanLab API key (export SWANLAB_API_KEY or run `swanlab login` before "
            "submitting): the job logs in swanlab_mode: offline under output_dir/swanlog instead (upload it later "
            "with `swanlab sync`)"
        )
    return out
