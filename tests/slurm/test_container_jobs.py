"""Jobs in a real container image on the local two-node cluster: Enroot + Pyxis (scripts/local-container-runtime.sh
up) and the CPU image `hpcft image build --local` writes, through the local-pyxis profile, whose job plan is the
pyxis one (--container-image, --container-mounts, --container-env). Where the image's own files (/etc/hpcft-image,
its Debian /etc/os-release, its venv) show up in the job, the job ran inside it: the host has none of them.

These need the runtime and the image: skipped without them, failed under HPCFT_REQUIRE_SLURM=1 (CI), where
scripts/test.sh builds both first."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

IMAGE = Path(os.environ.get("HPCFT_IMAGE_CACHE", "/var/tmp/hpcft-images")) / "hpcft-local.sqsh"
MARKER = "/etc/hpcft-image"


def _missing_runtime() -> list[str]:
    problems = []
    if shutil.which("enroot") is None:
        problems.append("enroot is not installed (sudo scripts/local-container-runtime.sh up)")
    help_text = subprocess.run(["srun", "--help"], capture_output=True, text=True).stdout
    if "--container-image" not in help_text:
        problems.append("srun has no --container-image: pyxis is not in plugstack.conf (local-container-runtime.sh)")
    if not IMAGE.is_file():
        problems.append(f"no image {IMAGE} (sudo .venv/bin/hpcft image build --local)")
    return problems


@pytest.fixture(scope="session")
def image_id() -> str:
    """The id the image carries in /etc/hpcft-image, read from the .sqsh file itself."""
    problems = _missing_runtime()
    if problems:
        if os.environ.get("HPCFT_REQUIRE_SLURM") == "1":
            pytest.fail("; ".join(problems))
        pytest.skip("; ".join(problems))
    text = subprocess.run(
        ["unsquashfs", "-cat", str(IMAGE), MARKER.lstrip("/")], capture_output=True, text=True, check=True
    ).stdout
    return re.search(r"^HPCFT_IMAGE_ID=(\S+)$", text, re.M).group(1)


def _tiny_elsewhere(tiny_cpu: Path, root: Path, **changes: str) -> Path:
    """tiny-cpu.yaml with its model and datasets in folders of their own (not under the run folder or the
    config's folder): inside the container they exist only if the job mounted them."""
    shared = root / "shared"
    shutil.copytree(tiny_cpu.parent / "tiny-assets" / "model", shared / "models" / "tiny")
    shutil.copytree(tiny_cpu.parent / "data", shared / "datasets")
    text = tiny_cpu.read_text()
    for old, new in {
        "./tiny-assets/model": str(shared / "models" / "tiny"),
        "./data/": f"{shared / 'datasets'}/",
        "./tiny-assets/prepared": str(shared / "prepared"),
        "./tiny-assets/outputs": str(shared / "outputs"),
        **changes,
    }.items():
        assert old in text
        text = text.replace(old, new)
    config = root / "configs" / "tiny.yaml"
    config.parent.mkdir()
    config.write_text(text)
    return config


def _metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_srun_runs_in_the_image_on_both_nodes(image_id):
    """The runtime itself: one task per node in the image, with the image's Python, torch and compiled op."""
    assert not Path(MARKER).exists(), "the host must not have the image's marker, or nothing below proves anything"
    probe = (
        f"echo $(hostname) $(sed -n 's/^HPCFT_IMAGE_ID=//p' {MARKER}) $(. /etc/os-release; echo $VERSION_CODENAME) "
        '$(DS_ACCELERATOR=cpu python -c "import torch, deepspeed.git_version_info as g; '
        "print(torch.__version__, bool(g.installed_ops['deepspeed_shm_comm']))\")"
    )
    done = subprocess.run(
        ["srun", "-N2", "--ntasks-per-node=1", f"--container-image={IMAGE}", "bash", "-c", probe],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.split("\n")[:-1])
    assert lines == [f"{node} {image_id} bookworm 2.13.0+cpu True" for node in ("node1", "node2")], done.stdout


def test_two_node_zero3_job_runs_in_the_image(image_id, tiny_cpu, real_workspace, run_cli):
    """`hpcft submit --follow` with the local-pyxis profile: ZeRO-3 over both nodes' containers, the data and
    model read through the mounts, checkpoints and the final model written to the host, and no op compiled."""
    config = _tiny_elsewhere(
        tiny_cpu, real_workspace, **{"max_steps: 30": "max_steps: 12", "save_steps: 10": "save_steps: 6"}
    )
    result = run_cli(
        "submit", "--profile", "local-pyxis", config, "--follow", "-o", real_workspace / "run", cwd=real_workspace
    )
    log = result.out + result.err
    assert result.code == 0, log[-4000:]
    job = (real_workspace / "run" / "job.sbatch").read_text()
    assert f"--container-image={IMAGE}" in job and "--container-mounts=" in job

    # Each node said where it runs: in this image, on Debian 12 (the host's own OS is irrelevant: it has no marker).
    for node in ("node1", "node2"):
        assert re.search(rf"hpcft: {node} runs in image {image_id} \(Debian GNU/Linux 12", log), log[-4000:]
    # DeepSpeed's shared-memory op came built with the image: a JIT build prints its load time.
    assert "Time to load deepspeed_shm_comm op" not in log and "Building extension module" not in log

    outputs = real_workspace / "shared" / "outputs"
    steps = _metrics(outputs)
    assert [m["step"] for m in steps] == list(range(1, 13))
    assert steps[-1]["loss"] < 0.8 * steps[0]["loss"], (steps[0], steps[-1])
    assert (outputs / "checkpoint-6").is_dir() and (outputs / "checkpoint-12").is_dir()
    assert (outputs / "config.json").is_file() and list(outputs.glob("*.safetensors"))
    assert any((real_workspace / "shared" / "prepared").iterdir())
    assert not any((real_workspace / "run").rglob("*.jsonl"))  # the data was read in place, not copied


def test_time_limit_requeue_resumes_in_the_image(image_id, tiny_cpu, real_workspace, run_cli):
    """The stop-file protocol across the container boundary: USR1 reaches the batch script on the host, the
    trainer in the container sees the stop file in the mounted run folder, checkpoints, and the requeued job's
    container resumes from that checkpoint."""
    config = _tiny_elsewhere(tiny_cpu, real_workspace)
    result = run_cli(
        "submit",
        "--profile",
        "local-pyxis",
        config,
        "--follow",
        "-o",
        real_workspace / "run",
        "launch.time='00:02:00'",
        "launch.signal_grace=60",
        "launch.env.HPCFT_FAULT_STEP_SLEEP='2.5'",
        cwd=real_workspace,
    )
    log = result.out + result.err
    assert result.code == 0, log[-4000:]
    assert "hpcft: time limit near: asking the trainer to checkpoint and stop" in log
    assert re.search(r"resuming from \S+/checkpoint-\d+", log), log[-4000:]
    assert len(re.findall(rf"hpcft: node1 runs in image {image_id}", log)) >= 2  # both allocations in the image
    assert [m["step"] for m in _metrics(real_workspace / "shared" / "outputs")] == list(range(1, 31))


def _wait_for_file(path: Path, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.5)
    raise AssertionError(f"{path} did not appear within {seconds} s")


@pytest.mark.skipif(shutil.which("tmux") is None and os.environ.get("HPCFT_REQUIRE_SLURM") != "1", reason="tmux")
def test_interactive_shell_is_in_the_image_with_the_jobs_mounts_and_environment(image_id, tiny_cpu, real_workspace):
    """`hpcft interactive --nodes 1` through a real terminal (tmux): the shell is in the image, sees the
    model folder the job would read, and has the job's environment."""
    config = _tiny_elsewhere(tiny_cpu, real_workspace)
    model, run = real_workspace / "shared" / "models" / "tiny", real_workspace / "run"
    hpcft = f"{shlex.quote(sys.executable)} -m hpcft.launcher"
    session = f"hpcft-container-{time.monotonic_ns()}"
    # seen.txt is written from inside the container, into the run folder (mounted); done.txt on the host.
    seen, done = run / "seen.txt", real_workspace / "exit-code.txt"
    command = (
        f"cd {real_workspace} && {hpcft} interactive --profile local-pyxis --nodes 1 {config} -o {run}; "
        f"echo $? > {done}"
    )
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", command], check=True)
    try:
        deadline = time.monotonic() + 90
        screen = ""
        while time.monotonic() < deadline and "root@node1" not in screen:  # the container's shell prompt
            time.sleep(1)
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
        assert "root@node1" in screen, screen
        inner = (
            f"echo $(hostname) $(sed -n 's/^HPCFT_IMAGE_ID=//p' {MARKER}) $DS_ACCELERATOR $MASTER_ADDR "
            f"$(test -f {model}/config.json && echo model-mounted) $(command -v python) > {seen}; exit"
        )
        subprocess.run(["tmux", "send-keys", "-t", session, inner, "Enter"], check=True)
        assert _wait_for_file(done, 60).strip() == "0"
        assert "command not found" not in screen, screen  # the session's start-up file ran cleanly in the image
        assert seen.read_text().split() == [
            "node1",
            image_id,
            "cpu",
            "node1",
            "model-mounted",
            "/opt/venv/bin/python",
        ]
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_doctor_reports_the_image_and_the_hpcft_inside(image_id, run_cli, tmp_path, monkeypatch):
    from hpcft.launcher import __version__

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    result = run_cli(
        "doctor",
        "--profile",
        "local-pyxis",
        "--nodes",
        "2",
        "--max-mib",
        "4",
        "--write-mib",
        "4",
        "--iters",
        "2",
        "-o",
        tmp_path / "doctor-run",
        cwd=tmp_path,
    )
    assert result.code == 0, result.out + result.err
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\d+\s+(node\d)\s.*$", result.out, re.M)}
    assert sorted(rows) == ["node1", "node2"], result.out
    for node, row in rows.items():
        assert f"{IMAGE.name}  {__version__}" in row, row
        assert re.search(rf"^{node}: runs in image {image_id} \(Debian GNU/Linux 12", result.out, re.M), result.out
    reports = [json.loads(p.read_text()) for p in (tmp_path / "doctor-run" / "doctor").glob("rank-*.json")]
    assert {r["image_inside"].split()[1] for r in reports} == {image_id}
