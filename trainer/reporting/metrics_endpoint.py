"""`use_otel_metrics`: the training metrics served for Prometheus over HTTP from rank 0, as axolotl's OpenTelemetry
callback serves them (same metric names, so an existing dashboard keeps working).

prometheus_client's own server and text format; a registry of our own, so nothing global is touched. The endpoint
lives as long as the training process (a scrape after the last step still sees the final values).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")

# log key of the Trainer -> (metric name, help)
GAUGES = {
    "loss": ("axolotl_train_loss", "Training loss of the last logging step"),
    "eval_loss": ("axolotl_eval_loss", "Evaluation loss of the last evaluation"),
    "learning_rate": ("axolotl_learning_rate", "Learning rate of the last logging step"),
    "epoch": ("axolotl_epoch", "Epochs trained"),
    "grad_norm": ("axolotl_gradient_norm", "Gradient norm of the last logging step"),
}


class MetricsEndpointCallback(TrainerCallback):
    """Serves /metrics on host:port from the first training rank; the other ranks serve nothing."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.registry = CollectorRegistry()
        self.gauges = {key: Gauge(name, text, registry=self.registry) for key, (name, text) in GAUGES.items()}
        self.step = Gauge("axolotl_global_steps", "Optimizer steps done", registry=self.registry)
        # GPU memory of rank 0's device in MB; on CPU there is none to report (no gauge rather than a false 0).
        self.memory = (
            Gauge("axolotl_memory_usage", "GPU memory allocated on rank 0, MB", registry=self.registry)
            if torch.cuda.is_available()
            else None
        )
        self.server: Any = None

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> MetricsEndpointCallback | None:
        if not cfg.use_otel_metrics:
            return None
        return cls(cfg.otel_metrics_host or "localhost", cfg.otel_metrics_port or 8000)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if not state.is_world_process_zero or self.server is not None:
            return
        try:
            self.server, _thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            # A busy port must not cost the allocation: train without the endpoint and say why.
            log.warning(
                "use_otel_metrics: cannot listen on %s:%d (%s): training without the endpoint",
                self.host,
                self.port,
                exc.strerror or exc,
            )
            return
        self.step.set(state.global_step)
        print(f"hpcft: metrics for Prometheus at {self.url}", flush=True)

    def on_log(self, args, state: TrainerState, control: TrainerControl, logs: dict[str, Any] | None = None, **kwargs):
        if self.server is None or not logs:
            return
        for key, gauge in self.gauges.items():
            value = logs.get(key)
            if isinstance(value, (int, float)):
                gauge.set(value)
        self.step.set(state.global_step)
        if self.memory is not None:
            self.memory.set(torch.cuda.memory_allocated() / 2**20)

    def close(self) -> None:
        """Stop serving (tests; a training process simply exits)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
