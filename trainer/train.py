"""The training recipe: one run from train.yaml to a saved model, step by step (what torchrun starts on every node).

setup: config, seed, tokenizer, data, TrainingArguments (before the model: ZeRO-3 loads into partitions), model
train: transformers' Trainer with hpcft's callbacks (metrics lines, complete checkpoints, stop file, faults)
save:  the final model (ZeRO-3 weights gathered) or LoRA adapter, with the tokenizer, into output_dir
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hpcft.launcher.config import load_train_yaml
from hpcft.launcher.deepspeed_config import zero_stage
from hpcft.launcher.protocol import run_dir_from_env
from hpcft.launcher.schema import TrainConfig
from hpcft.trainer.args import check_config, resolve_precision, training_argument_values
from hpcft.trainer.checkpoints import CompleteCheckpointCallback, check_saved_weights, resolve_resume_checkpoint
from hpcft.trainer.distributed import (
    ensure_deepspeed_comm,
    is_main_process,
    rank,
    sharding_plan,
    world_size,
)
from hpcft.trainer.faults import FaultInjectionCallback, StopFileCallback
from hpcft.trainer.hub import push_to_hub
from hpcft.trainer.metrics import MetricsCallback, tracker_environment
from hpcft.trainer.model import load_model, load_tokenizer
from hpcft.trainer.packing import make_collator
from hpcft.trainer.preference import adapter_for_trl, build_preference_trainer, preference_arguments
from hpcft.trainer.prepare import prepare_datasets
from hpcft.trainer.stopping import stopping_callbacks
from hpcft.trainer.watchdog import HangWatchdog

log = logging.getLogger("hpcft.trainer")


def build_trainer(cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[Trainer, StopFileCallback | None]:
    """Data, arguments, model and callbacks, assembled into a transformers Trainer."""
    data = prepare_datasets(cfg, tokenizer)
    deepspeed_config, fsdp_config = sharding_plan(cfg, cuda=torch.cuda.is_available())
    precision = resolve_precision(cfg)
    # Built before the model (TrainingArguments activate ZeRO-3's partitioned loading); TRL's configs take the same.
    arg_values = training_argument_values(cfg, precision, deepspeed_config, num_train_rows=len(data.train),
                                          has_eval=data.eval is not None, world_size=world_size(),
                                          fsdp_config=fsdp_config)
    args = preference_arguments(cfg, arg_values) if cfg.rl else TrainingArguments(**arg_values)
    if deepspeed_config is not None:
        ensure_deepspeed_comm()
    # FSDP shards like ZeRO-3: 4-bit weights need a uniform storage dtype and no per-rank device_map.
    zero3 = zero_stage(deepspeed_config) == 3 or fsdp_config is not None
    stop = StopFileCallback.from_env()
    # Order matters: fault injection runs before the checkpoint marker so that a kill "during the save" is one;
    # the early-stopping callbacks come after the metrics line of the step they stop at.
    callbacks = [MetricsCallback(cfg.output_dir), FaultInjectionCallback.from_env(),
                 CompleteCheckpointCallback(cfg.save_total_limit), stop, HangWatchdog.from_env(cfg.output_dir, rank()),
                 *stopping_callbacks(cfg)]
    callbacks = [c for c in callbacks if c is not None]
    if cfg.rl:
        model = load_model(cfg, tokenizer, precision, zero3=zero3, wrap_adapter=not adapter_for_trl(cfg))
        trainer = build_preference_trainer(cfg, model, tokenizer, data.train, data.eval, args, callbacks)
    else:
        model = load_model(cfg, tokenizer, precision, zero3=zero3)
        trainer = Trainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                          data_collator=make_collator(cfg, tokenizer), processing_class=tokenizer,
                          callbacks=callbacks)
    # Our metrics lines are the log on stdout; the Trainer's own printers would interleave dict reprs with them.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer, stop


def save_final_model(trainer: Trainer, output_dir: str) -> None:
    """Save the trained model (or adapter) and tokenizer so from_pretrained loads output_dir; check it is not empty."""
    # Under ZeRO-3 every rank takes part: save_model gathers the 16-bit weights (deepspeed_config.resolve_deepspeed
    # guarantees stage3_gather_16bit_weights_on_model_save) and rank 0 writes them. Under FSDP the final model is
    # gathered whole whatever state_dict_type the checkpoints use, so from_pretrained loads output_dir.
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
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
    finished = False
    if stop is not None and stop.stopped_at is not None and state.global_step < state.max_steps:
        if is_main_process():
            print(f"hpcft: stop file {stop.stop_file} seen: saved checkpoint-{stop.stopped_at} and stopped; "
                  "the next run resumes from it", flush=True)
    else:
        save_final_model(trainer, cfg.output_dir)
        finished = True
    if is_main_process():
        draw_loss_png(cfg.output_dir)

    cleanup()
    # After the process group is gone: an upload must not hold the other ranks in a barrier until they time out.
    if finished and cfg.hub_model_id and is_main_process():
        error = push_to_hub(cfg)
        if error:
            print(f"hpcft: error: {error}", file=sys.stderr, flush=True)
            return 1
    return 0


def draw_loss_png(output_dir: str) -> Path | None:
    """loss.png of the whole run (all restarts so far) into the run directory, where the user looks first
    (loss-<task>.png for a sweep's array task), else into output_dir. A plot that fails never fails the run."""
    from hpcft.launcher.plot import read_curve, write_png

    run_dir, task = run_dir_from_env(), os.environ.get("SLURM_ARRAY_TASK_ID")
    folder = run_dir if run_dir and run_dir.is_dir() else Path(output_dir)
    target = folder / (f"loss-{task}.png" if run_dir and task else "loss.png")
    try:
        curve = read_curve(output_dir)
        if not curve:
            return None
        # runs/<job name>/<stamp>: name the plot after the job, as `hpcft status` does.
        name = run_dir.parent.name if run_dir else Path(output_dir).name
        last = next((loss for loss in reversed(curve.loss) if loss is not None), None)
        write_png(curve, target, title=f"{name}: step {curve.steps[-1]}"
                  + (f", loss {last:.3f}" if last is not None else ""))
    except Exception as exc:  # noqa: BLE001 - matplotlib missing or the folder not writable: say so, go on
        log.warning("could not draw %s: %s", target, exc)
        return None
    print(f"hpcft: loss curve: {target}", flush=True)
    return target


def cleanup() -> None:
    """Leave the process group together, so no rank exits while another still writes."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
