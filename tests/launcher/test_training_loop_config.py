"""The training-loop keys on the login node: what validate says, what is refused before anything is queued, and
what the rendered run folder holds (LISA without DeepSpeed, no SwanLab key anywhere)."""

from __future__ import annotations

import pytest
import yaml

from hpcft.core.errors import ConfigError
from hpcft.launcher.config import load_job

from .conftest import BASE_CONFIG


def _config(workspace, text: str):
    """The workspace's config with `text` added (each call starts from the plain config again)."""
    path = workspace / "cfg.yaml"
    path.write_text(BASE_CONFIG.replace("launch:\n", text + "launch:\n"))
    return path


def test_lisa_renders_a_ddp_job_without_deepspeed(run_cli, workspace):
    config = _config(workspace, "lisa_n_layers: 2\nlisa_step_interval: 5\n")
    result = run_cli("render", "--profile", "local", config, "-o", workspace / "run", cwd=workspace)
    assert result.code == 0, result.err
    assert not (workspace / "run" / "deepspeed.json").exists()
    text = (workspace / "run" / "train.yaml").read_text()
    assert "plain DDP, no DeepSpeed" in text
    trained = yaml.safe_load(text)
    assert "deepspeed" not in trained and trained["lisa_n_layers"] == 2 and trained["lisa_step_interval"] == 5


def test_swanlab_key_reaches_the_job_only_through_the_environment(run_cli, workspace, monkeypatch):
    monkeypatch.delenv("SWANLAB_API_KEY", raising=False)
    config = _config(workspace, "use_swanlab: true\nswanlab_project: demo\n")
    job = load_job(config, "local")
    assert any("no SwanLab API key" in w and "swanlab_mode: offline" in w for w in job.warnings)

    secret = "swl-0123456789abcdefghij"
    monkeypatch.setenv("SWANLAB_API_KEY", secret)
    job = load_job(config, "local")
    assert not any("SwanLab API key" in w for w in job.warnings)
    assert "SWANLAB_API_KEY" in job.profile.secret_env  # passed to the job like HF_TOKEN
    result = run_cli("render", "--profile", "local", config, "-o", workspace / "run", cwd=workspace)
    assert result.code == 0, result.err
    for path in (workspace / "run").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="ignore"), path


def test_save_only_model_says_what_a_requeue_does_and_a_model_only_checkpoint_is_not_resumed(workspace):
    job = load_job(_config(workspace, "save_only_model: true\nsave_steps: 10\n"), "local")
    assert any("after a crash or preemption a requeued job trains again from step 0" in w for w in job.warnings)

    checkpoint = workspace / "out" / "checkpoint-10"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    (checkpoint / "model.safetensors").write_text("")
    config = _config(workspace, f"resume_from_checkpoint: {checkpoint}\n")
    with pytest.raises(ConfigError, match="holds no optimizer state .* cannot be resumed"):
        load_job(config, "local")
    (checkpoint / "global_step10").mkdir()  # DeepSpeed's state: resumable
    load_job(config, "local")


def test_activation_offloading_and_schedule_shapes_are_checked_and_explained(workspace):
    job = load_job(_config(workspace, "gradient_checkpointing: true\nactivation_offloading: disk\n"), "local")
    assert any("offloads the activations to CPU memory, not to disk" in w for w in job.warnings)
    assert any("the profile has no GPUs, so there is nothing to offload" in w for w in job.warnings)
    job = load_job(_config(workspace, "lr_scheduler: linear\nlr_quadratic_warmup: true\n"), "local")
    assert any("lr_quadratic_warmup: shapes the warmup of lr_scheduler: cosine only" in w for w in job.warnings)


def test_otel_endpoint_port_is_checked(workspace):
    with pytest.raises(ConfigError, match="otel_metrics_port"):
        load_job(_config(workspace, "use_otel_metrics: true\notel_metrics_port: 70000\n"), "local")
    job = load_job(_config(workspace, "use_otel_metrics: true\n"), "local")
    assert any("listens on the first node only" in w for w in job.warnings)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("relora: true\nadapter: lora\nlora_target_linear: true\n", "relora: true needs jagged_restart_steps"),
        ("relora: true\njagged_restart_steps: 50\n", "relora: true needs adapter: lora or qlora"),
        (
            "relora: true\njagged_restart_steps: 50\nadapter: lora\nlora_target_linear: true\ndeepspeed: zero2\n",
            "hpcft runs ReLoRA with plain DDP: remove deepspeed",
        ),
        ("relora_steps: 50\n", "the old name of jagged_restart_steps: rename it"),
    ],
)
def test_relora_combinations_are_refused_on_the_login_node(workspace, keys, message):
    with pytest.raises(ConfigError, match=message):
        load_job(_config(workspace, keys), "local")


def test_relora_renders_a_ddp_job(run_cli, workspace):
    config = _config(workspace, "relora: true\njagged_restart_steps: 50\nadapter: lora\nlora_target_linear: true\n")
    result = run_cli("render", "--profile", "local", config, "-o", workspace / "run", cwd=workspace)
    assert result.code == 0, result.err
    assert not (workspace / "run" / "deepspeed.json").exists()
    assert "deepspeed" not in yaml.safe_load((workspace / "run" / "train.yaml").read_text())


def test_schedule_shapes_refuse_a_deepspeed_file_with_its_own_scheduler(workspace):
    ds = workspace / "ds.json"
    ds.write_text('{"zero_optimization": {"stage": 2}, "scheduler": {"type": "WarmupLR", "params": {}}}')
    with pytest.raises(ConfigError, match="brings its own 'scheduler'; remove that section"):
        load_job(_config(workspace, f"jagged_restart_steps: 100\ndeepspeed: {ds}\n"), "local")
    ds.write_text('{"zero_optimization": {"stage": 2}}')
    load_job(_config(workspace, f"jagged_restart_steps: 100\ndeepspeed: {ds}\n"), "local")


def test_relora_is_refused_with_preference_tuning():
    from hpcft.core.schema import TrainConfig

    keys = {"base_model": "m", "datasets": [{"path": "p.jsonl", "type": "chatml.intel"}], "rl": "dpo"}
    keys |= {"adapter": "lora", "lora_target_linear": True, "relora": True, "jagged_restart_steps": 50}
    with pytest.raises(ValueError, match="would move the reference model"):
        TrainConfig.model_validate(keys)
