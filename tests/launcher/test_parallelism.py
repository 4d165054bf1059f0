"""axolotl's parallelism sizes on the login node: their layout over the job's processes (axolotl's order), the job
size they imply, one-line refusals naming the key, and what reaches deepspeed.json. The runs on 2 and 4 CPU
processes are in tests/trainer/test_train_parallel.py."""

from __future__ import annotations

import json

import pytest

from hpcft.core.errors import ConfigError
from hpcft.core.features.deepspeed_config import resolve_deepspeed
from hpcft.core.features.parallelism import ParallelLayout, resolve_layout
from hpcft.core.schema import TrainConfig
from hpcft.launcher.config import load_job


def config(**keys) -> TrainConfig:
    return TrainConfig.model_validate({"base_model": "m", "datasets": [{"path": "d.jsonl"}], **keys})


@pytest.mark.parametrize(
    ("keys", "world", "layout"),
    [
        ({}, 8, ParallelLayout(8, dp_shard=8)),
        ({"dp_shard_size": 1, "dp_replicate_size": 1}, 4, ParallelLayout(4, dp_shard=4)),  # falcon-e: a no-op
        ({"dp_shard_size": 4}, 8, ParallelLayout(8, dp_replicate=2, dp_shard=4)),  # HSDP, replicas fill the rest
        ({"dp_shard_size": 4, "dp_replicate_size": 2, "tensor_parallel_size": 2}, 16, ParallelLayout(16, 2, 4, 2)),
        ({"dp_shard_size": 2, "context_parallel_size": 2, "tensor_parallel_size": 2}, 8, ParallelLayout(8, 1, 2, 2, 2)),
        ({"expert_parallel_size": 2, "dp_shard_size": 2}, 4, ParallelLayout(4, dp_shard=2, ep=2)),
        ({"sequence_parallel_degree": 4}, 8, ParallelLayout(8, dp_shard=2, cp=4)),  # the old name
    ],
)
def test_sizes_lay_out_the_world_in_axolotls_order(keys, world, layout):
    assert resolve_layout(config(**keys), world) == layout


@pytest.mark.parametrize(
    ("keys", "world", "key"),
    [
        ({"tensor_parallel_size": 3}, 4, "tensor_parallel_size"),
        ({"context_parallel_size": 2, "tensor_parallel_size": 2}, 2, "context_parallel_size"),
        ({"dp_shard_size": 3}, 4, "dp_shard_size"),
        ({"dp_shard_size": 2, "dp_replicate_size": 1}, 4, "dp_shard_size"),
        ({"expert_parallel_size": 8}, 4, "expert_parallel_size"),
    ],
)
def test_a_size_that_does_not_fit_names_its_key(keys, world, key):
    with pytest.raises(ConfigError, match=f"^key '{key}': .*launch.nodes"):
        resolve_layout(config(**keys), world)


def test_zero_and_negative_sizes_are_refused_by_the_schema():
    with pytest.raises(ValueError, match="context_parallel_size"):
        config(context_parallel_size=0)


def write(workspace, extra: str) -> object:
    path = workspace / "cfg.yaml"
    path.write_text(path.read_text() + extra)
    return path


def test_an_open_node_count_grows_to_what_the_sizes_need(workspace):
    job = load_job(write(workspace, "context_parallel_size: 2\ntensor_parallel_size: 2\n"), "local")
    assert job.cfg.launch.nodes == 4  # the local profile runs 1 process per node
    assert any("need 4 processes" in w and "4 node(s)" in w for w in job.warnings)


def test_a_node_count_the_sizes_do_not_divide_is_refused_naming_the_key(workspace):
    path = write(workspace, "context_parallel_size: 4\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml: key 'context_parallel_size': 4 does not divide the 2 processes"):
        load_job(path, "local", cli_launch={"nodes": 2})
    job = load_job(path, "local", cli_launch={"nodes": 4})
    assert job.cfg.launch.nodes == 4 and not any("need" in w for w in job.warnings)


def test_context_parallelism_needs_rows_it_can_split_evenly(workspace):
    path = write(workspace, "context_parallel_size: 2\n")
    path.write_text(path.read_text().replace("sequence_len: 512", "sequence_len: 511"))
    with pytest.raises(ConfigError, match="key 'context_parallel_size': sequence_len 511 must be a multiple of 2"):
        load_job(path, "local")


def test_ray_workers_size_the_job_and_a_warning_says_ray_is_not_used(workspace):
    job = load_job(write(workspace, "use_ray: true\nray_num_workers: 4\nray_run_name: r1\n"), "local")
    assert job.cfg.launch.nodes == 4
    assert any("not Ray: ray_num_workers: 4 becomes 4 node(s) x 1 process(es)" in w for w in job.warnings)
    assert any("ray_run_name" in w for w in job.warnings)  # Ray's own settings: accepted with a warning
    fixed = load_job(workspace / "cfg.yaml", "local", cli_launch={"nodes": 2})
    assert fixed.cfg.launch.nodes == 2 and any("the job runs 2 of them" in w for w in fixed.warnings)


def test_expert_parallelism_is_sized_and_says_how_it_runs(workspace):
    job = load_job(write(workspace, "expert_parallel_size: 2\nexpert_parallel_num_nvl_bytes: 4294967296\n"), "local")
    assert job.cfg.launch.nodes == 2
    assert any("expert_parallel_size: 2: hpcft shards the experts with the other weights" in w for w in job.warnings)
    assert any("expert_parallel_num_nvl_bytes" in w for w in job.warnings)


def test_hsdp_under_zero3_keeps_a_shard_per_group(workspace):
    cfg = config(dp_shard_size=2, deepspeed="zero3")
    ds = resolve_deepspeed("zero3", cfg, world_size=4)
    assert ds["zero_optimization"]["zero_hpz_partition_size"] == 2
    assert "zero_hpz_partition_size" not in resolve_deepspeed("zero3", config(dp_shard_size=4), 4)["zero_optimization"]
    assert resolve_deepspeed(ds, cfg, 4) == ds  # resolving a resolved config changes nothing


def test_tensor_parallelism_is_autotp_on_zero2(workspace):
    job = load_job(write(workspace, "tensor_parallel_size: 2\n"), "local")
    ds = resolve_deepspeed("zero2", job.cfg, world_size=2)
    assert ds["tensor_parallel"] == {"autotp_size": 2}
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True  # the final save gathers
    with pytest.raises(ConfigError, match="key 'tensor_parallel_size': 2 runs DeepSpeed AutoTP, .* ZeRO stages 0-2"):
        resolve_deepspeed("zero3", job.cfg, world_size=2)


def test_rendered_deepspeed_json_of_axolotls_fsdp_tp_example_on_cpu(workspace, run_cli):
    # examples/distributed-parallel/llama-3_1-8b-hsdp-tp.yaml's sizes with FSDP: on CPU nodes ZeRO-2 + AutoTP.
    write(
        workspace,
        "dp_shard_size: 4\ndp_replicate_size: 2\ntensor_parallel_size: 2\nfsdp_version: 2\n"
        "fsdp_config: {reshard_after_forward: true}\n",
    )
    result = run_cli("render", workspace / "cfg.yaml", "--profile", "local", "-o", workspace / "run")
    assert result.code == 0, result.err
    ds = json.loads((workspace / "run" / "deepspeed.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2 and ds["tensor_parallel"] == {"autotp_size": 2}
    assert "#SBATCH --nodes=16" in (workspace / "run" / "job.sbatch").read_text()


def test_fsdp1_on_gpus_cannot_build_a_device_mesh(workspace):
    path = write(workspace, "dp_shard_size: 1\ndp_replicate_size: 2\nfsdp: [full_shard]\n")
    with pytest.raises(ConfigError, match="key 'dp_replicate_size': with FSDP it runs on FSDP2's device mesh"):
        load_job(path, "local", cli_launch={"gpus_per_node": 2})


def test_bad_size_is_exit_2_with_one_line(workspace, run_cli):
    write(workspace, "tensor_parallel_size: 3\n")
    result = run_cli("validate", workspace / "cfg.yaml", "--profile", "local", "--nodes", "2")
    assert result.code == 2
    assert "key 'tensor_parallel_size': 3 does not divide" in result.err and "Traceback" not in result.err


def test_context_parallelism_keeps_packing_only_where_samples_stay_apart(workspace):
    path = write(workspace, "context_parallel_size: 2\nattn_implementation: flash_attention_2\n")
    cpu = load_job(path, "local")  # sdpa runs on CPU nodes: Ulysses would let packed samples see each other
    assert cpu.cfg.sample_packing is False
    assert any("sample_packing: packed samples cannot be kept apart" in w for w in cpu.warnings)
    ulysses = load_job(path, "local", cli_launch={"gpus_per_node": 2, "procs_per_node": 2, "nodes": 1})
    assert ulysses.cfg.sample_packing is True and ulysses.cfg.attention == "flash_attention_2"
    path.write_text(path.read_text() + "fsdp_version: 2\nfsdp_config: {reshard_after_forward: true}\n")
    ring = load_job(path, "local", cli_launch={"gpus_per_node": 2, "procs_per_node": 2, "nodes": 1})
    assert ring.cfg.attention == "sdpa" and ring.cfg.sample_packing is False  # torch's ring attention needs sdpa
    assert any("hpcft loads the model with sdpa instead of flash_attention_2" in w for w in ring.warnings)


def test_tensor_parallelism_with_fsdp_on_gpus_is_refused_with_what_to_do(workspace):
    path = write(workspace, "tensor_parallel_size: 2\nfsdp_version: 2\nfsdp_config: {reshard_after_forward: true}\n")
    with pytest.raises(ConfigError, match="key 'tensor_parallel_size': with FSDP on GPU nodes .* DeepSpeed AutoTP"):
        load_job(path, "local", cli_launch={"gpus_per_node": 2, "procs_per_node": 2, "nodes": 1})
    assert load_job(path, "local").cfg.tensor_parallel_size == 2  # CPU nodes: FSDP runs as ZeRO-2 + AutoTP
