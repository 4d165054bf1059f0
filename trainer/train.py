"""The training recipe: one run from train.yaml to a saved model, step by step (what torchrun starts on every node).

setup:  config, seed, what to resume from (and, on another world size, the batch layout and ZeRO conversion),
        tokenizer, data, TrainingArguments (before the model: ZeRO-3 loads into partitions), model
train:  transformers' Trainer with hpcft's callbacks (metrics lines, complete checkpoints, stop file, faults)
save:   the final model (ZeRO-3 weights gathered) or LoRA adapter, with the tokenizer, into output_dir; then the
        finished marker, which tells a requeued job that there is nothing left to do
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hpcft.core.features.deepspeed_config import zero_stage
from hpcft.core.protocol import DONE_FILE_ENV, RUN_DIR_ENV, run_dir_from_env
from hpcft.core.schema import TrainConfig
from hpcft.core.yaml_config import load_train_yaml
from hpcft.trainer.data.prepare import PreparedData, prepare_datasets
from hpcft.trainer.data.streaming import streaming_datasets
from hpcft.trainer.hub import push_to_hub
from hpcft.trainer.loop.args import resolve_precision, training_argument_values
from hpcft.trainer.loop.checkpoints import (
    CompleteCheckpointCallback,
    check_saved_weights,
    finish_from_checkpoint,
    finished_step,
    mark_finished,
    resolve_resume_checkpoint,
    trained_steps,
)
from hpcft.trainer.loop.distributed import (
    ensure_deepspeed_comm,
    is_main_process,
    node_ranks_line,
    rank,
    sharding_plan,
    world_size,
)
from hpcft.trainer.loop.elastic import (
    BatchLayout,
    Conversion,
    ResumePlan,
    convert_to_universal,
    log_plan,
    plan_resume,
    record_attempt,
)
from hpcft.trainer.loop.faults import FaultInjectionCallback, StopFileCallback
from hpcft.trainer.loop.lisa import LisaCallback
from hpcft.trainer.loop.parallelism import ParallelismReport, layout_of, parallelism_arguments
from hpcft.trainer.loop.relora import ReLoraCallback, merge_for_final_save
from hpcft.trainer.loop.schedule_shape import ScheduleShapeCallback
from hpcft.trainer.loop.stopping import stopping_callbacks
from hpcft.trainer.loop.watchdog import HangWatchdog
from hpcft.trainer.model.fp8 import fp8_callbacks
from hpcft.trainer.model.loading import load_model, load_training_tokenizer
from hpcft.trainer.model.nvfp4_merge_aware import MergeAwareStartCallback
from hpcft.trainer.model.qat import convert_qat, qat_callbacks
from hpcft.trainer.model.sparse_finetuning import keep_sparsity, save_compressed_note
from hpcft.trainer.objectives import objective_for
from hpcft.trainer.reporting.bench_eval import BenchEvalCallback
from hpcft.trainer.reporting.causal_lm_eval import CausalLMEvalCallback
from hpcft.trainer.reporting.lm_eval_after_training import evaluate_final_model, lm_eval_wanted
from hpcft.trainer.reporting.metrics import MetricsCallback, tracker_environment
from hpcft.trainer.reporting.metrics_endpoint import MetricsEndpointCallback
from hpcft.trainer.reporting.mlflow_logging import MlflowRunRecorder
from hpcft.trainer.reporting.mlflow_logging import resume_environment as mlflow_resume_environment
from hpcft.trainer.reporting.sample_record import SampleRecorder
from hpcft.trainer.reporting.swanlab_logging import SwanLabLoggingCallback

log = logging.getLogger("hpcft.trainer")


def build_trainer(
    cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase, layout: BatchLayout, resume: ResumePlan | None = None
) -> tuple[Trainer, StopFileCallback | None]:
    """Data, arguments, model and callbacks, assembled into a transformers Trainer. `layout` is the batch layout
    to train with (the config's, or on an elastic resume the one that keeps the checkpoint's global batch)."""
    cfg = cfg.model_copy(update={"gradient_accumulation_steps": layout.gradient_accumulation_steps})
    if cfg.streaming:  # read while training: no length, so the schedule counts max_steps batches
        data = PreparedData(*streaming_datasets(cfg, tokenizer))
        num_train_rows = (cfg.max_steps or 1) * layout.global_batch_size
    else:
        data = prepare_datasets(cfg, tokenizer, global_batch_size=layout.global_batch_size)
        num_train_rows = len(data.train)
    deepspeed_config, fsdp_config = sharding_plan(cfg, cuda=torch.cuda.is_available(), resume=resume)
    precision = resolve_precision(cfg, deepspeed=deepspeed_config is not None)
    # Built before the model (TrainingArguments activate ZeRO-3's partitioned loading); TRL's configs take the same.
    arg_values = training_argument_values(
        cfg,
        precision,
        deepspeed_config,
        num_train_rows=num_train_rows,
        has_eval=data.eval is not None,
        # Epoch length counts the ranks that see different batches (tensor/context-parallel ones share theirs).
        world_size=layout_of(cfg, layout.world_size).data_parallel,
        fsdp_config=fsdp_config,
    )
    parallel = parallelism_arguments(cfg, layout.world_size, deepspeed=deepspeed_config is not None)
    arg_values.update(parallel)
    objective = objective_for(cfg)
    args = objective.arguments(cfg, arg_values)
    if deepspeed_config is not None:
        ensure_deepspeed_comm()
    # FSDP shards like ZeRO-3: 4-bit weights need a uniform storage dtype and no per-rank device_map.
    zero3 = zero_stage(deepspeed_config) == 3 or fsdp_config is not None
    stop = StopFileCallback.from_env()
    recorder = SampleRecorder.from_env(rank())
    causal_lm_eval = CausalLMEvalCallback.from_config(cfg, tokenizer)
    bench = BenchEvalCallback.from_config(cfg, tokenizer)
    # Order matters: fault injection runs before the checkpoint marker so that a kill "during the save" is one;
    # the early-stopping callbacks come after the metrics line of the step they stop at.
    callbacks = [
        MetricsCallback(cfg.output_dir),
        FaultInjectionCallback.from_env(),
        ReLoraCallback.from_config(cfg),  # its merged base weights are in a checkpoint before it is marked complete
        CompleteCheckpointCallback(cfg.save_total_limit),
        stop,
        HangWatchdog.from_env(cfg.output_dir, rank()),
        *stopping_callbacks(cfg),
        causal_lm_eval,
        bench,
        recorder,
        ScheduleShapeCallback.from_config(cfg),
        MetricsEndpointCallback.from_config(cfg),
        SwanLabLoggingCallback.from_config(cfg),
        MlflowRunRecorder.from_config(cfg),
        LisaCallback.from_config(cfg),
        ParallelismReport(layout_of(cfg, layout.world_size)),
    ]
    callbacks = [c for c in callbacks if c is not None]
    extra = objective.before_model(cfg, tokenizer)
    model = load_model(cfg, tokenizer, precision, zero3=zero3, wrap_adapter=objective.wraps_adapter(cfg))
    callbacks += low_precision_callbacks(cfg, model, fsdp=fsdp_config is not None)
    trainer = objective.trainer(cfg, model, tokenizer, data, args, callbacks, extra)
    if recorder is not None:
        recorder.attach(trainer.model)
    if causal_lm_eval is not None:
        causal_lm_eval.attach(trainer)
    if bench is not None:
        bench.attach(trainer)
    # Our metrics lines are the log on stdout; the Trainer's own printers would interleave dict reprs with them.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer, stop


def low_precision_callbacks(cfg: TrainConfig, model: torch.nn.Module, fsdp: bool) -> list[TrainerCallback]:
    """What QAT (fake quantisation switched on late), fp8 (FSDP2 float8 scales) and sparse fine-tuning (zeros
    kept) need during training; after the other callbacks, so a checkpoint saved at a step holds the masked
    weights."""
    merge_aware = [MergeAwareStartCallback(cfg.nvfp4_merge_aware_start_step)] if cfg.nvfp4_merge_aware else []
    return [*qat_callbacks(cfg.qat), *fp8_callbacks(cfg, fsdp), *keep_sparsity(cfg, model), *merge_aware]


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
        mark_finished(output_dir, trainer.state.global_step)
        log.info("saved the final model to %s", output_dir)


def signal_done() -> None:
    """Tell the batch script that training is over (HPCFT_DONE_FILE): a USR1 arriving now must not requeue."""
    done = os.environ.get(DONE_FILE_ENV)
    if done and is_main_process():
        Path(done).touch()


def nothing_to_train(message: str) -> int:
    """A run that has no step left: say why, tell the batch script it is done, train nothing."""
    if is_main_process():
        print(f"hpcft: {message}", flush=True)
    signal_done()
    return 0


def finish_from_last_checkpoint(cfg: TrainConfig, checkpoint: str, step: int) -> int:
    """The checkpoint to resume from is at the last step (the run ended after saving it but before its final
    save): train nothing; rank 0 makes the final model from it."""
    if is_main_process():
        copied = finish_from_checkpoint(checkpoint, cfg.output_dir)
        mark_finished(cfg.output_dir, step)
        log.info("saved the final model to %s from %s (%d files)", cfg.output_dir, checkpoint, len(copied))
    return nothing_to_train(f"{checkpoint} is at the last step ({step}): nothing to train")


def convert_for_world_size(plan: ResumePlan) -> Conversion | None:
    """Rank 0 converts the ZeRO checkpoint for the new world size while the others wait; None when not needed."""
    if not plan.needs_conversion:
        return None
    conversion = convert_to_universal(plan) if is_main_process() else None
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return conversion


def train(config_path: str | Path) -> int:
    """Run training for a train.yaml; returns the process exit code (0 also when stopped by the stop file)."""
    cfg = load_train_yaml(config_path)
    ranks = node_ranks_line()
    if ranks:
        print(ranks, flush=True)
    os.environ.update(tracker_environment(cfg))  # wandb/tensorboard read their settings from this process's env
    set_seed(cfg.seed)
    resume = resolve_resume_checkpoint(cfg)
    if resume:
        os.environ.update(mlflow_resume_environment(cfg))  # a requeued job continues its MLflow run
    done_at = finished_step(cfg.output_dir)
    if done_at is not None and not cfg.resume_from_checkpoint and done_at >= (cfg.max_steps or done_at):
        # A requeued or resubmitted finished run: retraining would overwrite its model with a longer run's.
        return nothing_to_train(
            f"{cfg.output_dir} already holds the final model of a run that finished at step "
            f"{done_at}: nothing to train (use another output_dir, raise max_steps, or delete "
            "its hpcft_finished.json to train again)"
        )
    if resume:
        step, last = trained_steps(cfg, resume)
        if step >= last > 0:
            return finish_from_last_checkpoint(cfg, resume, step)
    plan = plan_resume(cfg, resume, world_size()) if resume else None
    layout = plan.layout if plan else BatchLayout(world_size(), cfg.micro_batch_size, cfg.gradient_accumulation_steps)
    tokenizer = load_training_tokenizer(cfg)
    trainer, stop = build_trainer(cfg, tokenizer, layout, plan)

    conversion = None
    if plan is not None:
        if is_main_process():
            log.info("resuming from %s", resume)
            log_plan(plan)
        conversion = convert_for_world_size(plan)
    if is_main_process():
        record_attempt(os.environ.get(RUN_DIR_ENV), os.environ.get("SLURM_JOB_ID"), layout.world_size, plan, conversion)
    trainer.train(resume_from_checkpoint=resume)

    state = trainer.state
    finished = False
    if stop is not None and stop.stopped_at is not None and state.global_step < state.max_steps:
        if is_main_process():
            print(
                f"hpcft: stop file {stop.stop_file} seen: saved checkpoint-{stop.stopped_at} and stopped; "
                "the next run resumes from it",
                flush=True,
            )
    else:
        if cfg.load_best_model_at_end and state.best_model_checkpoint and is_main_process():
            # transformers has loaded it already; say which one the saved model is.
            print(
                f"hpcft: the final model is the best checkpoint, {Path(state.best_model_checkpoint).name} "
                f"({trainer.args.metric_for_best_model} {state.best_metric:.4g})",
                flush=True,
            )
        if cfg.relora:
            merge_for_final_save(trainer)
        if cfg.qat:
            convert_qat(trainer.model)  # the saved model is a plain one, ready to quantise for inference
        save_compressed_note(cfg)
        save_final_model(trainer, cfg.output_dir)
        signal_done()
        finished = True
    if is_main_process():
        draw_loss_png(cfg.output_dir)

    cleanup()
    step = state.global_step
    del trainer, state  # lm_eval's child process needs the memory the model and optimizer held
    # After the process group is gone, like the upload below: the other ranks have nothing to wait for.
    if finished and lm_eval_wanted(cfg) and is_main_process():
        error = evaluate_final_model(cfg, step)
        if error:
            print(f"hpcft: error: {error}", file=sys.stderr, flush=True)
            return 1
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
    from hpcft.core.loss_curve import read_curve, write_png

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
        write_png(
            curve, target, title=f"{name}: step {curve.steps[-1]}" + (f", loss {last:.3f}" if last is not None else "")
        )
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
