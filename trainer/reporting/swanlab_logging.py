"""`use_swanlab`: the training metrics logged to SwanLab from rank 0.

Our own small callback rather than transformers' SwanLabCallback, which calls `swanlab.get_run()` expecting None
where the pinned swanlab raises. The API key never passes through the config: swanlab reads $SWANLAB_API_KEY
(a secret the job receives from the submitter's environment) or `swanlab login`'s file. Offline mode writes
under output_dir/swanlog and needs no network (`swanlab sync` uploads it later).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.features.training_loop import swanlab_logged_in
from hpcft.core.schema import TrainConfig

log = logging.getLogger("hpcft.trainer")


def swanlab_init_arguments(cfg: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of swanlab.init for a config (no secret among them)."""
    values = {
        "project": cfg.swanlab_project,
        "workspace": cfg.swanlab_workspace,
        "name": cfg.swanlab_experiment_name,
        "description": cfg.swanlab_description,
        "mode": cfg.swanlab_mode or "cloud",
        "log_dir": str(Path(cfg.output_dir) / "swanlog"),
    }
    return {key: value for key, value in values.items() if value is not None}


class SwanLabLoggingCallback(TrainerCallback):
    """swanlab.init at the start of training, one swanlab.log per Trainer log event, swanlab.finish at the end."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.run: Any = None

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> SwanLabLoggingCallback | None:
        if not cfg.use_swanlab or cfg.swanlab_mode == "disabled":
            return None
        if importlib.util.find_spec("swanlab") is None:
            # As with wandb: a missing tracker must not cost the allocation.
            log.warning(
                "use_swanlab: true but swanlab is not installed: not logging to SwanLab (pip install 'hpcft[swanlab]')"
            )
            return None
        return cls(cfg)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if not state.is_world_process_zero or self.run is not None:
            return
        import swanlab

        init = swanlab_init_arguments(self.cfg)
        if init["mode"] == "cloud" and not swanlab_logged_in():
            # A batch job cannot answer swanlab's login prompt: keep the logs for `swanlab sync` rather than fail.
            log.warning(
                "use_swanlab: no SwanLab API key on this node (SWANLAB_API_KEY): logging offline to %s; "
                "upload with `swanlab sync`",
                init["log_dir"],
            )
            init["mode"] = "offline"
        hosts = {"api_host": self.cfg.swanlab_api_host, "web_host": self.cfg.swanlab_web_host}
        if any(hosts.values()):
            init["settings"] = swanlab.Settings(**{key: value for key, value in hosts.items() if value})
        if self.cfg.swanlab_log_model:
            log.warning("swanlab_log_model: SwanLab cannot store models yet: the model stays in output_dir only")
        # The config as the trainer read it (no secrets: the schema has no field for one) and the step to start at.
        self.run = swanlab.init(config=self.cfg.training_dict(), reinit=True, **init)
        log.info("swanlab: logging to project %s (%s mode)", init.get("project"), init["mode"])

    def on_log(self, args, state: TrainerState, control: TrainerControl, logs: dict[str, Any] | None = None, **kwargs):
        if self.run is None or not logs:
            return
        values = {key: value for key, value in logs.items() if isinstance(value, (int, float))}
        if values:
            import swanlab

            swanlab.log(values, step=state.global_step)

    def on_train_end(self, args, state: TrainerState, control: TrainerControl, **kwargs):
        if self.run is not None:
            import swanlab

            swanlab.finish()
            self.run = None
