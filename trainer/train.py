"""The training recipe: one run from train.yaml to a saved model, step by step (what torchrun starts on every node).

setup: config, seed, tokenizer, data, TrainingArguments (before the model: ZeRO-3 loads into partitions), model
train: transformers' Trainer with hpcft's callbacks (metrics lines, complete checkpoints, stop file, faults)
save:  the final model (ZeRO-3 weights gathered) or LoRA adapter, with the tokenizer, into output_dir
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch.distributed as dist
from transformers import PreTrainedTokenizerBase, Trainer, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hpcft.launcher.config import load_train_yaml
from hpcft.launcher.deepspeed_config import resolve_deepspeed, zero_stage
from hpcft.launcher.schema import TrainConfig
from hpcft.trainer.args import check_config, resolve_precision, training_arguments
from hpcft.trainer.checkpoints import CompleteCheckpointCallback, check_saved_weights, resolve_resume_checkpoint
from hpcft.trainer.distributed import (
    ensure_deepspeed_comm,
    is_main_process,
    rank,
    world_size,
)
from hpcft.trainer.faults import FaultInjectionCallback, StopFileCallback
from hpcft.trainer.metrics import MetricsCallback, tracker_environment
from hpcft.trainer.model import load_model, load_tokenizer
from hpcft.trainer.packing import make_collator
from hpcft.trainer.prepare import prepare_datasets
from hpcft.trainer.watchdog import HangWatchdog

log = logging.getLogger("hpcft.trainer")


def build_trainer(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[Trainer, StopFileCallback | None]:
    """Data, arguments, model and callbacks, assembled into a transformers Trainer."""
    data = prepare_datasets(cfg, tokenizer)
    # A rendered train.yaml names <run dir>/deepspeed.json, already resolved: this returns it unchanged.
    deepspeed_config = resolve_deepspeed(cfg.deepspeed, cfg, world_size()) if cfg.deepspeed else None
    precision = resolve_precision(cfg)
    args = training_arguments(cfg, precision, deepspeed_config, num_train_rows=len(data.train),
                              has_eval=data.eval is not None, world_size=world_size())
    if deepspeed_config is not None:
        ensure_deepspeed_comm()
    model = load_model(cfg, tokenizer, precision, zero3=zero_stage(deepspeed_config) == 3)
    stop = StopFileCallback.from_env()
    # Order matters: fault injection runs before the checkpoint marker so that a kill "during the save" is one.
    callbacks = [MetricsCallback(cfg.output_dir), FaultInjectionCallback.from_env(),
                 CompleteCheckpointCallback(cfg.save_total_limit), stop, HangWatchdog.from_env(cfg.output_dir, rank())]
    trainer = Trainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                      data_collator=make_collator(cfg, tokenizer), processing_class=tokenizer,
                      callbacks=[c for c in callbacks if c is not None])
    # Our metrics lines are the log on stdout; the Trainer's own printers would interleave dict reprs with them.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer, stop


def save_final_model(trainer: Trainer, output_dir: str) -> None:
    """Save the trained model (or adapter) and tokenizer so from_pretrained loads output_dir; check it is not empty."""
    # Under ZeRO-3 every rank takes part: save_model gathers the 16-bit weights (deepspeed_config.resolve_deepspeed
    # guarantees stage3_gather_16bit_weights_on_model_save) and rank 0 writes them.
    trainer.save_model(output_dir)
    if trainer.is_world_process_zero():
        check_saved_weights(Path(output_dir))
        log.info("saved the final model to %s", output_dir)


def train(config_path: str | Path) -> int:
    """Run training for a train.yaml; returns the process exit code (0 also when stopped by the stop file)."""
    cfg = load_train_yaml(config_path)
    os.environ.update(tracker_environment(cfg))  # wandb/tensorboard read their settings from this process's env
    set_seed(cfg.seed)
    check_config(cfg)  # fails in a second, before data and model are loaded
    resume = resolve_resume_checkpoint(cfg)
    tokenizer = load_tokenizer(cfg)
    trainer, stop = build_trainer(cfg, tokenizer)

    if resume and is_main_process():
        log.info("resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)

    state = trainer.state
    if stop is not None and stop.stopped_at is not None and state.global_step < state.max_steps:
        if is_main_process():
            print(f"hpcft: stop file {stop.stop_file} seen: saved checkpoint-{stop.stopped_at} and stopped; "
                  "the next run resumes from it", flush=True)
    else:
        save_final_model(trainer, cfg.output_dir)

    cleanup()
    return 0


def cleanup() -> None:
    """Leave the process group together, so no rank exits while another still writes."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
