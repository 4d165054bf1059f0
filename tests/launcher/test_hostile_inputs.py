"""The hostile corpus beyond config files (those are tests/data/bad_inputs/*.yaml, run by test_bad_inputs.py):
secrets planted through every route into every shipped profile, fake Slurm commands that hang, fail or print
garbage (tests/data/bad_inputs/fake_slurm/<scenario>/), corrupt run folders, and hostile command lines. Each
case asserts one clear line naming the key, file or argument, the exit code, no traceback, and nothing written."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcft.launcher.cli import main
from hpcft.launcher.slurm import SLURM_EXIT_CODE

FAKE_SLURM = Path(__file__).resolve().parents[1] / "data" / "bad_inputs" / "fake_slurm"
PROFILES = ["local", "pyxis", "cscs", "apptainer"]
IMAGE = {"local": [], "pyxis": ["--image", "/capstor/images/hpcft.sqsh"], "apptainer": ["--image", "/images/x.sif"]}
IMAGE["cscs"] = IMAGE["pyxis"]


def one_error(result, code: int = 2) -> str:
    """The one error line of a failed command (warnings aside), after checking the exit code and no traceback."""
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    errors = [line for line in result.err.strip().splitlines() if not line.startswith("hpcft: warning:")]
    assert len(errors) == 1, result.err
    assert errors[0].startswith("hpcft: error: ")
    return errors[0]


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.fixture
def fake_slurm(monkeypatch, tmp_path):
    """Put one scenario's fake Slurm commands first on PATH (only them: no real Slurm answers); returns the log
    of the calls they received."""
    log = tmp_path / "slurm-calls.log"

    def use(scenario: str) -> Path:
        monkeypatch.setenv("PATH", f"{FAKE_SLURM / scenario}{os.pathsep}/usr/bin{os.pathsep}/bin")
        monkeypatch.setenv("FAKE_SLURM_LOG", str(log))
        monkeypatch.setenv("HPCFT_SLURM_TIMEOUT", "2")
        return log

    return use


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(folder))
    return folder


# ---------------------------------------------------------------- 1. secrets: no route reaches a file


def _secret() -> str:
    return f"s3cr3t-{secrets.token_hex(12)}"


ROUTES = {
    # route: (text added to the config (into its launch: block where it starts with two spaces), command-line
    # words, text of a user profile that extends the shipped one); {v} is the planted secret's value
    "config launch.env": ("  env:\n    HF_TOKEN: {v}\n", [], ""),
    "config key": ("hf_token: {v}\n", [], ""),
    "--set launch.env": ("", ["--set", "launch.env.WANDB_API_KEY={v}"], ""),
    "--set a plain key": ("", ["--set", "wandb_name={v}"], ""),
    "--set an env name like a secret": ("", ["--set", "launch.env.S3_SECRET=plain-looking"], ""),
    "interpolation": ("wandb_name: ${{oc.env:HF_TOKEN}}\n", [], ""),
    "interpolation into launch.env": ("  env:\n    X: ${{oc.env:HF_TOKEN}}\n", [], ""),
    "shell-style reference": ("wandb_run_id: run-$MY_SERVICE_TOKEN\n", [], ""),
    "pasted value": ("wandb_notes: 'token is {v}'\n", [], ""),
    "profile env": ("", [], "env:\n  HF_TOKEN: {v}\n"),
    "profile env, name like a secret": ("", [], "env:\n  DB_PASSWORD: {v}\n"),
    "profile setup": ("", [], "setup: ['export WANDB_API_KEY={v}']\n"),
    "profile launch.env": ("", [], "launch:\n  env:\n    HF_TOKEN: {v}\n"),
}


@pytest.mark.parametrize("profile", PROFILES)
def test_exported_secrets_reach_no_rendered_file_of_any_profile(profile, workspace, run_cli, monkeypatch):
    planted = {"HF_TOKEN": _secret(), "WANDB_API_KEY": _secret(), "MY_SERVICE_TOKEN": _secret()}
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    result = run_cli("render", "--profile", profile, workspace / "cfg.yaml", *IMAGE[profile], "-o", workspace / "r")
    assert result.code == 0, result.err
    files = files_under(workspace / "r")
    assert {"job.sbatch", "preprocess.sbatch", "train.yaml", "manifest.json"} <= {f.name for f in files}
    for file in files:
        text = file.read_bytes()
        for name, value in planted.items():
            assert value.encode() not in text, f"${name} written into {file}"


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("profile", PROFILES)
def test_a_secret_through_any_route_is_refused_and_nothing_is_written(
    profile, route, workspace, run_cli, monkeypatch, cscs_sees_tmp_path
):
    value = _secret()
    for name in ("HF_TOKEN", "MY_SERVICE_TOKEN"):
        monkeypatch.setenv(name, value)
    config_text, words, profile_text = ROUTES[route]
    cfg = workspace / "cfg.yaml"
    text = cfg.read_text()
    added = config_text.format(v=value)
    cfg.write_text(text.replace("launch:\n", f"launch:\n{added}", 1) if added.startswith("  ") else text + added)
    user_profile = profile
    if profile_text:
        user_profile = f"{profile}-user"
        (cscs_sees_tmp_path / f"{user_profile}.yaml").write_text(
            f"extends: {profile}\n{profile_text.format(v=value)}"
            + (f"node_paths: [/capstor, /iopsstor, /users, {workspace}]\n" if profile == "cscs" else "")
        )
    args = [w.format(v=value) for w in words]
    result = run_cli("render", "--profile", user_profile, cfg, *IMAGE[profile], *args, "-o", workspace / "r")
    line = one_error(result)
    assert "is a secret" in line or "value of the secret" in line, line
    assert "export " in line
    assert value not in result.err  # the message names the variable, never its value
    assert not (workspace / "r").exists() and not (workspace / "runs").exists()


# ---------------------------------------------------------------- 2. submission as a transaction


def _submit(run_cli, workspace, *extra):
    return run_cli("submit", "--profile", "local", workspace / "cfg.yaml", "--set", "launch.preprocess=inline", *extra)


def test_submit_with_an_unwritable_state_folder_reports_the_job_and_exits_0(workspace, run_cli, fake_slurm, state):
    calls = fake_slurm("accepts")
    state.parent.mkdir(exist_ok=True)
    state.write_text("a file where the state folder should be: not writable, even by root\n")
    result = _submit(run_cli, workspace, "-o", workspace / "r")
    assert result.code == 0, result.err
    assert "submitted job 4242" in result.out
    assert "Traceback" not in result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("hpcft: warning:")]
    assert any("job 4242 is queued" in w and "jobs.jsonl" in w for w in warnings), result.err
    assert json.loads((workspace / "r" / "manifest.json").read_text())["job_id"] == "4242"
    assert calls.read_text().startswith("sbatch --parsable")
    # What the warning promises: the job is found from its run folder.
    status = run_cli("status", workspace / "r", "--no-plot")
    assert status.code == 0 and "4242" in status.out, status.err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder; the file case above covers it")
def test_submit_with_a_read_only_state_folder(workspace, run_cli, fake_slurm, state):
    fake_slurm("accepts")
    (state / "hpcft").mkdir(parents=True)
    (state / "hpcft").chmod(0o555)
    result = _submit(run_cli, workspace, "-o", workspace / "r")
    assert result.code == 0 and "submitted job 4242" in result.out and "job 4242 is queued" in result.err


@pytest.mark.parametrize(("scenario", "expect"), [("fails", "Unable to contact"), ("garbage", "proxy error")])
def test_sbatch_that_fails_or_prints_garbage_leaves_nothing(scenario, expect, workspace, run_cli, fake_slurm, state):
    fake_slurm(scenario)
    result = _submit(run_cli, workspace, "-o", workspace / "r")
    assert expect in one_error(result, SLURM_EXIT_CODE)
    assert not (workspace / "r").exists() and not list(workspace.glob(".r.tmp-*"))
    assert not (state / "hpcft" / "jobs.jsonl").exists()


# ---------------------------------------------------------------- 3. job ids: only ids reach Slurm


def _submitted_run(workspace, run_cli, **manifest) -> Path:
    assert run_cli("render", "--profile", "local", workspace / "cfg.yaml", "-o", workspace / "r").code == 0
    path = workspace / "r" / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **manifest}))
    return workspace / "r"


@pytest.mark.parametrize(
    "manifest",
    [
        {"job_id": "--me"},
        {"job_id": "-u root"},
        {"job_id": "12,13"},
        {"job_id": ["12"]},
        {"job_id": "12", "preprocess": {"job_id": "--me"}},
        {"job_id": "12", "preprocess": {"job_id": "11;scancel"}},
    ],
    ids=["--me", "-u", "list-of-ids", "json-list", "preprocess --me", "preprocess ;"],
)
@pytest.mark.parametrize("verb", ["cancel", "status", "logs"])
def test_a_manifest_holding_anything_but_a_job_id_reaches_no_slurm_command(
    verb, manifest, workspace, run_cli, fake_slurm
):
    run_dir = _submitted_run(workspace, run_cli, **manifest)
    calls = fake_slurm("accepts")
    line = one_error(run_cli(verb, run_dir))
    assert "manifest.json" in line and "is not a Slurm job id" in line
    assert not calls.exists(), calls.read_text()  # scancel (or squeue, sacct) was never called


@pytest.mark.parametrize("ref", ["--me", "-1", "12;13", "12_", "1 2"])
def test_a_job_id_argument_that_is_not_an_id(ref, workspace, run_cli, fake_slurm):
    calls = fake_slurm("accepts")
    result = run_cli("cancel", "--", ref) if ref.startswith("-") else run_cli("cancel", ref)
    assert result.code == 2 and "Traceback" not in result.err
    assert not calls.exists()


def test_an_index_line_edited_by_hand_is_skipped(workspace, run_cli, fake_slurm, state):
    calls = fake_slurm("accepts")
    index = state / "hpcft" / "jobs.jsonl"
    index.parent.mkdir(parents=True)
    run_dir = _submitted_run(workspace, run_cli, job_id="77")
    good = {"job_id": "77", "run_dir": str(run_dir), "submitted_at": "2099-01-01T00:00:00"}
    index.write_text(
        "\n".join(
            [json.dumps({"job_id": "--me", "run_dir": str(run_dir)}), "[1, 2]", '{"run_dir": 5}', json.dumps(good)]
        )
        + "\n"
    )
    result = run_cli("status", "--all")
    assert result.code == 0, result.err
    assert "--me" not in calls.read_text() and "squeue" in calls.read_text()


# ---------------------------------------------------------------- corrupt run folders


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (b"[1, 2, 3]", "not an hpcft manifest (a JSON list"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "unreadable manifest"),
        (b"", "unreadable manifest"),
        (b'{"job_id": ', "unreadable manifest"),
        (b'"12"', "not an hpcft manifest (a JSON str"),
    ],
    ids=["list", "binary", "empty", "cut-short", "string"],
)
@pytest.mark.parametrize("verb", ["cancel", "status", "logs", "plot"])
def test_a_corrupt_manifest_is_one_line(verb, content, expect, workspace, run_cli, fake_slurm):
    run_dir = _submitted_run(workspace, run_cli, job_id="12")
    (run_dir / "manifest.json").write_bytes(content)
    calls = fake_slurm("accepts")
    line = one_error(run_cli(verb, run_dir))
    assert expect in line and "manifest.json" in line
    assert not calls.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("preprocess", "12"),
        ("sweep", "x"),
        ("sweep", {"points": 3}),
        ("output_dir", 5),
        ("attempts", [1]),
        ("launch", []),
    ],
    ids=["preprocess-str", "sweep-str", "sweep-points-int", "output_dir-int", "attempts-int", "launch-list"],
)
@pytest.mark.parametrize("verb", ["status", "logs", "plot", "cancel"])
def test_a_manifest_field_of_the_wrong_shape_is_one_line(verb, field, value, workspace, run_cli, fake_slurm):
    run_dir = _submitted_run(workspace, run_cli, job_id="12", **{field: value})
    calls = fake_slurm("finished")
    line = one_error(run_cli(verb, run_dir))
    assert f"'{field}' must be" in line and "manifest.json" in line
    assert not calls.exists()


def test_an_attempt_record_edited_by_hand_does_not_hide_the_run(workspace, run_cli, fake_slurm):
    attempts = [{"world_size": 2}, {"world_size": 2, "resumed_from": "/x/checkpoint-5"}]
    run_dir = _submitted_run(workspace, run_cli, job_id="12", attempts=attempts)
    fake_slurm("finished")
    result = run_cli("status", run_dir, "--no-plot")
    assert result.code == 0, result.err
    assert "COMPLETED" in result.out and "attempt 1: 2 rank(s), from the start" in result.out
    assert "attempt 2: (unreadable record in manifest.json)" in result.out


def test_a_run_folder_without_manifest(workspace, run_cli, fake_slurm):
    fake_slurm("accepts")
    (workspace / "empty-run").mkdir()
    assert "no manifest.json" in one_error(run_cli("cancel", workspace / "empty-run"))


# ---------------------------------------------------------------- fake Slurm commands: hang, fail, garbage


@pytest.mark.parametrize("verb", [["status", "123"], ["cancel", "123"], ["logs", "123"]])
def test_a_hanging_slurm_command_ends_within_seconds(verb, workspace, run_cli, fake_slurm):
    fake_slurm("hangs")
    start = time.monotonic()
    line = one_error(run_cli(*verb), SLURM_EXIT_CODE)
    assert time.monotonic() - start < 15  # HPCFT_SLURM_TIMEOUT=2, per command, and the sleeping child killed too
    assert "did not answer within 2 s" in line


def test_a_hanging_sbatch_leaves_nothing_and_says_to_check_the_queue(workspace, run_cli, fake_slurm, state):
    fake_slurm("hangs")
    line = one_error(_submit(run_cli, workspace, "-o", workspace / "r"), SLURM_EXIT_CODE)
    assert "sbatch did not answer within 2 s" in line and "squeue --me" in line
    assert not (workspace / "r").exists() and not (state / "hpcft").exists()


@pytest.mark.parametrize("verb", [["status", "123"], ["cancel", "123"], ["logs", "123"]])
def test_a_failing_slurm_says_so_with_exit_69(verb, workspace, run_cli, fake_slurm):
    fake_slurm("fails")
    assert "Unable to contact slurm controller" in one_error(run_cli(*verb), SLURM_EXIT_CODE)


def test_slurm_printing_garbage(workspace, run_cli, fake_slurm):
    run_dir = _submitted_run(workspace, run_cli, job_id="123")
    fake_slurm("garbage")
    assert "cannot parse squeue line: 'no pipes here'" in one_error(run_cli("status", run_dir), SLURM_EXIT_CODE)
    assert "cannot parse scontrol line" in one_error(run_cli("status", "123"), SLURM_EXIT_CODE)
    assert "cannot parse scontrol line" in one_error(run_cli("logs", run_dir), SLURM_EXIT_CODE)


def test_status_when_sacct_fails_says_so_and_exits_69(workspace, run_cli, fake_slurm):
    fake_slurm("sacct_fails")
    run_dir = _submitted_run(workspace, run_cli, job_id="321")
    result = run_cli("status", run_dir, "--no-plot")
    line = one_error(result, SLURM_EXIT_CODE)
    assert "sacct failed" in line and "321" in line and "unknown" in line
    assert "UNKNOWN" in result.out  # the table is still printed


def test_a_giant_sweep_is_refused_within_seconds_before_anything_is_loaded(workspace, run_cli, fake_slurm):
    fake_slurm("accepts")  # MaxArraySize = 1001
    values = ",".join(str(i) for i in range(1, 101))
    start = time.monotonic()
    result = run_cli(
        "submit", "--profile", "local", workspace / "cfg.yaml", "--sweep", f"seed={values}", "--sweep",
        f"lora_r={values}", "--sweep", "micro_batch_size=1,2,3,4,5,6,7,8,9,10",
    )  # fmt: skip
    line = one_error(result)
    assert time.monotonic() - start < 5
    assert "--sweep: 100000 points" in line and "MaxArraySize 1001" in line
    assert not (workspace / "runs").exists()


def test_a_sweep_larger_than_the_clusters_max_array_size(workspace, run_cli, fake_slurm):
    fake_slurm("small_arrays")  # MaxArraySize = 4
    result = run_cli("submit", "--profile", "local", workspace / "cfg.yaml", "--sweep", "seed=1,2,3,4,5")
    assert "5 points" in one_error(result) and "MaxArraySize 4" in result.err
    result = run_cli("submit", "--profile", "local", workspace / "cfg.yaml", "--sweep", "seed=1,2,3,4", "--dry-run")
    assert result.code == 0, result.err


def test_without_scontrol_the_default_max_array_size_holds(workspace, run_cli, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    values = ",".join(str(i) for i in range(1002))
    result = run_cli("submit", "--profile", "local", workspace / "cfg.yaml", "--sweep", f"seed={values}", "--dry-run")
    assert "1002 points" in one_error(result) and "MaxArraySize 1001" in result.err


def test_image_check_of_a_fifo_does_not_block(workspace, run_cli):
    fifo = workspace / "image.sqsh"
    os.mkfifo(fifo)
    line = one_error(run_cli("image", "check", "--profile", "pyxis", "--image", fifo))
    assert "not a regular file" in line and str(fifo) in line


# ---------------------------------------------------------------- hostile paths and command lines


@pytest.fixture
def loop(workspace) -> Path:
    (workspace / "loop-a").symlink_to(workspace / "loop-b")
    (workspace / "loop-b").symlink_to(workspace / "loop-a")
    return workspace / "loop-a"


def test_symlink_loop_as_the_config(workspace, run_cli, loop):
    assert str(loop) in one_error(run_cli("validate", loop, "--profile", "local"))


@pytest.mark.parametrize(("key", "value"), [("output_dir", "./loop-a"), ("datasets.0.path", "./loop-a/x.jsonl")])
def test_symlink_loop_as_a_path_in_the_config(key, value, workspace, run_cli, loop):
    line = one_error(run_cli("render", "--profile", "local", workspace / "cfg.yaml", f"{key}={value}"))
    assert "symlink loop" in line and "loop-a" in line
    assert not (workspace / "runs").exists()


def test_symlink_loop_as_the_run_folder(workspace, run_cli, loop):
    line = one_error(run_cli("render", "--profile", "local", workspace / "cfg.yaml", "-o", loop))
    assert line.startswith("hpcft: error: -o: ") and "symlink loop" in line


def test_run_folder_naming_an_existing_file(workspace, run_cli):
    before = (workspace / "cfg.yaml").read_text()
    line = one_error(run_cli("render", "--profile", "local", workspace / "cfg.yaml", "-o", workspace / "cfg.yaml"))
    assert "is a file, not a folder" in line
    assert (workspace / "cfg.yaml").read_text() == before


@pytest.mark.parametrize("argv", [["validate", "cfg.yaml", "--profile", "local"], ["status"], ["logs"]])
def test_a_deleted_working_folder(argv, workspace, monkeypatch, capsys):
    gone = workspace / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the current folder no longer exists" in err


def test_a_config_file_name_with_a_newline_stays_in_its_comment(workspace, run_cli):
    cfg = workspace / "evil\ntouch pwned\n#SBATCH --x.yaml"
    cfg.write_text((workspace / "cfg.yaml").read_text())
    result = run_cli("render", "--profile", "local", cfg, "-o", workspace / "r")
    assert result.code == 0, result.err
    for name in ("job.sbatch", "preprocess.sbatch", "train.yaml"):
        lines = (workspace / "r" / name).read_text().splitlines()
        assert not any(line.startswith(("touch pwned", "#SBATCH --x.yaml")) for line in lines), name
        assert any("evil\\ntouch pwned" in line and line.startswith("#") for line in lines), name


def test_a_render_that_cannot_create_the_cache_folder_leaves_no_run_folder(workspace, run_cli, monkeypatch):
    home = workspace / "home-is-a-file"
    home.write_text("")
    monkeypatch.setenv("HOME", str(home))  # the pyxis profile's cache_dir is ~/.cache/huggingface
    result = run_cli("render", "--profile", "pyxis", workspace / "cfg.yaml", *IMAGE["pyxis"], "-o", workspace / "r")
    assert "cannot create" in one_error(result) and str(home) in result.err
    assert not (workspace / "r").exists() and not list(workspace.glob(".r.tmp-*"))


def test_profiles_list_with_one_broken_user_profile_lists_the_others(workspace, run_cli, cscs_sees_tmp_path):
    (cscs_sees_tmp_path / "broken.yaml").write_text("env: [unclosed\n")
    result = run_cli("profiles", "list")
    assert result.code == 0, result.err
    assert all(name in result.out for name in PROFILES)
    assert "profile 'broken' cannot be used" in result.err and "broken.yaml" in result.err


def test_a_profile_path_that_is_a_folder(workspace, run_cli, cscs_sees_tmp_path):
    (cscs_sees_tmp_path / "p.yaml").mkdir()
    line = one_error(run_cli("validate", workspace / "cfg.yaml", "--profile", "p"))
    assert "p.yaml is a folder, not a profile" in line and "unknown profile" not in line


@pytest.mark.parametrize("argv", [["profiles", "list"]])
def test_a_closed_pipe_is_a_quiet_exit(argv, tmp_path):
    """`hpcft profiles list | head -1`: a real pipe, closed by the reader after one line, with more output than
    the pipe holds (1,500 user profiles) so that writing fails."""
    profiles = tmp_path / "many-profiles"
    profiles.mkdir()
    for i in range(1500):
        (profiles / f"site{i:04d}.yaml").write_text(f"extends: local\ndescription: {'x' * 60} {i}\n")
    env = {**os.environ, "HOME": str(tmp_path), "HPCFT_PROFILE_PATH": str(profiles)}
    child = subprocess.Popen(
        [sys.executable, "-m", "hpcft.launcher", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert child.stdout.readline()
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0, err
    assert err == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_dataset_is_refused_by_validate(workspace, run_cli):
    (workspace / "data" / "chat.jsonl").chmod(0)
    for verb, extra in (("validate", []), ("render", ["-o", workspace / "r"])):
        line = one_error(run_cli(verb, "--profile", "local", workspace / "cfg.yaml", *extra))
        assert "datasets[0].path" in line and "cannot read" in line
    assert not (workspace / "r").exists()
