"""do_causal_lm_eval: at every evaluation, generate an answer to each evaluation sample's prompt and score it
against the sample's trained text (axolotl's eval_causal_lm_metrics).

A sample's prompt is its tokens before the first trained one, its reference the trained tokens. sacrebleu, chrf and
ter are the sacrebleu package's corpus scores; perplexity is exp of the mean loss of the references, each scored as
a text of its own by the model being trained. The samples are split over the ranks (every rank makes the same
number of generate calls, in step, as ZeRO-3 and FSDP need); rank 0 logs the scores (to the trackers, stdout and
output_dir/causal_lm_eval.jsonl).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from hpcft.core.schema import TrainConfig
from hpcft.trainer.data.formats import IGNORE_INDEX

DEFAULT_MAX_NEW_TOKENS = 128  # axolotl's eval_max_new_tokens default
SCORES_FILE = "causal_lm_eval.jsonl"


def split_samples(batch: dict[str, torch.Tensor]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reference ids) of every sample in a batch; packed rows are split where position_ids restart."""
    samples = []
    for row in range(batch["input_ids"].shape[0]):
        ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
        mask = batch["attention_mask"][row].tolist() if "attention_mask" in batch else [1] * len(ids)
        positions = batch["position_ids"][row].tolist() if "position_ids" in batch else list(range(len(ids)))
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(ids)]
        for a, b in zip(starts, starts[1:], strict=False):
            trained = [i for i in range(a, b) if labels[i] != IGNORE_INDEX and mask[i]]
            if trained and trained[0] > a:  # padding and samples without a prompt have nothing to generate from
                samples.append((ids[a : trained[0]], [ids[i] for i in trained]))
    return samples


def corpus_scores(metrics: list[str], predictions: list[str], references: list[str]) -> dict[str, float]:
    """The text metrics (sacrebleu, chrf, ter) of the generated answers against the references."""
    import sacrebleu

    scorers = {"sacrebleu": sacrebleu.corpus_bleu, "chrf": sacrebleu.corpus_chrf, "ter": sacrebleu.corpus_ter}
    return {name: float(scorers[name](predictions, [references]).score) for name in metrics if name in scorers}


class CausalLMEvalCallback(TrainerCallback):
    """Generates and scores at each evaluation; `attach(trainer)` gives it the Trainer to log through."""

    def __init__(self, cfg: TrainConfig, tokenizer: Any) -> None:
        self.metrics = list(cfg.eval_causal_lm_metrics or ["sacrebleu", "ter", "chrf"])
        self.max_new_tokens = cfg.eval_max_new_tokens or DEFAULT_MAX_NEW_TOKENS
        self.tokenizer, self.path = tokenizer, Path(cfg.output_dir) / SCORES_FILE
        self.trainer: Any = None

    @classmethod
    def from_config(cls, cfg: TrainConfig, tokenizer: Any) -> CausalLMEvalCallback | None:
        return cls(cfg, tokenizer) if cfg.do_causal_lm_eval else None

    def attach(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        model, loader = kwargs.get("model"), kwargs.get("eval_dataloader")
        if model is None or loader is None:
            return
        samples = [sample for batch in loader for sample in split_samples(batch)]
        scores = self.score(model, samples)
        if state.is_world_process_zero:
            values = {"step": state.global_step, **{f"eval_{k}": round(v, 4) for k, v in scores.items()}}
            shown = "  ".join(f"{k} {v:.3f}" for k, v in scores.items())
            print(f"eval causal lm {state.global_step}/{state.max_steps}  {shown}", flush=True)
            with self.path.open("a") as handle:
                handle.write(json.dumps(values) + "\n")
        if self.trainer is not None:
            self.trainer.log({f"eval_{k}": v for k, v in scores.items()})

    @torch.no_grad()
    def score(self, model: Any, samples: list[tuple[list[int], list[int]]]) -> dict[str, float]:
        """Generate and score this rank's samples; every rank returns the scores of all ranks' samples."""
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        count = len(samples)
        if distributed:  # every rank makes as many generate calls: pad with repeats (or a stand-in) not counted
            counts = torch.tensor([count])
            dist.all_reduce(counts, op=dist.ReduceOp.MAX)
            count = int(counts.item())
        eos = self.tokenizer.eos_token_id
        filler = samples[-1] if samples else ([eos], [eos, eos])
        was_training = model.training
        model.eval()
        results = []
        for index, (prompt, reference) in enumerate(samples + [filler] * (count - len(samples))):
            answer = self._generate(model, prompt, distributed)
            loss = self._loss(model, reference) if "perplexity" in self.metrics else 0.0
            if index < len(samples):
                text, wanted = (self.tokenizer.decode(t, skip_special_tokens=True) for t in (answer, reference))
                results.append((text, wanted, loss))
        if was_training:
            model.train()
        if distributed:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, results)
            results = [r for part in gathered for r in part]
        if not results:
            return {}
        scores = corpus_scores(self.metrics, [r[0] for r in results], [r[1] for r in results])
        if "perplexity" in self.metrics:
            scores["perplexity"] = math.exp(sum(r[2] for r in results) / len(results))
        return scores

    def _generate(self, model: Any, prompt: list[int], synced: bool) -> list[int]:
        device = next(model.parameters()).device
        input_ids = torch.tensor([prompt], device=device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=self.tokenizer.eos_token_id,
            synced_gpus=synced,
        )
        return out[0, len(prompt) :].tolist()

    def _loss(self, model: Any, reference: list[int]) -> float:
        """Mean next-token loss of a reference text on its own (its first token has nothing to be predicted from)."""
        device = next(model.parameters()).device
        ids = torch.tensor([reference if len(reference) > 1 else reference * 2], device=device)
        return float(model(input_ids=ids, labels=ids).loss)
