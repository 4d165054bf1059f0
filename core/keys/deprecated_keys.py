"""axolotl's deprecated keys (its `DeprecatedParameters` model and the validators that read them) and value forms
axolotl accepts with another meaning than the key's name suggests: rewritten on the raw config, before the keys
are checked, into what axolotl actually runs, with a warning naming the current key.

Deprecated keys axolotl refuses outright (`dpo_norm_loss`, `rpo_alpha`, `s2_attention`, ...) stay refused by name
in axolotl_keys.REFUSED_KEYS; keys it still accepts under another name (`evaluation_strategy`, `model_kwargs`,
...) are aliases in the schema.
"""

from __future__ import annotations

from typing import Any

# deprecated key -> the key it is an alias of in the schema (which one wins when both are set is axolotl's rule).
RENAMED: dict[str, str] = {
    "dpo_beta": "rl_beta",
    "noisy_embedding_alpha": "neftune_noise_alpha",
}


def translate_deprecated(raw: dict[str, Any], where: str) -> list[str]:
    """Rewrite value forms in place, as axolotl reads them, and warn of deprecated keys; one warning each."""
    warnings: list[str] = []
    for old, new in RENAMED.items():
        if raw.get(old) is None:
            continue
        if old == "dpo_beta" and not raw.get("rl"):  # axolotl copies it into an rl_beta nothing reads
            warnings.append(f"{where}: 'dpo_beta' (deprecated, as in axolotl) has no effect without rl:; remove it")
            del raw[old]
        elif raw.get(new) is None:
            warnings.append(f"{where}: '{old}' is deprecated (as in axolotl); write '{new}: {raw[old]}' instead")
        elif old == "noisy_embedding_alpha" and raw[new] != raw[old]:
            raise ValueError(f"{where}: '{old}' is the deprecated spelling of '{new}' and both are set; remove '{old}'")
        else:
            warnings.append(f"{where}: '{old}' is deprecated and '{new}' is set, which wins (as in axolotl); remove it")
            del raw[old]
    if raw.get("load_in_4bit") is True and raw.get("adapter") == "lora":
        # axolotl quantises to 4 bits only for adapter: qlora; with lora the flag loads nothing differently.
        del raw["load_in_4bit"]
        warnings.append(
            f"{where}: 'load_in_4bit: true' has no effect with 'adapter: lora' (axolotl quantises to 4 bits only "
            "with adapter: qlora): the model loads unquantised and trains as plain LoRA, as under axolotl; for "
            "QLoRA write 'adapter: qlora', else remove load_in_4bit"
        )
    return warnings
