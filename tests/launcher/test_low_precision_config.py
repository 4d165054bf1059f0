"""qat:, fp8 and llmcompressor: on the login node: axolotl's example blocks validate, bad values and combinations
are one line naming the key (exit 2 from the CLI), and validate says what a node without the hardware does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from hpcft.core.errors import ConfigError
from hpcft.core.features.sparse_finetuning import keep_sparsity_targets
from hpcft.launcher.config import load_job

from .conftest import DATA

SPARSE_EXAMPLE = DATA / "sparse_finetuning" / "llama3-sparse-finetuning.yaml"
KEEP_2_4 = {
    "recipe": {
        "finetuning_stage": {
            "finetuning_modifiers": {
                "ConstantPruningModifier": {"targets": ["re:.*q_proj.weight", "re:.*down_proj.weight"], "start": 0}
            }
        }
    },
    "save_compressed": True,
}


def _with(workspace: Path, **keys) -> Path:
    config = yaml.safe_load((workspace / "cfg.yaml").read_text())
    config.update(keys)
    path = workspace / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _error(workspace: Path, **keys) -> str:
    with pytest.raises(ConfigError) as err:
        load_job(_with(workspace, **keys), "local")
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("qat", "scheme"),
    [
        ({"activation_dtype": "int8", "weight_dtype": "int4", "group_size": 32}, "int8 dynamic activations"),
        ({"activation_dtype": "fp8", "weight_dtype": "fp8"}, "float8 activations and weights"),
        ({"weight_dtype": "int4", "group_size": 128, "quantize_embedding": True}, "int4 weights (per group)"),
        ({"activation_dtype": "nvfp4", "weight_dtype": "nvfp4", "group_size": 16}, "NVFP4 activations and weights"),
        ({"activation_dtype": "mxfp4", "weight_dtype": "mxfp4", "group_size": 32}, "MXFP4 activations and weights"),
    ],
)
def test_axolotls_qat_schemes_validate(workspace, qat, scheme):
    job = load_job(_with(workspace, qat=qat), "local")
    assert job.cfg.qat.scheme.startswith(scheme)
    if qat.get("activation_dtype") == "fp8":  # axolotl's short spelling
        assert (job.cfg.qat.activation_dtype, job.cfg.qat.weight_dtype) == ("float8_e4m3fn", "float8_e4m3fn")
    nvfp4 = [w for w in job.warnings if "qat: NVFP4" in w]
    assert len(nvfp4) == (qat["weight_dtype"] == "nvfp4")  # validate says what nodes without Blackwell do


@pytest.mark.parametrize(
    ("qat", "extra", "expected"),
    [
        ({"weight_dtype": "int8"}, {}, "qat: activation_dtype None with weight_dtype int8 is not a scheme"),
        ({"activation_dtype": "int4", "weight_dtype": "int4"}, {}, "activation_dtype int4 with weight_dtype int4"),
        ({"weight_dtype": "nvfp4", "group_size": 16}, {}, "activation_dtype None with weight_dtype nvfp4"),
        ({"activation_dtype": "nvfp4", "weight_dtype": "nvfp4"}, {}, "qat.group_size: nvfp4 quantises blocks of 16"),
        ({"weight_dtype": "mxfp4", "group_size": 16}, {}, "qat.group_size: mxfp4 quantises blocks of 32"),
        ({"weight_dtype": "mxfp4", "quantize_embedding": True}, {}, "qat.quantize_embedding: torchao's mxfp4"),
        (
            {"weight_dtype": "mxfp4", "fake_quant_after_n_steps": 10},
            {},
            "qat.fake_quant_after_n_steps: torchao's mxfp4",
        ),
        ({"weight_dtype": "int5"}, {}, "'int5' is not a QAT format"),
        ({"weight_dtype": "int4", "group_sizes": 32}, {}, "qat.group_sizes"),
        ({"weight_dtype": "int4"}, {"fp8": True}, "qat and fp8 both replace the linear layers"),
    ],
)
def test_bad_qat_blocks_are_one_line_naming_the_key(workspace, qat, extra, expected):
    assert expected in _error(workspace, qat=qat, **extra)


def test_qat_with_a_quantised_base_is_refused(workspace):
    message = _error(
        workspace, qat={"weight_dtype": "int4"}, adapter="qlora", load_in_4bit=True, lora_target_linear=True
    )
    assert "qat trains full-precision weights" in message and "load_in_4bit" in message


def test_fp8_all_gather_needs_fp8_and_fsdp2(workspace):
    assert "set fp8: true" in _error(workspace, fp8_enable_fsdp_float8_all_gather=True)
    message = _error(workspace, fp8=True, fp8_enable_fsdp_float8_all_gather=True, fsdp=["full_shard", "auto_wrap"])
    assert "fp8_enable_fsdp_float8_all_gather needs FSDP2" in message
    job = load_job(
        _with(
            workspace,
            fp8=True,
            fp8_enable_fsdp_float8_all_gather=True,
            fsdp_version=2,
            fsdp_config={"reshard_after_forward": True, "transformer_layer_cls_to_wrap": "LlamaDecoderLayer"},
        ),
        "local",
    )
    assert job.cfg.fp8 and any("fp8: this profile has no GPUs" in w for w in job.warnings)
    gpus = load_job(workspace / "cfg.yaml", "local", cli_launch={"gpus_per_node": 4})
    assert any("fp8: float8 layers are fast only when compiled (torch_compile: true)" in w for w in gpus.warnings)


def test_fp8_with_fp16_or_a_quantised_base_is_refused(workspace):
    assert "use bf16, not fp16" in _error(workspace, fp8=True, fp16=True, bf16=False)
    assert "load_in_4bit/load_in_8bit" in _error(
        workspace, fp8=True, adapter="lora", load_in_8bit=True, lora_target_linear=True
    )


def test_axolotls_sparse_finetuning_example_validates(workspace, run_cli):
    config = workspace / "sparse.yaml"
    shutil.copy(SPARSE_EXAMPLE, config)
    result = run_cli("validate", "--profile", "local", config, cwd=workspace)
    assert result.code == 0, result.err
    job = load_job(config, "local")
    assert job.cfg.llmcompressor.save_compressed is True
    assert keep_sparsity_targets(job.cfg.llmcompressor) == [
        f"re:.*{name}.weight" for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    ]


def test_a_recipe_given_as_yaml_text_is_read(workspace):
    recipe = yaml.safe_dump(KEEP_2_4["recipe"])
    job = load_job(_with(workspace, llmcompressor={"recipe": recipe}), "local")
    assert keep_sparsity_targets(job.cfg.llmcompressor) == ["re:.*q_proj.weight", "re:.*down_proj.weight"]


@pytest.mark.parametrize(
    ("block", "plugins", "expected"),
    [
        (
            {"recipe": {"stage": {"pruning_modifiers": {"SparseGPTModifier": {"sparsity": 0.5}}}}},
            None,
            "llmcompressor.recipe.stage.pruning_modifiers.SparseGPTModifier: the llmcompressor modifier "
            "SparseGPTModifier is not supported",
        ),
        (
            {"recipe": {"s": {"m_modifiers": {"ConstantPruningModifier": {"targets": ["x"], "start": 1}}}}},
            None,
            "ConstantPruningModifier.start: hpcft keeps the zeros for the whole run",
        ),
        ({"recipe": {"s": {"m_modifiers": {"ConstantPruningModifier": {}}}}}, None, "needs targets"),
        ({"recipe": {"version": "1.0"}}, None, "llmcompressor.recipe has no modifiers"),
        ({"recipe": "recipes/sparse.yaml"}, None, "give the recipe inline"),
        (None, ["axolotl.integrations.llm_compressor.LLMCompressorPlugin"], "needs an llmcompressor: block"),
    ],
)
def test_bad_llmcompressor_blocks_are_one_line_naming_the_key(workspace, block, plugins, expected):
    keys = {"plugins": plugins} if plugins else {}
    if block is not None:
        keys["llmcompressor"] = block
    assert expected in _error(workspace, **keys)


def test_validate_exits_2_naming_the_qat_key(run_cli, workspace):
    _with(workspace, qat={"weight_dtype": "nvfp4", "activation_dtype": "nvfp4", "group_size": 32})
    result = run_cli("validate", "--profile", "local", workspace / "cfg.yaml", cwd=workspace)
    assert result.code == 2
    assert "qat.group_size" in result.err and "Traceback" not in result.err


def test_sparse_finetuning_with_an_adapter_says_the_base_stays_frozen(workspace):
    job = load_job(_with(workspace, llmcompressor=KEEP_2_4, adapter="lora", lora_target_linear=True), "local")
    assert any("base weights stay frozen" in w for w in job.warnings)
