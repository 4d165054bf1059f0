"""chat_template names and chat_template_jinja files are settled on the login node, before anything is queued."""

from __future__ import annotations

import pytest

from hpcft.core.errors import ConfigError
from hpcft.launcher.config import load_job

TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}</s>{% endfor %}"


def test_chat_template_jinja_file_is_read_into_the_config(workspace):
    (workspace / "templates").mkdir()
    (workspace / "templates" / "mine.jinja").write_text(TEMPLATE)
    config = (workspace / "cfg.yaml").read_text()
    config = config.replace(
        "    field_messages: conversations\n",
        "    field_messages: conversations\n    chat_template: jinja\n"
        "    chat_template_jinja: ./templates/mine.jinja\n",
        1,
    )
    (workspace / "cfg.yaml").write_text(config + "chat_template: jinja\nchat_template_jinja: templates/mine.jinja\n")
    cfg = load_job(workspace / "cfg.yaml", "local").cfg
    assert cfg.chat_template_jinja == TEMPLATE
    assert cfg.datasets[0].chat_template_jinja == TEMPLATE
    # The text travels in train.yaml: the job never needs the file.
    assert cfg.training_dict()["chat_template_jinja"] == TEMPLATE


def test_inline_template_text_is_kept_and_a_missing_file_is_named(workspace):
    config = (workspace / "cfg.yaml").read_text()
    (workspace / "cfg.yaml").write_text(config + f'chat_template: jinja\nchat_template_jinja: "{TEMPLATE}"\n')
    assert load_job(workspace / "cfg.yaml", "local").cfg.chat_template_jinja == TEMPLATE
    (workspace / "cfg.yaml").write_text(config + "chat_template: jinja\nchat_template_jinja: ./nope.jinja\n")
    with pytest.raises(ConfigError, match=r"key 'chat_template_jinja': template file not found: .*nope\.jinja"):
        load_job(workspace / "cfg.yaml", "local")
