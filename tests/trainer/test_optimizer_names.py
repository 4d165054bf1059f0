"""The launcher checks optimizer names without torch; its list must match the pinned transformers'."""

from transformers.training_args import OptimizerNames

from hpcft.core.features.optimizers import COMMON_OPTIMIZERS, TRANSFORMERS_OPTIMIZERS


def test_optimizer_list_matches_transformers():
    assert set(TRANSFORMERS_OPTIMIZERS) == {o.value for o in OptimizerNames}
    assert set(COMMON_OPTIMIZERS) <= set(TRANSFORMERS_OPTIMIZERS)
