"""docs/config-reference.md is generated from the schema; this fails when someone forgets to regenerate it."""

from pathlib import Path

from hpcft.launcher.reference import config_reference_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"


def test_config_reference_is_up_to_date():
    assert DOC.read_text() == config_reference_markdown(), "run: hpcft reference > docs/config-reference.md"


def test_reference_lists_supported_and_unsupported_keys():
    text = config_reference_markdown()
    for key in (
        "`sample_packing`",
        "`datasets[].field_messages`",
        "`launch.nodes`",
        "`relora_steps`",
        "`flash_attn_rms_norm`",
    ):
        assert key in text
