"""tokenizer_use_mistral_common: Mistral's own tokenizer (the `mistral-common` package, through transformers'
MistralCommonBackend) and the chat formatting that goes with it.

mistral-common renders a conversation itself, straight to token ids (no Jinja template, no offsets into a text),
in its fine-tuning mode: the conversation must end with an assistant turn, and each assistant turn ends with EOS.
Label masking therefore works on tokens: a turn's tokens are the ones that change when its content is replaced by
a sentinel (as axolotl's turn diff does), and the end of a turn is the EOS that follows it (mistral-common has no
separate end-of-turn token, so `train_on_eot` applies to the same EOS as `train_on_eos`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hpcft.core.errors import ConfigError
from hpcft.core.schema import DatasetConfig, TrainConfig
from hpcft.trainer.data.formats import _SENTINEL, DEFAULT_ROLES, IGNORE_INDEX, ChatTemplateFormatter, Sample


def load_mistral_tokenizer(cfg: TrainConfig) -> Any:
    """The mistral-common tokenizer of tokenizer_config or base_model (a folder with tekken.json or
    tokenizer.model.v*, or a Hub model), in fine-tuning mode."""
    if importlib.util.find_spec("mistral_common") is None:
        raise ConfigError(
            "tokenizer_use_mistral_common: the mistral-common package is not installed (pip install 'hpcft[train]')"
        )
    from transformers.tokenization_mistral_common import MistralCommonBackend

    source = cfg.tokenizer_config or cfg.base_model
    try:
        return MistralCommonBackend.from_pretrained(
            source, mode="finetuning", **({"revision": cfg.model_revision} if cfg.model_revision else {})
        )
    except ValueError as exc:
        if Path(source).expanduser().is_dir():
            raise ConfigError(
                f"tokenizer_use_mistral_common: {source} has no mistral-common tokenizer file (tekken.json or "
                f"tokenizer.model.v3 and the like): {exc}"
            ) from None
        raise


class MistralChatFormatter(ChatTemplateFormatter):
    """type: chat_template with the mistral-common tokenizer: the same turns, roles and train_on_* options as
    ChatTemplateFormatter, with turn boundaries found on token ids (see the module docstring)."""

    def __init__(self, ds: DatasetConfig, cfg: TrainConfig, tokenizer: Any, name: str):
        self.tokenizer, self.name, self.field = tokenizer, name, ds.field_messages
        self.mappings = {**(ds.message_property_mappings or {}), "role": ds.role_key(), "content": ds.content_key()}
        self.roles = {src: dst for dst, sources in ds.roles.items() for src in sources} if ds.roles else DEFAULT_ROLES
        self.roles_to_train = {self.roles.get(r, r) for r in (ds.roles_to_train or ["assistant"])}
        self.train_on_eos = ds.train_on_eos or "turn"
        self.train_on_eot = ds.train_on_eot or self.train_on_eos
        self.train_on_inputs = cfg.train_on_inputs if ds.train_on_inputs is None else ds.train_on_inputs
        self.drop_system_message = bool(ds.drop_system_message)
        self.split_thinking = bool(ds.split_thinking)
        self.eos_ids = {tokenizer.eos_token_id} - {None}
        self.eot_ids = self.eos_ids

    def encode(self, turns: list[dict[str, Any]], where: str) -> list[int]:
        from mistral_common.exceptions import MistralCommonException

        try:
            return list(self.tokenizer.apply_chat_template(turns, tokenize=True, return_dict=False))
        except (MistralCommonException, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"{where}: mistral-common cannot encode this conversation for fine-tuning: {first} (it must "
                "alternate user and assistant turns, after an optional system turn, and end with an assistant turn)"
            ) from None

    def content_tokens(self, turns: list[dict[str, Any]], index: int, ids: list[int], where: str) -> tuple[int, int]:
        """Token positions [start, end) that turns[index]'s content occupies in ids."""
        probe = self.encode(
            [*turns[:index], {"role": turns[index]["role"], "content": _SENTINEL}, *turns[index + 1 :]], where
        )
        limit = min(len(ids), len(probe))
        start = next((i for i in range(limit) if ids[i] != probe[i]), limit)
        suffix = next((i for i in range(limit - start) if ids[-1 - i] != probe[-1 - i]), limit - start)
        return start, len(ids) - suffix

    def __call__(self, row: dict, row_no: int) -> list[Sample]:
        where = f"{self.name}: row {row_no}"
        turns = self.turns(row, row_no)
        ids = self.encode(turns, where)
        labels = [IGNORE_INDEX] * len(ids)
        options = (self.train_on_eot, self.train_on_eos)  # both name the same EOS token here
        last = -1
        for index, turn in enumerate(turns):
            train = self.train_on_inputs or turn["role"] in self.roles_to_train
            if not train and "all" not in options:
                continue
            start, end = self.content_tokens(turns, index, ids, where)
            if end <= start:
                continue
            if train:
                labels[start:end] = ids[start:end]
            hit = next((t for t in range(end, min(end + 4, len(ids))) if ids[t] in self.eos_ids), -1)
            if hit != -1:
                last = hit
                if any(option == "all" or (option == "turn" and train) for option in options):
                    labels[hit] = ids[hit]
        if last != -1 and "last" in options:
            labels[last] = ids[last]
        return [(ids, labels)]
