"""axolotl's whole key space is known: every key of its schema is implemented, warned about, or refused by name.

When a key becomes implemented (a field of our schema) while still listed as warned or refused, or axolotl's
snapshot gains a key nobody classified, these tests fail naming the key.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpcft.core.axolotl_keys import (
    PLUGINS_WITHOUT_EFFECT,
    REFUSED_DATASET_KEYS,
    REFUSED_KEYS,
    WARN_ONLY_DATASET_KEYS,
    WARN_ONLY_KEYS,
    axolotl_key_space,
)
from hpcft.core.schema import DatasetConfig, TrainConfig, check_chat_template_name
from hpcft.core.validation import check_keys, known_keys

REPO = Path(__file__).resolve().parents[2]
SPACE = axolotl_key_space()
CHAT = {"path": "chat.jsonl", "type": "chat_template"}


def _classes(key: str, implemented: set[str], warn_only: dict, refused: dict) -> list[str]:
    return [
        name
        for name, keys in (("implemented", implemented), ("warned", warn_only), ("refused", refused))
        if key in keys
    ]


def test_snapshot_names_the_axolotl_commit_and_is_complete():
    assert len(SPACE.commit) == 40
    assert len(SPACE.top) > 400 and len(SPACE.dataset) > 40 and len(SPACE.plugins) > 10
    assert {"fsdp_config", "eot_tokens", "liger_rms_norm", "rl", "batch_size"} <= SPACE.top
    assert {"llama3", "chatml", "tokenizer_default"} <= SPACE.chat_templates
    assert "dpo" in SPACE.rl_methods and "muon" in SPACE.optimizers


def test_every_top_level_axolotl_key_is_in_exactly_one_class():
    implemented = known_keys(TrainConfig)
    wrong = {key: _classes(key, implemented, WARN_ONLY_KEYS, REFUSED_KEYS) for key in sorted(SPACE.top)}
    assert not {k: v for k, v in wrong.items() if len(v) != 1}, "keys in no class or in several"
    # Older spellings we list beyond the snapshot must not be implemented at the same time either.
    extra = (set(WARN_ONLY_KEYS) | set(REFUSED_KEYS)) - SPACE.top
    assert not {
        k: _classes(k, implemented, WARN_ONLY_KEYS, REFUSED_KEYS)
        for k in extra
        if len(_classes(k, implemented, WARN_ONLY_KEYS, REFUSED_KEYS)) != 1
    }


def test_every_dataset_axolotl_key_is_in_exactly_one_class():
    implemented = known_keys(DatasetConfig)
    keys = SPACE.dataset | set(WARN_ONLY_DATASET_KEYS) | set(REFUSED_DATASET_KEYS)
    wrong = {k: _classes(k, implemented, WARN_ONLY_DATASET_KEYS, REFUSED_DATASET_KEYS) for k in sorted(keys)}
    assert not {k: v for k, v in wrong.items() if len(v) != 1}, "dataset keys in no class or in several"


def test_warn_only_plugins_are_axolotl_plugins():
    assert set(PLUGINS_WITHOUT_EFFECT) <= SPACE.plugins


@pytest.mark.parametrize("key", sorted(SPACE.top - known_keys(TrainConfig)))
def test_no_axolotl_key_is_called_unknown(key):
    raw = {"base_model": "m", "datasets": [dict(CHAT)], key: 1}
    try:
        warnings = check_keys(raw, "cfg.yaml")
    except ValueError as exc:
        message = str(exc)
        assert "unknown key" not in message and "did you mean" not in message
        assert f"'{key}" in message and "is an axolotl option hpcft does not support yet; " in message
    else:
        assert key in WARN_ONLY_KEYS
        assert any(f"'{key}' has no effect in hpcft ({WARN_ONLY_KEYS[key]})" in w for w in warnings)
        assert key not in raw  # the trainer never sees it


@pytest.mark.parametrize("key", sorted(SPACE.dataset - known_keys(DatasetConfig)))
def test_no_axolotl_dataset_key_is_called_unknown(key):
    raw = {"base_model": "m", "datasets": [{**CHAT, key: 1}]}
    try:
        check_keys(raw, "cfg.yaml")
    except ValueError as exc:
        assert "unknown key" not in str(exc) and f"'datasets[0].{key}'" in str(exc)
    else:
        assert key in WARN_ONLY_DATASET_KEYS and key not in raw["datasets"][0]


def test_did_you_mean_only_for_keys_axolotl_lacks_too():
    with pytest.raises(ValueError, match="unknown key 'learning_rat'; did you mean 'learning_rate'"):
        check_keys({"base_model": "m", "learning_rat": 1e-5}, "cfg.yaml")
    # Real axolotl keys that hpcft lacks are named as such, never "corrected" into another key.
    for key in ("nemo_gym_enabled", "kd_trainer"):
        with pytest.raises(ValueError, match=f"'{key}' is an axolotl option hpcft does not support yet") as info:
            check_keys({"base_model": "m", key: 4}, "cfg.yaml")
        assert "did you mean" not in str(info.value)


def test_rl_values_are_refused_per_method():
    assert check_keys({"base_model": "m", "rl": "kto"}, "cfg.yaml") == []  # implemented (docs/preference-tuning.md)
    with pytest.raises(ValueError, match=r"'rl: grpo' is an axolotl option hpcft does not support yet: GRPO"):
        check_keys({"base_model": "m", "rl": "grpo"}, "cfg.yaml")
    with pytest.raises(ValueError, match="'dpo0' is not a preference method hpcft knows"):
        TrainConfig.model_validate({"base_model": "m", "datasets": [CHAT], "rl": "dpo0"})


def test_blank_false_and_empty_values_mean_unset():
    raw = {
        "base_model": "m",
        "lora_r": None,
        "fp16": None,
        "fsdp": None,
        "model_kwargs": {},
        "rl": None,
        "use_comet": False,
        "datasets": [{**CHAT, "split": None, "shards": None}],
    }
    assert check_keys(raw, "cfg.yaml") == []
    assert raw == {"base_model": "m", "datasets": [CHAT]}
    cfg = TrainConfig.model_validate(raw)
    assert cfg.lora_r == 8 and cfg.fp16 is False and cfg.datasets[0].split == "train"


def test_dataset_types_axolotl_has_are_refused_by_name_and_typos_get_a_suggestion():
    with pytest.raises(ValueError, match="'type: ebft' is an axolotl option hpcft does not support"):
        DatasetConfig(path="x.jsonl", type="ebft")
    with pytest.raises(ValueError, match="a custom prompt-strategy module"):
        DatasetConfig(path="x.jsonl", type="my_module.transform")
    with pytest.raises(ValueError, match="unknown dataset type 'completon'; did you mean 'completion'"):
        DatasetConfig(path="x.jsonl", type="completon")


def test_attention_kernels_axolotl_offers_run_as_sdpa_with_a_warning():
    raw = {"base_model": "m", "attn_implementation": "xformers"}
    warnings = check_keys(raw, "cfg.yaml")
    assert raw["attn_implementation"] == "sdpa" and "'attn_implementation: xformers' has no effect" in warnings[0]


def test_every_chat_template_name_axolotl_has_passes_the_login_node_check():
    for name in sorted(SPACE.chat_templates):
        assert check_chat_template_name(name) == name
        fallback = f"tokenizer_default_fallback_{name}"
        if name not in ("tokenizer_default", "jinja"):
            assert check_chat_template_name(fallback) == fallback
    with pytest.raises(ValueError, match="unknown chat_template 'chatmll'; did you mean 'chatml'"):
        check_chat_template_name("chatmll")
    with pytest.raises(ValueError, match="'nope' is not a chat template hpcft ships"):
        check_chat_template_name("tokenizer_default_fallback_nope")


def test_snapshot_script_reads_an_axolotl_schema(tmp_path):
    """The generator on a miniature axolotl tree: inherited fields, aliases, plugins and their keys, enums."""
    schemas = tmp_path / "src" / "axolotl" / "utils" / "schemas"
    schemas.mkdir(parents=True)
    (schemas / "config.py").write_text(
        textwrap.dedent("""\
        class Base(BaseModel):
            lora_r: int | None = None
            revision_of_model: str | None = Field(default=None, alias="model_revision")
        class AxolotlInputConfig(Base, BaseModel):
            model_config = {"populate_by_name": True}
            learning_rate: float = 1e-5
        """)
    )
    (schemas / "datasets.py").write_text("class SFTDataset(BaseModel):\n    path: str\n    shards: int = 1\n")
    (schemas / "enums.py").write_text(
        textwrap.dedent("""\
        class ChatTemplate(str, Enum):
            chatml = "chatml"
        class CustomSupportedOptimizers(str, Enum):
            muon = "muon"
        class RLType(str, Enum):
            DPO = "dpo"
        """)
    )
    (tmp_path / "src" / "axolotl" / "prompt_strategies").mkdir()
    (tmp_path / "src" / "axolotl" / "prompt_strategies" / "alpaca_chat.py").write_text("")
    plugin = tmp_path / "src" / "axolotl" / "integrations" / "liger"
    plugin.mkdir(parents=True)
    (plugin / "args.py").write_text("class LigerArgs(BaseModel):\n    liger_rope: bool | None = None\n")
    (plugin / "plugin.py").write_text(
        textwrap.dedent("""\
        class LigerPlugin(BasePlugin):
            def get_input_args(self):
                return "axolotl.integrations.liger.LigerArgs"
        """)
    )
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "axolotl_key_snapshot.py"), str(tmp_path), "--commit", "0" * 40],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body = [line for line in out.splitlines() if not line.startswith("#")]
    assert out.startswith(f"# axolotl config key space at commit {'0' * 40}\n")
    assert body == [
        "top learning_rate",
        "top lora_r",
        "top model_revision",
        "top revision_of_model",
        "top liger_rope axolotl.integrations.liger.LigerPlugin",
        "dataset path",
        "dataset shards",
        "plugin axolotl.integrations.liger.LigerPlugin",
        "chat_template chatml",
        "optimizer muon",
        "rl dpo",
        "dataset_type alpaca_chat",
    ]


def test_readme_promise_kernel_only_keys_are_accepted_with_a_warning():
    readme = (REPO / "README.md").read_text()
    promised = [
        "liger_rms_norm",
        "liger_fused_linear_cross_entropy",
        "flash_attn_rms_norm",
        "lora_qkv_kernel",
        "torch_compile",
    ]
    assert all(f"`{key.split('_')[0]}" in readme for key in promised)
    for key in promised:
        raw = {"base_model": "m", key: True}
        warnings = check_keys(raw, "cfg.yaml")
        # Implemented keys (a schema field) are fine too: the trainer then says what it does on this hardware.
        assert key in known_keys(TrainConfig) or any(f"'{key}' has no effect in hpcft" in w for w in warnings)
    # Liger is implemented (applied on CUDA GPUs; on CPU the job warns and runs the model's own layers).
    assert check_keys({"base_model": "m", "plugins": ["axolotl.integrations.liger.LigerPlugin"]}, "c") == []
    for plugin in ("axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin",):
        warnings = check_keys({"base_model": "m", "plugins": [plugin]}, "cfg.yaml")
        assert any(f"plugin '{plugin}' has no effect in hpcft" in w for w in warnings)
        TrainConfig.model_validate({"base_model": "m", "datasets": [CHAT], "plugins": [plugin]})


def test_axolotl_values_hpcft_lacks_are_named_as_axolotl_options():
    from pydantic import ValidationError

    from hpcft.core.validation import format_validation_error

    for key, value in (("gradient_checkpointing", "offload"), ("lr_scheduler", "rex")):
        try:
            TrainConfig.model_validate({"base_model": "m", "datasets": [CHAT], key: value})
        except ValidationError as exc:
            message = format_validation_error(exc, "cfg.yaml")
            assert message.startswith(f"cfg.yaml: '{key}: {value}' is an axolotl option hpcft does not support yet")
        else:  # implemented since: then it must be kept as given
            assert key in known_keys(TrainConfig)
    with pytest.raises(ValidationError) as info:  # a value axolotl does not know either stays a plain error
        TrainConfig.model_validate({"base_model": "m", "datasets": [CHAT], "lr_scheduler": "cosin"})
    assert "axolotl option" not in format_validation_error(info.value, "cfg.yaml")
