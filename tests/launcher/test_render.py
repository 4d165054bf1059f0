"""Rendering: every profile at 1, 2 and 16 nodes gives scripts that pass bash -n and shellcheck, EDF files
that parse, ZeRO-3 DeepSpeed JSON; golden files pin the text; the tutorial's job comes out equivalent."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
PROFILES = ["cscs", "pyxis", "apptainer", "local"]
IMAGE = {
    "cscs": "/capstor/store/hpcft.sqsh",
    "pyxis": "nvcr.io/nvidia/pytorch:25.01-py3",
    "apptainer": "/scratch/images/hpcft.sif",
    "local": None,
}


def fake_token() -> str:
    """A fresh random value shaped like a Hugging Face token (none is committed, so no scanner flags the tests)."""
    return "hf_" + secrets.token_hex(17)


def render(run_cli, workspace, profile, *extra):
    out = workspace / f"run-{profile}-{len(extra)}"
    args = ["render", "--profile", profile, workspace / "cfg.yaml", "-o", out, *extra]
    if IMAGE[profile]:
        args += ["--image", IMAGE[profile]]
    result = run_cli(*args, cwd=workspace)
    assert result.code == 0, result.err
    assert result.out.strip() == str(out)
    return out


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("nodes", [1, 2, 16])
def test_rendered_run_dir_is_valid(profile, nodes, run_cli, workspace):
    run = render(run_cli, workspace, profile, "--nodes", str(nodes))
    script = run / "job.sbatch"
    for checked in (script, run / "preprocess.sbatch"):
        subprocess.run(["bash", "-n", checked], check=True)
        if shutil.which("shellcheck"):
            check = subprocess.run(["shellcheck", "-S", "info", checked], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout
        elif os.environ.get("CI"):
            pytest.fail("shellcheck is not installed (scripts/setup.sh installs it)")
    preprocess = (run / "preprocess.sbatch").read_text()
    assert "#SBATCH --nodes=1\n" in preprocess and "--gres" not in preprocess and "--gpus" not in preprocess
    assert "-m hpcft.trainer preprocess --dataset-processes" in preprocess
    text = script.read_text()
    assert f"#SBATCH --nodes={nodes}\n" in text
    assert "#SBATCH --ntasks-per-node=1\n" in text
    assert "--max_restarts=0" in text and "--rdzv_backend=c10d" in text
    ds = json.loads((run / "deepspeed.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3
    procs = 1 if profile == "local" else {"cscs": 4, "pyxis": 8, "apptainer": 4}[profile]
    assert ds["train_batch_size"] == 2 * 4 * nodes * procs
    train = yaml.safe_load((run / "train.yaml").read_text())
    assert train["deepspeed"] == str(run / "deepspeed.json")
    assert "launch" not in train
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["profile"] == profile and manifest["job_id"] is None
    assert {Path(i["path"]).name for i in manifest["inputs"]} == {"chat.jsonl", "pretrain.jsonl"}
    if profile == "cscs":
        edf = tomllib.loads((run / "environment.toml").read_text())
        assert edf["image"] == IMAGE["cscs"]
        assert edf["writable"] is True
        assert edf["annotations"]["com"]["hooks"]["aws_ofi_nccl"] == {"enabled": "true", "variant": "cuda13"}
        # The aws-ofi-nccl hook sets NCCL/libfabric variables itself; pinned copies would override its values.
        # NCCL_NET is the one CSCS asks to set by hand (test_cscs_nccl_net.py).
        assert [key for key in edf["env"] if key.startswith(("NCCL_", "FI_"))] == ["NCCL_NET"]
        assert edf["env"]["TRITON_CACHE_DIR"].startswith("/tmp/")  # node-local, not Lustre
        assert {"/capstor", "/iopsstor", str(run)} <= set(edf["mounts"]) and "/users" not in edf["mounts"]
        assert f"--environment={run}/environment.toml" in text
        assert "#SBATCH --environment" not in text  # CSCS discourages it: srun gets the EDF
    else:
        assert not (run / "environment.toml").exists()


def _normalise(text: str, run: Path, workspace: Path) -> str:
    text = text.replace(str(run), "<RUN_DIR>").replace(str(workspace), "<WORKSPACE>")
    text = text.replace(sys.executable, "<PYTHON>")
    return re.sub(r"hpcft \d+\.\d+\.\d+\S*", "hpcft <VERSION>", text)


@pytest.mark.parametrize("profile", PROFILES)
def test_golden_files(profile, run_cli, workspace):
    """The rendered text is the product: any change to it must be deliberate (HPCFT_UPDATE_GOLDEN=1)."""
    run = render(run_cli, workspace, profile, "--nodes", "2")
    names = ["job.sbatch", "preprocess.sbatch", "train.yaml", "deepspeed.json"] + (
        ["environment.toml"] if profile == "cscs" else []
    )
    for name in names:
        got = _normalise((run / name).read_text(), run, workspace)
        golden = GOLDEN / profile / name
        if os.environ.get("HPCFT_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(got)
        assert golden.is_file(), f"missing golden file {golden}; run with HPCFT_UPDATE_GOLDEN=1"
        assert got == golden.read_text(), f"{profile}/{name} differs from its golden file"


def test_container_invocations(run_cli, workspace):
    pyxis = (render(run_cli, workspace, "pyxis") / "job.sbatch").read_text()
    assert "--container-image=nvcr.io#nvidia/pytorch:25.01-py3" in pyxis
    assert "--container-mounts=" in pyxis and "--container-workdir=" in pyxis
    app = (render(run_cli, workspace, "apptainer") / "job.sbatch").read_text()
    assert "exec apptainer exec --nv --cleanenv \\\n      --bind " in app  # the login node's env stays out
    assert "export APPTAINERENV_HF_HOME=" in app  # what the container needs goes in by name


def test_container_profile_without_image_is_an_error(run_cli, workspace):
    result = run_cli("render", "--profile", "pyxis", workspace / "cfg.yaml", "-o", workspace / "r")
    assert result.code == 2 and "no image is set" in result.err
    assert not (workspace / "r").exists()


def test_precedence_profile_config_cli(run_cli, workspace):
    """profile (local: partition debug, time 00:20:00) < config launch (time 02:00:00) < command line."""
    run = render(run_cli, workspace, "local", "--partition", "big", "--set", "launch.job_name=from-cli")
    text = (run / "job.sbatch").read_text()
    assert "#SBATCH --time=02:00:00" in text
    assert "#SBATCH --partition=big" in text
    assert "#SBATCH --job-name=from-cli" in text


def test_user_profile_extends_shipped(run_cli, workspace, monkeypatch):
    folder = workspace / "profiles"
    folder.mkdir()
    (folder / "cscs.yaml").write_text(
        f"extends: cscs\nlaunch:\n  account: a127\n  mounts: [/users]\nnode_paths: [/capstor, {workspace}]\n"
    )
    (folder / "mine.yaml").write_text("extends: cscs\nlaunch:\n  partition: debug\n")
    monkeypatch.setenv("HPCFT_PROFILE_PATH", f"{folder}{os.pathsep}{os.environ['HPCFT_PROFILE_PATH']}")
    shown = run_cli("profiles", "show", "mine")
    merged = yaml.safe_load(shown.out)
    assert merged["launch"]["account"] == "a127" and merged["launch"]["partition"] == "debug"
    assert merged["runtime"] == "edf"
    listed = run_cli("profiles", "list")
    assert re.search(r"^mine\s", listed.out, re.M) and re.search(r"^local\s", listed.out, re.M)
    # As `git branch`: no verb lists, a name alone shows.
    assert run_cli("profiles").out == listed.out
    assert run_cli("profiles", "mine").out == shown.out


def test_overrides_are_typed_and_recorded(run_cli, workspace):
    run = render(run_cli, workspace, "local", "learning_rate=3e-4", "--set", "sample_packing=false")
    train = yaml.safe_load((run / "train.yaml").read_text())
    assert train["learning_rate"] == 3e-4 and train["sample_packing"] is False
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["overrides"] == ["sample_packing=false", "learning_rate=3e-4"]


def test_relative_paths_resolve_from_config_folder(run_cli, workspace, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    out = elsewhere / "run"
    result = run_cli("render", "--profile", "local", workspace / "cfg.yaml", "-o", out, cwd=elsewhere)
    assert result.code == 0, result.err
    train = yaml.safe_load((out / "train.yaml").read_text())
    assert train["datasets"][0]["path"] == str(workspace / "data" / "chat.jsonl")
    assert train["output_dir"] == str(workspace / "out")
    assert train["base_model"] == str(workspace / "model")


def test_default_run_dir_layout(run_cli, workspace):
    result = run_cli("render", "--profile", "local", workspace / "cfg.yaml", cwd=workspace)
    assert result.code == 0, result.err
    run = Path(result.out.strip())
    assert run.parent == workspace / "runs" / "unit"
    assert re.fullmatch(r"\d{8}-\d{6}(-\d+)?", run.name)
    assert (run / "logs").is_dir()


def test_tutorial_config_renders_to_the_tutorial_job(run_cli, workspace, monkeypatch):
    """The CSCS tutorial's axolotl YAML, as is (paths pointed at local files), with --profile cscs --nodes 4."""
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("HF_TOKEN", fake_token())
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    shutil.copy(DATA / "tutorial" / "axolotl_apertus_8b.yaml", workspace / "tutorial.yaml")
    out = workspace / "tutorial-run"
    result = run_cli(
        "render",
        "--profile",
        "cscs",
        workspace / "tutorial.yaml",
        "--nodes",
        "4",
        "--time",
        "11:59:59",
        "-o",
        out,
        "--account",
        "a127",
        "--image",
        "/capstor/store/cscs/swissai/a127/meditron/docker/axolotl.sqsh",
        f"datasets.0.path={workspace}/data/chat.jsonl",
        f"datasets.1.path={workspace}/data/pretrain.jsonl",
        f"deepspeed={DATA}/tutorial/deepspeed.json",
        f"output_dir={workspace}/models/apertus",
        f"dataset_prepared_path={workspace}/prepared/$USER",
        cwd=workspace,
    )
    assert result.code == 0, result.err
    # Keys with no effect in hpcft are named, not silently dropped.
    assert "'flash_attn_rms_norm' has no effect" in result.err
    assert "CutCrossEntropyPlugin' has no effect" in result.err
    text = (out / "job.sbatch").read_text()
    for line in [
        "--nodes=4",
        "--ntasks-per-node=1",
        "--gres=gpu:4",
        "--cpus-per-task=288",
        "--time=11:59:59",
        "--account=a127",
        "--partition=normal",
    ]:
        assert f"#SBATCH {line}\n" in text
    assert "HPCFT_NPROC_PER_NODE=4" in text
    assert '--rdzv_id="$SLURM_JOB_ID"' in text and "--node_rank" not in text  # expanded on the node, in single quotes
    assert 'MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)' in text
    assert "srun --label --kill-on-bad-exit=1 --wait=60" in text
    train = yaml.safe_load((out / "train.yaml").read_text())
    assert train["dataset_prepared_path"] == f"{workspace}/prepared/alice"
    assert train["model_type"] == "AutoModelForCausalLM" and train["sample_packing"] is True
    ds = json.loads((out / "deepspeed.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["train_batch_size"] == 8 * 2 * 4 * 4
    for path in out.rglob("*"):
        if path.is_file():
            content = path.read_text()
            assert os.environ["HF_TOKEN"] not in content and os.environ["WANDB_API_KEY"] not in content


def test_secret_interpolated_into_config_is_refused(run_cli, workspace, monkeypatch):
    token = fake_token()
    monkeypatch.setenv("HF_TOKEN", token)
    with open(workspace / "cfg.yaml", "a") as f:
        f.write("wandb_name: ${oc.env:HF_TOKEN}\n")
    result = run_cli("render", "--profile", "local", workspace / "cfg.yaml", "-o", workspace / "r")
    assert result.code == 2 and "secret $HF_TOKEN" in result.err
    assert token not in result.err
    assert not (workspace / "r").exists()


def test_token_looking_value_warns(run_cli, workspace):
    with open(workspace / "cfg.yaml", "a") as f:
        f.write(f"wandb_name: {fake_token()}\n")
    result = run_cli("validate", workspace / "cfg.yaml", "--profile", "local")
    assert result.code == 0
    assert "key 'wandb_name' looks like an access token" in result.err


def test_mounts_are_merged_without_duplicates(run_cli, workspace):
    with open(workspace / "cfg.yaml", "a") as f:
        f.write("  mounts: [/capstor, /iopsstor/scratch, /users, /data:/data2]\n")
    run = render(run_cli, workspace, "cscs")
    edf = tomllib.loads((run / "environment.toml").read_text())
    assert edf["mounts"].count("/capstor") == 1
    assert "/iopsstor/scratch" not in edf["mounts"]  # already inside /iopsstor
    assert "/data:/data2" in edf["mounts"]


def test_secret_file_is_sourced_on_the_node_never_copied(run_cli, workspace, monkeypatch):
    secret = workspace / "secrets.env"
    token = fake_token()
    secret.write_text(f"HF_TOKEN={token}\n")
    secret.chmod(0o600)
    folder = workspace / "profiles"
    folder.mkdir()
    (folder / "withsecret.yaml").write_text(f"extends: local\nsecret_file: {secret}\n")
    monkeypatch.setenv("HPCFT_PROFILE_PATH", f"{folder}{os.pathsep}{os.environ['HPCFT_PROFILE_PATH']}")
    out = workspace / "run-secret"
    result = run_cli("render", "--profile", "withsecret", workspace / "cfg.yaml", "-o", out)
    assert result.code == 0, result.err
    text = (out / "job.sbatch").read_text()
    assert f". {secret};" in text
    subprocess.run(["shellcheck", "-S", "warning", out / "job.sbatch"], check=True)
    assert not any(token in p.read_text() for p in out.rglob("*") if p.is_file())
    secret.chmod(0o644)
    refused = run_cli("render", "--profile", "withsecret", workspace / "cfg.yaml", "-o", workspace / "r2")
    assert refused.code == 2 and "chmod 600" in refused.err


FSDP_KEYS = """\
fsdp:
  - full_shard
  - auto_wrap
fsdp_config:
  fsdp_offload_params: true
  fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer
  fsdp_state_dict_type: FULL_STATE_DICT
"""


def test_fsdp_renders_as_zero3_without_gpus_and_as_fsdp_with_them(run_cli, workspace):
    (workspace / "cfg.yaml").write_text((workspace / "cfg.yaml").read_text() + FSDP_KEYS)
    cpu = render(run_cli, workspace, "local", "--nodes", "2")
    ds = json.loads((cpu / "deepspeed.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3 and "offload_param" not in ds["zero_optimization"]
    assert ds["train_batch_size"] == 2 * 4 * 2
    train_yaml = (cpu / "train.yaml").read_text()
    assert "runs as the equivalent DeepSpeed ZeRO-3 (preset zero3)" in train_yaml.split("\n\n")[0]
    trained = yaml.safe_load(train_yaml)
    assert "deepspeed" not in trained and trained["fsdp"] == ["full_shard", "auto_wrap"]
    warned = run_cli("validate", "--profile", "local", workspace / "cfg.yaml", cwd=workspace)
    assert warned.code == 0 and "accelerate runs FSDP only on GPUs" in warned.err

    gpu = render(run_cli, workspace, "pyxis")
    assert not (gpu / "deepspeed.json").exists()
    fsdp = json.loads((gpu / "fsdp.json").read_text())
    assert fsdp == {
        "version": 1,
        "state_dict_type": "FULL_STATE_DICT",
        "cpu_offload": True,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"],
        "reshard_after_forward": "full_shard",
    }
    assert "PyTorch FSDP1 through accelerate" in (gpu / "train.yaml").read_text()


def test_fsdp_with_deepspeed_is_refused_before_rendering(run_cli, workspace):
    (workspace / "cfg.yaml").write_text((workspace / "cfg.yaml").read_text() + FSDP_KEYS + "deepspeed: zero3\n")
    result = run_cli("render", "--profile", "local", workspace / "cfg.yaml", "-o", workspace / "run", cwd=workspace)
    assert result.code == 2 and "deepspeed and fsdp/fsdp_config cannot be used together" in result.err
    assert not (workspace / "run").exists()


def test_hub_model_id_without_a_token_warns_before_submitting(run_cli, workspace, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    (workspace / "cfg.yaml").write_text((workspace / "cfg.yaml").read_text() + "hub_model_id: someone/model\n")
    result = run_cli("validate", "--profile", "local", workspace / "cfg.yaml", cwd=workspace)
    assert result.code == 0 and "hub_model_id: no HF_TOKEN in your environment" in result.err
    monkeypatch.setenv("HF_TOKEN", fake_token())
    result = run_cli("validate", "--profile", "local", workspace / "cfg.yaml", cwd=workspace)
    assert result.code == 0 and "hub_model_id" not in result.err
