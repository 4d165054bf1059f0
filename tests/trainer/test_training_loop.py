"""The training-loop keys on the tiny model with the real transformers Trainer: learning rate per step under a
quadratic warmup and jagged restarts (also across a resume), activation offloading, LISA's layer switching,
the Prometheus endpoint (scraped over HTTP) and SwanLab in offline mode."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from hpcft.trainer.loop.args import Precision, training_argument_values
from hpcft.trainer.loop.lisa import LisaCallback
from hpcft.trainer.loop.schedule_shape import ScheduleShapeCallback, jagged_restarts, quadratic_warmup
from hpcft.trainer.model.loading import load_model, load_tokenizer
from hpcft.trainer.reporting.metrics_endpoint import MetricsEndpointCallback
from hpcft.trainer.reporting.swanlab_logging import SwanLabLoggingCallback, swanlab_init_arguments

ROWS = 8
SEQ = 16


class RecordRates(TrainerCallback):
    """The learning rate each optimizer step runs with (read when the step begins)."""

    def __init__(self):
        self.rates: list[float] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.rates.append(optimizer.param_groups[0]["lr"])


def make_trainer(cfg, callbacks: list, model=None) -> Trainer:
    """A Trainer as hpcft builds it (hpcft's TrainingArguments), on a few fixed rows of token ids."""
    args = TrainingArguments(**training_argument_values(cfg, Precision(), None, ROWS, False, 1))
    model = model or load_model(cfg, load_tokenizer(cfg), Precision())
    rows = [
        {"input_ids": list(range(3 + i, 3 + i + SEQ)), "labels": list(range(3 + i, 3 + i + SEQ))} for i in range(ROWS)
    ]
    return Trainer(model=model, args=args, train_dataset=rows, callbacks=[c for c in callbacks if c is not None])


# lr 1e-3, cosine over 12 steps, 4 warmup steps squared, restarts every 6 steps (2 warmup steps, floor 0.001):
# (step/4)^2 for steps 0-3; then the cosine; at step 6 the restart drops it to 0.001x, step 7 is half way back.
PINNED_RATES = [
    0.0,
    6.25e-5,
    2.5e-4,
    5.625e-4,
    1e-3,
    9.6193977e-4,
    8.5355339e-7,
    3.4601653e-4,
    5e-4,
    3.0865828e-4,
    1.4644661e-4,
    3.8060234e-5,
]
SHAPED = {
    "lr_scheduler": "cosine",
    "learning_rate": 1e-3,
    "warmup_steps": 4,
    "max_steps": 12,
    "lr_quadratic_warmup": True,
    "jagged_restart_steps": 6,
    "jagged_restart_warmup_steps": 2,
    "jagged_restart_anneal_steps": 1,
    "micro_batch_size": 1,
    "optimizer": "sgd",
    "save_steps": 6,
}


def test_quadratic_warmup_and_jagged_restarts_pin_the_rate_of_every_step_and_survive_a_resume(train_config):
    cfg = train_config(**SHAPED)
    rates = RecordRates()
    trainer = make_trainer(cfg, [ScheduleShapeCallback.from_config(cfg), rates])
    trainer.train()
    assert rates.rates == pytest.approx(PINNED_RATES, rel=1e-6, abs=1e-12)

    # A resume from checkpoint-6 continues the same shaped schedule (the scheduler's saved state is its step).
    resumed = RecordRates()
    trainer = make_trainer(cfg, [ScheduleShapeCallback.from_config(cfg), resumed])
    trainer.train(resume_from_checkpoint=str(Path(cfg.output_dir) / "checkpoint-6"))
    assert resumed.rates == pytest.approx(PINNED_RATES[6:], rel=1e-6, abs=1e-12)


def test_schedule_shapes_are_axolotls_formulas():
    linear = lambda step: step / 10  # noqa: E731 - a warmup of 10 steps
    assert quadratic_warmup(linear, 10)(5) == 0.25 and quadratic_warmup(linear, 10)(12) == 1.2
    flat = jagged_restarts(lambda step: 1.0, restart_steps=100, warmup_steps=10, anneal_steps=20, min_scale=0.0)
    assert [flat(s) for s in (0, 79, 81, 90, 99, 100, 105, 110, 150)] == pytest.approx(
        [1, 1, 0.95, 0.5, 0.05, 0, 0.5, 1, 1]
    )


def test_quadratic_warmup_only_shapes_cosine(train_config):
    assert ScheduleShapeCallback.from_config(train_config(lr_quadratic_warmup=True, lr_scheduler="linear")) is None
    with pytest.raises(ValueError, match="need jagged_restart_steps"):
        train_config(jagged_restart_warmup_steps=5)


@pytest.mark.parametrize(
    ("checkpointing", "mode"),
    [(True, True), (True, "legacy"), (True, "hidden_states"), (True, "disk"), ("offload_disk", None)],
)
def test_activation_offloading_routes_saved_activations_through_the_offload_hooks(train_config, checkpointing, mode):
    cfg = train_config(gradient_checkpointing=checkpointing, activation_offloading=mode)
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids = torch.arange(3, 40).unsqueeze(0)
    model(input_ids=ids, labels=ids).loss.backward()
    assert model.activation_offload.packed > 0  # the saved tensors went through the hooks (CPU: not moved)
    with pytest.raises(ValueError, match="activation_offloading: True needs gradient_checkpointing: true"):
        train_config(activation_offloading=True)


class LayerSnapshots(TrainerCallback):
    """Each decoder layer's weights after every optimizer step."""

    def __init__(self):
        self.after: list[list[torch.Tensor]] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.after.append(self._copy(model))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after.append(self._copy(model))

    @staticmethod
    def _copy(model) -> list[torch.Tensor]:
        return [torch.cat([p.detach().flatten().clone() for p in layer.parameters()]) for layer in model.model.layers]


def test_lisa_trains_only_the_chosen_layers_and_switches_every_interval(train_config, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig

    # The tiny model with 4 layers: LISA trains 1 of them, a new draw every 2 steps.
    config = LlamaConfig.from_pretrained(tiny_model_dir, num_hidden_layers=4)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "four")
    cfg = train_config(
        base_model=str(tmp_path / "four"),
        tokenizer_config=str(tiny_model_dir),
        lisa_n_layers=1,
        lisa_step_interval=2,
        max_steps=6,
        micro_batch_size=1,
        learning_rate=1e-2,
    )
    lisa, snapshots = LisaCallback.from_config(cfg), LayerSnapshots()
    make_trainer(cfg, [lisa, snapshots]).train()

    assert [step for step, _ in lisa.history] == [0, 2, 4]
    assert len({tuple(layers) for _, layers in lisa.history}) > 1  # the draw changes between intervals
    active_at = {step: layers for step, layers in lisa.history}
    for step in range(6):
        active = active_at[step - step % 2]
        changed = [not torch.equal(a, b) for a, b in zip(snapshots.after[step], snapshots.after[step + 1], strict=True)]
        assert changed == [i in active for i in range(4)], f"step {step}: trained {changed}, chosen {active}"

    # A resume at step 3 (between two switches) trains the layers the interrupted run had at step 3.
    resumed = LisaCallback.from_config(cfg)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "four")
    resumed.on_train_begin(None, type("State", (), {"global_step": 3})(), None, model=model)
    assert resumed.active == active_at[2]
    with pytest.raises(ValueError, match="lisa_n_layers selects which layers a full fine-tune trains"):
        train_config(lisa_n_layers=1, lisa_step_interval=2, adapter="lora", lora_target_linear=True)
    with pytest.raises(ValueError, match="plain DDP: remove deepspeed"):
        train_config(lisa_n_layers=1, lisa_step_interval=2, deepspeed="zero2")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _scrape(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {
        name: float(value)
        for name, value in (line.split() for line in text.splitlines() if line and not line.startswith("#"))
    }


def test_otel_metrics_endpoint_serves_the_last_logged_values(train_config):
    cfg = train_config(
        use_otel_metrics=True,
        otel_metrics_host="127.0.0.1",
        otel_metrics_port=_free_port(),
        max_steps=3,
        micro_batch_size=2,
    )
    endpoint = MetricsEndpointCallback.from_config(cfg)
    try:
        trainer = make_trainer(cfg, [endpoint])
        trainer.train()
        scraped = _scrape(endpoint.url)
    finally:
        endpoint.close()
    last = [entry for entry in trainer.state.log_history if "loss" in entry][-1]
    assert scraped["axolotl_global_steps"] == 3
    assert scraped["axolotl_train_loss"] == pytest.approx(last["loss"])
    assert scraped["axolotl_learning_rate"] == pytest.approx(last["learning_rate"])
    assert scraped["axolotl_gradient_norm"] == pytest.approx(last["grad_norm"])
    assert scraped["axolotl_epoch"] == pytest.approx(last["epoch"])
    assert "axolotl_memory_usage" not in scraped  # CPU: no GPU memory to report


def test_swanlab_offline_logs_the_run_under_output_dir_without_network(train_config, monkeypatch):
    monkeypatch.delenv("SWANLAB_API_KEY", raising=False)
    cfg = train_config(
        use_swanlab=True,
        swanlab_mode="offline",
        swanlab_project="hpcft-test",
        swanlab_experiment_name="tiny",
        swanlab_description="two steps",
        max_steps=2,
        micro_batch_size=2,
    )
    init = swanlab_init_arguments(cfg)
    assert init == {
        "project": "hpcft-test",
        "name": "tiny",
        "description": "two steps",
        "mode": "offline",
        "log_dir": str(Path(cfg.output_dir) / "swanlog"),
    }
    callback = SwanLabLoggingCallback.from_config(cfg)
    trainer = make_trainer(cfg, [callback])
    trainer.train()
    assert callback.run is None  # finished at the end of training
    (run,) = (Path(cfg.output_dir) / "swanlog").glob("run-*")  # one offline run, nothing sent anywhere
    records = b"".join(p.read_bytes() for p in run.glob("*.swanlab"))
    assert b"hpcft-test" in records and b"two steps" in records  # project and description
    assert b"loss" in records and b"grad_norm" in records  # the logged metrics
    assert "swanlab_project" in (run / "files" / "config.yaml").read_text()  # the config as the trainer read it


def test_save_only_model_checkpoints_hold_no_optimizer_state_and_a_requeue_restarts_from_step_0(train_config, tmp_path):
    from hpcft.core.features.training_loop import has_optimizer_state
    from hpcft.core.protocol import STARTS_FILE
    from hpcft.trainer.loop.checkpoints import find_latest_complete_checkpoint

    from .test_train_single import RUN, read_metrics, run_train, write_config

    cfg = train_config(**{**RUN, "max_steps": 6, "save_steps": 2, "save_only_model": True})
    config = write_config(cfg, tmp_path / "train.yaml")
    crashed = run_train(config, HPCFT_FAULT_CRASH_AT_STEP="5")
    assert crashed.returncode != 0
    latest = find_latest_complete_checkpoint(cfg.output_dir)
    assert latest == Path(cfg.output_dir) / "checkpoint-4"
    assert (latest / "model.safetensors").is_file() and not has_optimizer_state(latest)

    requeued = run_train(config)  # what the requeued job runs
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "hold no optimizer state and cannot be resumed: training again from step 0" in requeued.stderr
    starts = [json.loads(line)["step"] for line in (Path(cfg.output_dir) / STARTS_FILE).read_text().splitlines()]
    assert starts == [0, 0]
    steps = [m["step"] for m in read_metrics(cfg.output_dir)]
    assert steps == [1, 2, 3, 4] + [1, 2, 3, 4, 5, 6]  # the crash came before step 5 was logged
    assert (Path(cfg.output_dir) / "model.safetensors").is_file()
    assert [p.name for p in (Path(cfg.output_dir)).glob("checkpoint-*") if not has_optimizer_state(p)]


class ReLoraProbe(TrainerCallback):
    """Listed after ReLoraCallback: the model's logits, base weights and adapter deltas at the end of step 3 (before
    the restart) and at the start of step 4 (after it), and the adapter's optimizer state after it."""

    def __init__(self, ids: torch.Tensor):
        self.ids, self.before, self.after = ids, {}, {}

    def _look(self, model) -> dict:
        from hpcft.trainer.loop.relora import base_weight, lora_layers

        layers = lora_layers(model)
        with torch.no_grad():
            logits = model(input_ids=self.ids).logits
        return {
            "logits": logits,
            "base": {n: base_weight(layer).clone() for n, layer in layers.items()},
            "delta": {n: layer.get_delta_weight("default").detach().clone() for n, layer in layers.items()},
        }

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == 3:
            self.before = self._look(model)

    def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if state.global_step == 3:
            self.after = self._look(model)
            moments = [s["exp_avg"] for p, s in optimizer.state.items() if p.requires_grad and "exp_avg" in s]
            self.after["zeroed"] = sum(int((m == 0).sum()) for m in moments) / sum(m.numel() for m in moments)


def test_relora_merges_restarts_prunes_and_resumes_with_the_merged_base(train_config):
    from hpcft.trainer.loop.relora import (
        BASE_WEIGHTS_FILE,
        ReLoraCallback,
        base_weight,
        lora_layers,
        merge_for_final_save,
    )

    cfg = train_config(
        adapter="lora",
        lora_r=4,
        lora_alpha=8,
        lora_target_modules=["q_proj", "v_proj"],
        relora=True,
        relora_prune_ratio=0.9,
        jagged_restart_steps=3,
        jagged_restart_warmup_steps=1,
        jagged_restart_anneal_steps=1,
        max_steps=6,
        save_steps=4,
        micro_batch_size=1,
        learning_rate=1e-2,
    )
    probe = ReLoraProbe(torch.arange(3, 19).unsqueeze(0))
    trainer = make_trainer(cfg, [ReLoraCallback.from_config(cfg), ScheduleShapeCallback.from_config(cfg), probe])
    trainer.train()
    before, after = probe.before, probe.after
    torch.testing.assert_close(after["logits"], before["logits"], rtol=1e-4, atol=1e-5)  # same function
    for name, delta in before["delta"].items():
        assert delta.abs().max() > 0  # the adapter had learned something ...
        torch.testing.assert_close(after["base"][name], before["base"][name] + delta)  # ... now in the base
        assert after["delta"][name].abs().max() == 0  # and starts afresh (B = 0)
    assert after["zeroed"] == pytest.approx(0.9, abs=0.01)  # relora_prune_ratio of the adapter's Adam moments

    checkpoint = Path(cfg.output_dir) / "checkpoint-4"
    assert (checkpoint / BASE_WEIGHTS_FILE).is_file()
    saved = {n: base_weight(layer).clone() for n, layer in lora_layers(trainer.model).items()}
    final_logits = trainer.model(input_ids=probe.ids).logits.detach()
    merge_for_final_save(trainer)  # the final model: every restart and the last adapter merged in
    assert not lora_layers(trainer.model)
    torch.testing.assert_close(trainer.model(input_ids=probe.ids).logits, final_logits, rtol=1e-4, atol=1e-5)

    # A resume from checkpoint-4 starts from the merged base weights it saved, not from base_model's.
    resumed = ReLoraCallback.from_config(cfg)
    trainer = make_trainer(cfg, [resumed])
    fresh = {n: base_weight(layer).clone() for n, layer in lora_layers(trainer.model).items()}
    assert all(not torch.equal(fresh[n], saved[n]) for n in saved)
    trainer.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.restarts == 1
    for name, layer in lora_layers(trainer.model).items():
        torch.testing.assert_close(base_weight(layer), saved[name])  # steps 5-6 train the adapter only


def test_relora_restart_on_a_4bit_base_requantises_the_merged_weight(train_config):
    from hpcft.trainer.loop.relora import ReLoraCallback, base_weight, lora_layers

    cfg = train_config(
        adapter="qlora",
        load_in_4bit=True,
        lora_target_modules=["q_proj"],
        relora=True,
        jagged_restart_steps=3,
        jagged_restart_warmup_steps=1,
        jagged_restart_anneal_steps=1,
    )
    model = load_model(cfg, load_tokenizer(cfg), Precision())
    with torch.no_grad():
        model(input_ids=torch.arange(3, 19).unsqueeze(0))  # an inference forward: bitsandbytes repacks on CPU
    layers = lora_layers(model)
    for layer in layers.values():
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.05)  # as if the adapter had trained
    target = {n: base_weight(layer) + layer.get_delta_weight("default") for n, layer in layers.items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    ReLoraCallback.from_config(cfg).restart(model, optimizer, 3)
    for name, layer in layers.items():
        assert type(layer.get_base_layer().weight).__name__ == "Params4bit"  # still 4-bit
        error = (base_weight(layer) - target[name]).abs().max()
        assert error <= 0.16 * target[name].abs().max()  # one NF4 rounding of the merged weight, no more
        assert layer.get_delta_weight("default").abs().max() == 0


@pytest.mark.slow
def test_lisa_and_relora_train_on_two_processes_with_plain_ddp(train_config, tmp_path):
    from hpcft.trainer.loop.relora import BASE_WEIGHTS_FILE

    from .test_train_single import RUN, write_config
    from .test_train_zero3 import torchrun

    run = {**RUN, "max_steps": 4, "save_steps": 3}
    lisa = train_config(**run, lisa_n_layers=1, lisa_step_interval=2, output_dir=str(tmp_path / "lisa"))
    result = torchrun(write_config(lisa, tmp_path / "lisa.yaml"))
    assert result.returncode == 0, result.why
    assert "lisa: step 0: training layers" in result.log and "lisa: step 2: training layers" in result.log
    assert (Path(lisa.output_dir) / "model.safetensors").is_file()

    relora = train_config(
        **run,
        adapter="lora",
        lora_target_linear=True,
        relora=True,
        jagged_restart_steps=2,
        jagged_restart_warmup_steps=1,
        jagged_restart_anneal_steps=1,
        output_dir=str(tmp_path / "relora"),
    )
    result = torchrun(write_config(relora, tmp_path / "relora.yaml"))
    assert result.returncode == 0, result.why
    assert "relora: step 2: restart 1: adapter merged into the base weights" in result.log
    out = Path(relora.output_dir)
    assert (out / "checkpoint-3" / BASE_WEIGHTS_FILE).is_file()
    # The final model is the merged base, a full model: an adapter alone would miss the first restart.
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()


def test_save_only_model_still_saves_the_optimizer_state_when_the_stop_file_ends_an_allocation(train_config, tmp_path):
    from hpcft.core.features.training_loop import has_optimizer_state
    from hpcft.trainer.loop.faults import StopFileCallback

    cfg = train_config(save_only_model=True, save_steps=1, max_steps=4, micro_batch_size=2)
    stop = tmp_path / "STOP"
    trainer = make_trainer(cfg, [StopFileCallback(stop)])
    assert trainer.args.save_only_model
    stop.touch()  # the batch script's signal: the time limit is near
    trainer.train()
    checkpoint = Path(cfg.output_dir) / "checkpoint-1"
    assert has_optimizer_state(checkpoint)  # the requeued job resumes at step 1 instead of starting over


def test_a_requeue_resumes_from_the_newest_checkpoint_that_holds_optimizer_state(train_config):
    from hpcft.core.protocol import is_complete, write_complete_marker
    from hpcft.trainer.loop.checkpoints import resolve_resume_checkpoint

    cfg = train_config(save_only_model=True, max_steps=10)
    out = Path(cfg.output_dir)
    for step, full in ((2, True), (4, True), (6, False), (8, False)):  # 4: the stop-file save; 6, 8: model-only
        folder = out / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": 10}))
        if full:
            (folder / f"global_step{step}").mkdir()
        write_complete_marker(folder, step, 1)
    assert resolve_resume_checkpoint(cfg) == str(out / "checkpoint-4")
    assert [is_complete(out / f"checkpoint-{s}") for s in (2, 4, 6, 8)] == [True, True, False, False]
