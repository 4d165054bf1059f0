"""What the login node decides once for validate, render and submit: list options, the default output_dir,
inherited mounts, the CSCS hook's variables, and one job name for the whole job."""

from __future__ import annotations

import tomllib

from hpcft.launcher.config import load_job


def test_list_options_given_as_one_string_are_one_item(run_cli, workspace):
    with open(workspace / "cfg.yaml", "a") as f:
        f.write("  mounts: /data\n  sbatch_args: --exclusive\n  srun_args: --mpi=pmix\n")
    job = load_job(workspace / "cfg.yaml", "local")
    assert job.cfg.launch.mounts == ["/data"]  # not ["/", "d", "a", "t", "a"]
    assert job.cfg.launch.sbatch_args == ["--exclusive"] and job.cfg.launch.srun_args == ["--mpi=pmix"]
    result = run_cli("render", "--profile", "local", workspace / "cfg.yaml", "-o", workspace / "run", cwd=workspace)
    assert result.code == 0, result.err
    script = (workspace / "run" / "job.sbatch").read_text()
    assert [line for line in script.splitlines() if line.startswith("#SBATCH --ex")] == ["#SBATCH --exclusive"]
    assert "#SBATCH -\n" not in script and " --mpi=pmix " in script


def test_a_profile_list_given_as_one_string_is_one_item(workspace, monkeypatch):
    folder = workspace / "profiles"
    folder.mkdir()
    (folder / "site.yaml").write_text("extends: local\nlaunch:\n  mounts: /data\n  sbatch_args: --exclusive\n")
    monkeypatch.setenv("HPCFT_PROFILE_PATH", str(folder))
    job = load_job(workspace / "cfg.yaml", "site")
    assert job.cfg.launch.mounts == ["/data"] and job.cfg.launch.sbatch_args == ["--exclusive"]


def test_the_default_output_dir_is_taken_from_the_configs_folder(workspace, monkeypatch, tmp_path):
    text = (workspace / "cfg.yaml").read_text().replace("output_dir: ./out\n", "")
    (workspace / "cfg.yaml").write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    job = load_job(workspace / "cfg.yaml", "cscs", cli_launch={"image": "/capstor/hpcft.sqsh"})
    assert job.cfg.output_dir == str(workspace / "outputs")  # not "./outputs", and not the current folder


def test_a_profile_drops_an_inherited_mount(workspace, monkeypatch, cscs_sees_tmp_path):
    (cscs_sees_tmp_path / "nousers.yaml").write_text(
        "extends: cscs\ndrop_mounts: [/iopsstor]\nlaunch:\n  mounts: [/users/alice]\n"
    )
    job = load_job(workspace / "cfg.yaml", "nousers", cli_launch={"image": "/capstor/hpcft.sqsh"})
    assert job.cfg.launch.mounts == ["/capstor", "/users/alice"]


def test_cscs_leaves_nccl_and_libfabric_to_the_hook_unless_the_config_overrides(run_cli, workspace):
    with open(workspace / "cfg.yaml", "a") as f:
        f.write("  env:\n    NCCL_CROSS_NIC: '1'\n")
    result = run_cli(
        "render",
        "--profile",
        "cscs",
        workspace / "cfg.yaml",
        "--image",
        "/capstor/hpcft.sqsh",
        "-o",
        workspace / "run",
        cwd=workspace,
    )
    assert result.code == 0, result.err
    env = tomllib.loads((workspace / "run" / "environment.toml").read_text())["env"]
    # NCCL_NET is the profile's own (CSCS asks for it); the rest only when the config sets it.
    assert [k for k in env if k.startswith(("NCCL_", "FI_"))] == ["NCCL_NET", "NCCL_CROSS_NIC"]


def test_the_job_name_is_decided_when_the_job_is_loaded(workspace):
    text = (workspace / "cfg.yaml").read_text().replace("  job_name: unit\n", "")
    (workspace / "cfg.yaml").write_text(text)
    assert load_job(workspace / "cfg.yaml", "local").cfg.launch.job_name == "cfg"


def _with_datasets(workspace, entries: str):
    text = (workspace / "cfg.yaml").read_text()
    start, end = text.index("datasets:\n"), text.index("output_dir:")
    (workspace / "cfg.yaml").write_text(text[:start] + "datasets:\n" + entries + text[end:])
    return load_job(workspace / "cfg.yaml", "local")


def test_data_files_of_a_hub_dataset_are_files_in_its_repository(workspace):
    # axolotl's examples (alst, xgen, falcon) name files inside the Hub repository; they are not local files.
    job = _with_datasets(
        workspace,
        "  - path: togethercomputer/Long-Data-Collections\n    type: completion\n    field: text\n"
        "    data_files: [pretrain/rp_sub.jsonl.zst]\n",
    )
    assert job.cfg.datasets[0].data_files == ["pretrain/rp_sub.jsonl.zst"]


def test_data_files_of_a_local_folder_are_patterns_inside_it(workspace):
    job = _with_datasets(workspace, "  - path: ./data\n    data_files: 'pre*.jsonl'\n    type: completion\n")
    assert job.cfg.datasets[0].data_files == "pre*.jsonl"


def test_data_files_of_a_builder_name_are_local_files_next_to_the_config(workspace):
    job = _with_datasets(workspace, "  - path: json\n    data_files: ./data/pretrain.jsonl\n    type: completion\n")
    assert job.cfg.datasets[0].data_files == str(workspace / "data" / "pretrain.jsonl")


def test_warmup_steps_below_one_is_a_share_of_all_steps(workspace):
    # transformers 5's reading, used by axolotl's expert_parallel and diffusion examples (warmup_steps: 0.1).
    with open(workspace / "cfg.yaml", "a") as f:
        f.write("warmup_steps: 0.1\n")
    cfg = load_job(workspace / "cfg.yaml", "local").cfg
    assert cfg.warmup_ratio == 0.1 and cfg.warmup_steps is None
