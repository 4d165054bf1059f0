"""eval_steps / save_steps / logging_steps below 1 are fractions of the run, as transformers reads them: resolved
to whole steps in the TrainingArguments (so that saves aligned to evaluations stay whole multiples)."""

from __future__ import annotations

from hpcft.trainer.loop.args import Precision, training_arguments


def test_fractions_become_whole_steps_of_the_run(train_config):
    # 100 rows, micro batch 2, accumulation 1, one rank: 50 steps per epoch, 2 epochs = 100 steps.
    cfg = train_config(
        val_set_size=0.1, eval_steps=0.05, save_steps=0.25, logging_steps=0.01, num_epochs=2, micro_batch_size=2
    )
    args = training_arguments(cfg, Precision(), None, num_train_rows=100, has_eval=True, world_size=1)
    assert (args.eval_steps, args.save_steps, args.logging_steps) == (5, 25, 1)
    assert (args.eval_strategy, args.save_strategy) == ("steps", "steps")


def test_a_fraction_of_max_steps_rounds_up_as_transformers_does(train_config):
    cfg = train_config(val_set_size=0.1, eval_steps=0.3, max_steps=7, load_best_model_at_end=True, save_steps=0.5)
    args = training_arguments(cfg, Precision(), None, num_train_rows=100, has_eval=True, world_size=1)
    assert args.eval_steps == 3  # ceil(7 * 0.3)
    assert args.save_steps == 6  # ceil(7 * 0.5) = 4, moved to the next evaluation for the best model


def test_whole_steps_are_unchanged(train_config):
    cfg = train_config(val_set_size=0.1, eval_steps=4, logging_steps=2)
    args = training_arguments(cfg, Precision(), None, num_train_rows=100, has_eval=True, world_size=1)
    assert (args.eval_steps, args.logging_steps) == (4, 2)
