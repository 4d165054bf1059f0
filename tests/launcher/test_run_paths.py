"""One RunPaths for the run folder: the plan's and the templates' log files are its names, and `hpcft logs` finds
a job's files by them (not by a pattern of its own)."""

from __future__ import annotations

from hpcft.core.run_paths import ARRAY_TASK, RunPaths


def test_job_logs_finds_each_kind_array_tasks_and_submitit_but_not_other_jobs(tmp_path):
    paths = RunPaths(tmp_path)
    paths.logs.mkdir()
    paths.submitit.mkdir()
    mine = [
        paths.log("slurm", "out", "123"),
        paths.log("preprocess", "err", "124"),
        paths.log("slurm", "out", "123_4"),
        paths.submitit / "123_0_log.out",
    ]
    others = [paths.log("slurm", "out", "1234"), paths.log("slurm", "out", "9123"), paths.submitit / "1234_0_log.out"]
    for path in [*mine, *others]:
        path.write_text("x")
    assert sorted(paths.job_logs(["123", "124"])) == sorted(mine)


def test_the_rendered_scripts_name_runpaths_logs(run_cli, workspace):
    out = workspace / "run"
    assert run_cli("render", workspace / "cfg.yaml", "--profile", "local", "-o", out).code == 0
    paths = RunPaths(out)
    assert f"#SBATCH --output={paths.log('slurm', 'out')}" in paths.job_script.read_text()
    assert f"#SBATCH --error={paths.log('preprocess', 'err')}" in paths.preprocess_script.read_text()
    assert str(paths.log("slurm", "out", ARRAY_TASK)).endswith("logs/slurm-%A_%a.out")
