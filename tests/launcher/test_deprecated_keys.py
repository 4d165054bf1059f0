"""axolotl's deprecated keys and value forms (core/keys/deprecated_keys.py): accepted with axolotl's meaning and a
warning naming the current key, or refused by name when axolotl refuses them too."""

from __future__ import annotations

import pytest

from hpcft.core.axolotl_keys import axolotl_key_space
from hpcft.core.schema import TrainConfig
from hpcft.core.validation import check_keys

CHAT = {"path": "d.jsonl", "type": "chat_template"}
PREF = {"path": "p.jsonl", "type": "chatml.intel"}


def _load(**keys) -> tuple[TrainConfig, list[str]]:
    raw = {"base_model": "m", "datasets": [dict(PREF if keys.get("rl") else CHAT)], **keys}
    warnings = check_keys(raw, "cfg.yaml")
    return TrainConfig.model_validate(raw), warnings


def test_every_key_of_axolotls_deprecated_model_is_known():
    # src/axolotl/utils/schemas/deprecated.py, DeprecatedParameters
    deprecated = {
        "max_packed_sequence_len", "rope_scaling", "noisy_embedding_alpha", "dpo_beta", "evaluation_strategy",
        "eval_table_size", "eval_max_new_tokens", "dpo_use_logits_to_keep", "dpo_generate_during_eval",
        "dpo_norm_loss", "rpo_alpha", "s2_attention", "flash_attn_rms_norm",
    }  # fmt: skip
    assert deprecated <= axolotl_key_space().top


def test_dpo_beta_runs_as_rl_beta():
    cfg, warnings = _load(rl="dpo", dpo_beta=0.2)
    assert cfg.rl_beta == 0.2
    assert any("'dpo_beta' is deprecated (as in axolotl); write 'rl_beta: 0.2'" in w for w in warnings)
    cfg, warnings = _load(rl="dpo", dpo_beta=0.2, rl_beta=0.3)
    assert cfg.rl_beta == 0.3  # axolotl copies dpo_beta only into an unset rl_beta
    assert any("'rl_beta' is set, which wins" in w for w in warnings)


def test_noisy_embedding_alpha_runs_as_neftune_noise_alpha():
    cfg, warnings = _load(noisy_embedding_alpha=5)
    assert cfg.neftune_noise_alpha == 5
    assert any("write 'neftune_noise_alpha: 5'" in w for w in warnings)
    with pytest.raises(ValueError, match="both are set; remove 'noisy_embedding_alpha'"):
        _load(noisy_embedding_alpha=5, neftune_noise_alpha=3)


def test_evaluation_strategy_is_the_older_eval_strategy():
    cfg, _ = _load(evaluation_strategy="no")
    assert cfg.eval_strategy == "no"


@pytest.mark.parametrize("key", ["dpo_norm_loss", "dpo_use_logits_to_keep", "dpo_generate_during_eval", "rpo_alpha"])
def test_keys_axolotl_retired_itself_are_refused_naming_what_replaced_them(key):
    with pytest.raises(ValueError, match=f"'{key}' is an axolotl option hpcft does not support yet; axolotl no longer"):
        _load(rl="dpo", **{key: 0.5})


def test_load_in_4bit_with_lora_trains_plain_lora_as_axolotl_does():
    cfg, warnings = _load(adapter="lora", load_in_4bit=True, lora_target_linear=True)
    assert cfg.adapter == "lora" and not cfg.load_in_4bit
    assert any("'load_in_4bit: true' has no effect with 'adapter: lora'" in w and "plain LoRA" in w for w in warnings)
    cfg, _ = _load(adapter="qlora", load_in_4bit=True, lora_target_linear=True)
    assert cfg.load_in_4bit  # QLoRA keeps its 4-bit weights
    with pytest.raises(ValueError, match="needs adapter: qlora"):
        _load(load_in_4bit=True)


@pytest.mark.parametrize("key", ["eval_steps", "save_steps", "logging_steps"])
def test_steps_are_whole_numbers_or_fractions_of_the_run(key):
    cfg, _ = _load(**{key: 0.05})
    assert getattr(cfg, key) == 0.05
    cfg, _ = _load(**{key: 20.0})
    assert getattr(cfg, key) == 20 and isinstance(getattr(cfg, key), int)
    with pytest.raises(ValueError, match="neither a whole number of steps nor a fraction below 1"):
        _load(**{key: 2.5})
    with pytest.raises(ValueError):
        _load(**{key: 0})


def test_retired_top_level_spellings_run_with_their_modern_form():
    raw = {
        "base_model": "m",
        "datasets": [dict(CHAT)],
        "unsloth_lora_mlp": True,
        "rope_scaling": {"type": "linear", "factor": 2.0},
        "max_packed_sequence_len": 1024,
    }
    warnings = check_keys(raw, "cfg.yaml")
    assert any(
        "'unsloth_lora_mlp' is a retired axolotl spelling" in w and "'lora_mlp_kernel: true'" in w for w in warnings
    )
    assert any("model_config: {rope_scaling: {type: linear, factor: 2.0}}" in w for w in warnings)
    assert any("sample_packing: true with sequence_len: 1024" in w for w in warnings)
    cfg = TrainConfig.model_validate(raw)
    assert cfg.rope_scaling == {"type": "linear", "factor": 2.0} and cfg.sample_packing and cfg.sequence_len <= 1024
    assert "unsloth_lora_mlp" not in raw


def test_dpo_beta_without_rl_has_no_effect_as_in_axolotl():
    cfg, warnings = _load(dpo_beta=0.1)
    assert cfg.rl_beta is None and any("'dpo_beta'" in w and "no effect without rl" in w for w in warnings)
