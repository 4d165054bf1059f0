"""Container runtimes are objects chosen by the profile's `runtime`: the rest of the launcher asks them instead of
comparing runtime names."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from hpcft.launcher.profiles import Profile
from hpcft.launcher.runtimes import RUNTIMES, runtime_for

ROOT = Path(__file__).resolve().parents[2]


def test_every_profile_runtime_has_an_object():
    assert set(typing.get_args(Profile.model_fields["runtime"].annotation)) == set(RUNTIMES)
    assert all(runtime_for(name).name == name for name in RUNTIMES)


def test_nothing_outside_the_runtimes_compares_runtime_names():
    compare = re.compile(r"runtime\s*(==|!=|\bin\b\s*\()")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("core", "launcher", "trainer", "templates", "edf")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".j2") and "runtimes" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if compare.search(line)
    ]
    assert found == []


def test_only_container_runtimes_need_an_image():
    assert {name for name, runtime in RUNTIMES.items() if runtime.image_format is None} == {"none"}
