"""The launcher checks optimizer and chat template names without torch; its lists must match the trainer's."""

from transformers.training_args import OptimizerNames

from hpcft.launcher.chat_templates import CHAT_TEMPLATE_NAMES
from hpcft.launcher.optimizers import COMMON_OPTIMIZERS, TRANSFORMERS_OPTIMIZERS
from hpcft.trainer.formats import NAMED_CHAT_TEMPLATES


def test_optimizer_list_matches_transformers():
    assert set(TRANSFORMERS_OPTIMIZERS) == {o.value for o in OptimizerNames}
    assert set(COMMON_OPTIMIZERS) <= set(TRANSFORMERS_OPTIMIZERS)


def test_chat_template_names_match_the_trainers_templates():
    assert set(CHAT_TEMPLATE_NAMES) == set(NAMED_CHAT_TEMPLATES)
