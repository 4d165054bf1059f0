"""The config reference, generated from the schema so that the docs cannot drift from the code."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from hpcft.core.axolotl_keys import (
    PLUGINS_WITHOUT_EFFECT,
    REFUSED_DATASET_KEYS,
    REFUSED_KEYS,
    WARN_ONLY_DATASET_KEYS,
    WARN_ONLY_KEYS,
    axolotl_key_space,
    plugin_refusal_message,
    refusal_message,
)
from hpcft.core.features.objectives import DiffusionConfig
from hpcft.core.features.prompt_strategies import UserDefinedPromptType
from hpcft.core.features.qat import QatConfig
from hpcft.core.features.sparse_finetuning import LlmCompressorConfig
from hpcft.core.schema import (
    IMPLEMENTED_PLUGINS,
    DatasetConfig,
    FsdpConfig,
    LaunchConfig,
    TrainConfig,
    TrlConfig,
    UserDefinedPreferenceType,
    field_aliases,
)
from hpcft.core.validation import known_keys


def _type_name(annotation: Any) -> str:
    text = re.sub(r"hpcft\.(?:\w+\.)+", "", str(annotation).replace("typing.", "")).replace("NoneType", "null")
    for noise in ("<class '", "'>"):
        text = text.replace(noise, "")
    return text


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.default_factory() if field.default_factory else field.default
    if value is PydanticUndefined or value is None or value in ([], {}):
        return ""
    return f"`{value}`"


def attribute_docstrings(model: type[BaseModel]) -> dict[str, str]:
    """The string under each field of the model's classes (`key: int = 1` followed by a string). Read here, from the
    source, rather than by pydantic's use_attribute_docstrings, which parses every model's source at import:
    a fifth of every command's start-up for text that only this reference shows."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
        for statement, following in zip(body, body[1:], strict=False):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _table(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    docs = attribute_docstrings(model)
    for name, field in model.model_fields.items():
        others = field_aliases(name, field)
        alias = f" (or {', '.join(f'`{prefix}{a}`' for a in others)})" if others else ""
        kind = _type_name(field.annotation).replace(" | None", " | null").replace("|", "\\|")
        # A docstring's line breaks would end the table row; Markdown reads the cell as one paragraph anyway.
        meaning = " ".join((field.description or docs.get(name, "")).split()).replace("|", "\\|")
        rows.append(f"| `{prefix}{name}`{alias} | {kind} | {_default(field)} | {meaning} |")
    return rows


def _classified(
    keys: frozenset[str], implemented: set[str], warn_only: dict[str, str], refused: dict[str, str], prefix: str
) -> list[str]:
    rows = ["| axolotl key | class | what hpcft does |", "| --- | --- | --- |"]
    # Older axolotl spellings we still recognise are listed with the current schema's keys.
    for key in sorted(keys | set(warn_only) | set(refused)):
        if key in implemented:
            rows.append(f"| `{prefix}{key}` | implemented | same meaning as in axolotl (see above) |")
        elif key in warn_only:
            rows.append(f"| `{prefix}{key}` | accepted with a warning | {warn_only[key]} |")
        else:
            hint = refusal_message(key, True, prefix).split("; ", 1)[1]
            rows.append(f"| `{prefix}{key}` | refused | {hint} |")
    return rows


# The key policy in one paragraph (README says the same).
KEY_POLICY = (
    "**Keys axolotl does not have either.** axolotl drops a key its schema lacks without a word, so a config "
    "carrying leftovers from other tools (`report_to`, `lr_scheduler_type`, `bnb_4bit_quant_type`, a dataset's "
    "`train_on_split`) runs there; hpcft runs it too, with one warning per such key that names it, says it has no "
    "effect and where the setting lives (`did you mean 'wandb_name'?`). A key one or two letters from a known key "
    "the config does not set (`micro_batch_sise`, `context_parapllel_size`) is an error instead (`unknown key ...; "
    "did you mean 'micro_batch_size'?`): that typo would silently change the run. `hpcft validate --strict` (also "
    "`render`, `submit`, `plan`) and `launch.strict_keys: true` refuse every key that has no effect. Keys of the "
    "`launch:` block are hpcft's own: an unknown one is always an error. `validate`, `render` and `submit` print "
    "the warnings once, first, before anything is written or queued. Deprecated keys run with axolotl's meaning "
    "and a warning naming the current key (`dpo_beta` as `rl_beta`, `noisy_embedding_alpha` as "
    "`neftune_noise_alpha`; `load_in_4bit: true` with `adapter: lora` loads unquantised, as in axolotl); spellings "
    "axolotl 0.19 refuses but once accepted (`type: sharegpt` and its loaders, `conversation:`, `unsloth_*`, "
    "top-level `rope_scaling`, `max_packed_sequence_len`) run too, with a warning that prints the modern form "
    "ready to paste. `eval_steps`, `save_steps` and `logging_steps` below 1 are fractions of the run."
)


def _axolotl_key_space() -> list[str]:
    space = axolotl_key_space()
    return [
        "## axolotl's key space",
        "",
        f"Every key of axolotl's config schema (commit `{space.commit}`) is in one class: *implemented* (same "
        "meaning), *accepted with a warning* (it only tunes axolotl's own kernels or bookkeeping; the warning says "
        "what hpcft does instead), or *refused* (an error naming the key; blank, `false` or empty values are "
        "accepted as unset). Older axolotl spellings hpcft still recognises are listed too.",
        "",
        KEY_POLICY,
        "",
        *_classified(space.top, known_keys(TrainConfig), WARN_ONLY_KEYS, REFUSED_KEYS, ""),
        "",
        "### In dataset entries",
        "",
        *_classified(
            space.dataset, known_keys(DatasetConfig), WARN_ONLY_DATASET_KEYS, REFUSED_DATASET_KEYS, "datasets[]."
        ),
        "",
        "### Plugins",
        "",
        "| plugin | class | what hpcft does |",
        "| --- | --- | --- |",
        *[
            f"| `{plugin}` | implemented | {IMPLEMENTED_PLUGINS[plugin]} |"
            if plugin in IMPLEMENTED_PLUGINS
            else f"| `{plugin}` | accepted with a warning | {PLUGINS_WITHOUT_EFFECT[plugin]} |"
            if plugin in PLUGINS_WITHOUT_EFFECT
            else f"| `{plugin}` | refused | {plugin_refusal_message(plugin).split('; ', 1)[1]} |"
            for plugin in sorted(space.plugins)
        ],
        "",
    ]


def config_reference_markdown() -> str:
    parts = [
        "# Config reference",
        "",
        "Generated from `core/schema.py` by `hpcft reference`; do not edit by hand.",
        "Keys have axolotl's names and meaning. Relative paths are taken from the config file's folder.",
        "",
        "## Training keys",
        "",
        *_table(TrainConfig),
        "",
        "## Dataset keys (each entry of `datasets:` and `test_datasets:`)",
        "",
        *_table(DatasetConfig, "datasets[]."),
        "",
        "## FSDP keys (`fsdp_config:`; axolotl's `fsdp_`-prefixed spellings are accepted too)",
        "",
        *_table(FsdpConfig, "fsdp_config."),
        "",
        "## Diffusion keys (`diffusion:`, with `plugins: [axolotl.integrations.diffusion.DiffusionPlugin]`)",
        "",
        *_table(DiffusionConfig, "diffusion."),
        "",
        "## Quantization-aware training keys (`qat:`; torchao fake quantisation, see docs/low-precision.md)",
        "",
        *_table(QatConfig, "qat."),
        "",
        "## Sparse fine-tuning keys (`llmcompressor:`, axolotl's LLMCompressor plugin; see docs/low-precision.md)",
        "",
        *_table(LlmCompressorConfig, "llmcompressor."),
        "",
        "## Job options (`launch:` in the config, the profile's `launch:`, or command-line flags)",
        "",
        "Precedence: profile < config `launch:` < command line (`--nodes`, `--time`, ...).",
        "",
        *_table(LaunchConfig, "launch."),
        "",
        "## Preference tuning (`rl:`; see docs/preference-tuning.md)",
        "",
        "`trl:` keys that apply to dpo/ipo/orpo/kto/simpo:",
        "",
        *_table(TrlConfig, "trl."),
        "",
        "A user-defined prompt format (`type:` as a mapping, without `rl:`; see docs/datasets.md):",
        "",
        *_table(UserDefinedPromptType, "datasets[].type."),
        "",
        "A user-defined preference dataset type (`type:` as a mapping, with `rl:`):",
        "",
        *_table(UserDefinedPreferenceType, "datasets[].type."),
        "",
        *_axolotl_key_space(),
    ]
    return "\n".join(parts)
