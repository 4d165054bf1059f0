"""doctor.sbatch runs the probe in exactly the training job's container and environment: the same exports, the
same srun options (container flags included) and the same torchrun, for every profile; only the module after
`-m` differs. Checked with bash -n and shellcheck (the local run is tests/slurm/test_doctor.py)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from hpcft.launcher.jobs.doctor import doctor_job, doctor_script
from hpcft.launcher.render import render_run_dir

IMAGES = {
    "cscs": "/capstor/store/hpcft.sqsh",
    "pyxis": "nvcr.io/nvidia/pytorch:25.01-py3",
    "apptainer": "/images/hpcft.sif",
    "local": None,
}


@pytest.mark.parametrize("profile", sorted(IMAGES))
def test_doctor_script_is_the_training_job_with_the_probe(profile, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    launch = {"nodes": 2, **({"image": IMAGES[profile]} if IMAGES[profile] else {})}
    job = doctor_job(profile, str(workspace / "cfg.yaml"), [], launch)
    run_dir = render_run_dir(job, out_dir=workspace / "run")
    training = (run_dir / "job.sbatch").read_text()
    doctor = doctor_script(job, run_dir, max_mib=1024, write_mib=256, iters=5)

    def exports(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("export ")]

    def srun(text: str) -> str:
        return re.search(r"^srun (.*?) \\?\n?\s*bash -c", text, re.M | re.S).group(1).replace("\\\n", " ").split()

    assert exports(doctor) == exports(training)
    assert srun(doctor) == srun(training)
    assert "--job-name=hpcft-doctor" in doctor and "--nodes=2" in doctor
    assert "--requeue" not in doctor and "--signal" not in doctor  # a failed check is the finding, not retried
    probe = re.search(r"-m hpcft\.trainer doctor --out (\S+)", doctor)
    assert probe and probe.group(1) == f"{run_dir}/doctor"
    assert "--image " + (IMAGES[profile] or "none") in doctor
    training_torchrun = re.search(r"torch\.distributed\.run(.*?)-m hpcft\.trainer train", training, re.S).group(1)
    assert training_torchrun in doctor
    script = workspace / "doctor.sbatch"
    script.write_text(doctor)
    subprocess.run(["bash", "-n", script], check=True)
    if not shutil.which("shellcheck"):
        pytest.fail("shellcheck is not installed (scripts/setup.sh installs it)")
    check = subprocess.run(["shellcheck", "-S", "warning", script], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
