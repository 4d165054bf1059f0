"""`do_bench_eval`: at each evaluation, multiple-choice questions (bench_dataset) scored as axolotl scores them.

Each row is `input` (the question and its choices, ending where the answer letter goes), `output` (the letter,
A to G) and `subject` (`name: subject`, or a plain name). The model's answer is the letter it ranks first at the
answer position; accuracy per name, their average and the total, and the loss on the answer tokens, as
`<bench_split>_bench_*` metrics next to the evaluation loss (trackers, metrics, stdout). Every rank scores its
share of the rows (the same number of forward passes on each: ZeRO-3 gathers weights in every forward).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import torch
import torch.distributed as dist
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainerControl, TrainerState

from hpcft.core.features.eval_datasets import MMLU_BENCH_FILES, bench_source
from hpcft.core.schema import TrainConfig
from hpcft.trainer.loop.distributed import is_main_process, rank, world_size

log = logging.getLogger("hpcft.trainer")

LETTERS = "ABCDEFG"
MAX_TOKENS = 2048  # axolotl truncates question and answer to this many tokens each


def load_bench_rows(cfg: TrainConfig) -> list[dict[str, str]]:
    """The rows of bench_dataset's split, from the Hub (or its cache) or a local JSON file."""
    import datasets

    source = bench_source(cfg)
    split = cfg.bench_split or "eval"
    if source.repo is None:
        rows = datasets.load_dataset("json", data_files={split: source.files[0]})[split]
    else:
        files = MMLU_BENCH_FILES.get(cfg.bench_dataset or "", {split: source.files[0]})
        rows = datasets.load_dataset(source.repo, data_files={split: files[split]})[split]
    return [dict(row) for row in rows]


def bench_name(row: dict[str, Any]) -> str:
    """The group a row's accuracy counts in: its `name`, else the part of `subject` before ':' (as axolotl)."""
    if row.get("name"):
        return str(row["name"])
    return str(row.get("subject") or "all").split(":")[0].strip().lower().replace("-", "_") or "all"


class BenchEvalCallback(TrainerCallback):
    def __init__(self, cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]]):
        self.split = cfg.bench_split or "eval"
        self.letter_ids = [tokenizer(letter, add_special_tokens=False)["input_ids"][0] for letter in LETTERS]
        self.items = [item for row in rows if (item := self._tokenize(tokenizer, row)) is not None]
        self.trainer: Trainer | None = None
        if not self.items:
            raise ValueError(
                f"bench_dataset: none of its {len(rows)} rows has an answer that is one letter A-G (`output`)"
            )

    @classmethod
    def from_config(cls, cfg: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> BenchEvalCallback | None:
        return cls(cfg, tokenizer, load_bench_rows(cfg)) if cfg.do_bench_eval else None

    def attach(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def _tokenize(self, tokenizer: PreTrainedTokenizerBase, row: dict[str, Any]) -> dict[str, Any] | None:
        """Question (after BOS) then answer (then EOS); kept when the answer is a letter followed by EOS."""
        source = tokenizer(
            f"{tokenizer.bos_token or ''}{row['input']}",
            add_special_tokens=False,
            truncation=True,
            max_length=MAX_TOKENS,
        )["input_ids"]
        target = tokenizer(
            f"{row['output']}{tokenizer.eos_token or ''}",
            add_special_tokens=False,
            truncation=True,
            max_length=MAX_TOKENS,
        )["input_ids"]
        if len(target) < 2 or target[-2] not in self.letter_ids:
            return None
        return {"source": source, "target": target, "name": bench_name(row)}

    def on_evaluate(self, args, state: TrainerState, control: TrainerControl, metrics=None, **kwargs):
        if self.trainer is None:
            return
        results = self.score(self.trainer.model, args.device)
        if metrics is not None:
            metrics.update(results)  # metric_for_best_model may name one of them
        self.trainer.log(results)
        if is_main_process():
            total, average = (
                results[f"{self.split}_bench_total_accuracy"],
                results[f"{self.split}_bench_average_accuracy"],
            )
            print(
                f"eval bench {state.global_step}/{state.max_steps}  accuracy {total:.4f}  average over "
                f"{len(self._names())} groups {average:.4f}  loss {results[f'{self.split}_bench_loss']:.4f}",
                flush=True,
            )

    def _names(self) -> set[str]:
        return {item["name"] for item in self.items}

    @torch.no_grad()
    def score(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """This rank's share of the rows (padded so every rank runs as many forwards), then everyone's counts."""
        mine = list(range(rank(), len(self.items), world_size()))
        turns = -(-len(self.items) // world_size())
        right: dict[str, int] = defaultdict(int)
        seen: dict[str, int] = defaultdict(int)
        loss_sum = 0.0
        was_training = model.training
        model.eval()
        for turn in range(turns):
            index = mine[turn] if turn < len(mine) else None
            item = self.items[index if index is not None else 0]  # a padding turn repeats a row and counts nothing
            ids = torch.tensor([item["source"] + item["target"]], device=device)
            logits = model(input_ids=ids).logits[0].float()
            start = len(item["source"])
            answer = logits[start - 1 : start - 1 + len(item["target"])]
            if index is None:
                continue
            loss_sum += torch.nn.functional.cross_entropy(answer, ids[0, start:]).item()
            predicted = int(logits[start - 1, self.letter_ids].argmax())
            right[item["name"]] += int(self.letter_ids[predicted] == item["target"][0])
            seen[item["name"]] += 1
        model.train(was_training)
        counts = [(dict(right), dict(seen), loss_sum)]
        if dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * world_size()
            dist.all_gather_object(gathered, counts[0])
            counts = gathered
        return self._results(counts)

    def _results(self, counts: list[tuple[dict[str, int], dict[str, int], float]]) -> dict[str, float]:
        right: dict[str, int] = defaultdict(int)
        seen: dict[str, int] = defaultdict(int)
        for part_right, part_seen, _ in counts:
            for name, n in part_seen.items():
                seen[name] += n
                right[name] += part_right.get(name, 0)
        split = self.split
        results = {f"{split}_bench_loss": sum(c[2] for c in counts) / max(sum(seen.values()), 1)}
        for name in sorted(seen):
            results[f"{split}_bench_accuracy_{name}"] = right[name] / seen[name]
        results[f"{split}_bench_average_accuracy"] = sum(right[n] / seen[n] for n in seen) / len(seen)
        results[f"{split}_bench_total_accuracy"] = sum(right.values()) / sum(seen.values())
        return results
