"""The login node's dataset-file check (core/checks/dataset_heads.py) agrees with datasets: what it refuses,
datasets.load_dataset cannot read either; what it accepts, datasets reads into rows."""

from __future__ import annotations

import datasets
import pytest

from hpcft.core.checks.dataset_heads import file_problem

CASES = {
    # name: (builder, bytes, refused by the login node)
    "ok.jsonl": ("json", b'{"text": "a"}\n{"text": "b"}\n', False),
    "bom.jsonl": ("json", b'\xef\xbb\xbf{"text": "a"}\n', False),
    "pretty.json": ("json", b'{\n  "text": "a"\n}\n{\n  "text": "b"\n}\n', False),
    "two_on_a_line.jsonl": ("json", b'{"text": "a"} {"text": "b"}\n', False),
    "blank_lines_between.jsonl": ("json", b'{"text": "a"}\n\n\n{"text": "b"}\n', False),
    "list.json": ("json", b'[{"text": "a"}, {"text": "b"}]', False),
    "strings.json": ("json", b'["a", "b"]', False),
    "broken_first_line.jsonl": ("json", b'{"text": "a"\n{"text": "b"}\n', True),
    "not_an_object.jsonl": ("json", b'{"text": "a"}\n[1, 2]\n', True),
    "unclosed_at_end.jsonl": ("json", b'{"text": "a"}\n{"text": "b"\n', True),
    "broken_list.json": ("json", b'[{"text": "a"}, {"text": }]', True),
    "blank_lines.jsonl": ("json", b"\n\n   \n", True),
    "latin1.jsonl": ("json", b'{"text": "caf\xe9"}\n', True),
    "ok.csv": ("csv", b"a,b\n1,2\n", False),
    "fewer_fields.csv": ("csv", b"a,b\n1,2\n3\n", False),
    "more_fields.csv": ("csv", b"a,b\n1,2\n3,4,5\n", True),
    "unterminated_quote.csv": ("csv", b'a,b\n1,"x\n', True),
    "latin1.csv": ("csv", b"text\n\xff\xfe\n", True),
    "not.parquet": ("parquet", b"PAR1 but not really", True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_login_node_check_agrees_with_datasets(tmp_path, name):
    builder, content, refused = CASES[name]
    path = tmp_path / name
    path.write_bytes(content)
    assert (file_problem(path, builder) is not None) == refused, file_problem(path, builder)
    assert (file_problem(path, builder, head_bytes=None) is not None) == refused
    if refused:
        with pytest.raises(Exception):  # noqa: B017,PT011 - datasets raises several types; that it fails is the point
            rows = datasets.load_dataset(builder, data_files=[str(path)], split="train", cache_dir=str(tmp_path / "c"))
            rows[:]  # noqa: B018 - JSON with bytes that are not UTF-8 loads, then fails when its rows are read
    else:
        rows = datasets.load_dataset(builder, data_files=[str(path)], split="train", cache_dir=str(tmp_path / "c"))
        assert len(rows) >= 1


def test_a_cut_head_is_not_an_error(tmp_path):
    """A file longer than the head: the row the head cuts is read on by the whole-file check, not reported."""
    path = tmp_path / "long.jsonl"
    path.write_text("".join('{"text": "%s"}\n' % ("x" * 1000) for _ in range(3000)))
    assert file_problem(path, "json", head_bytes=64 * 1024 + 17) is None
    listed = tmp_path / "long.json"
    listed.write_text("[" + ",\n".join('{"text": "%s"}' % ("x" * 1000) for _ in range(3000)) + "]")
    assert file_problem(listed, "json", head_bytes=64 * 1024 + 17) is None
