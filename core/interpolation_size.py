"""A bound on what OmegaConf interpolations expand to, computed before they are resolved: `b: ${a}${a}${a}` over
ten levels is a few lines that resolve to gigabytes (the alias-bomb guard in config.py counts values, not the
length of strings that interpolation builds). Each value's expanded length is bounded from the lengths of what it
refers to, memoized, so the bound itself is cheap; a config whose bound is past the limit is refused unresolved."""

from __future__ import annotations

import os
import re
from typing import Any

from hpcft.core.errors import ConfigError

MAX_EXPANDED_CHARS = 4 * 1024 * 1024  # the same as the largest config file read
_KEY_PATH = re.compile(r"(\.*)([A-Za-z0-9_\-\[\]. ]*)")

Path_ = tuple[Any, ...]


def check_interpolation_size(data: dict[str, Any], where: str, limit: int = MAX_EXPANDED_CHARS) -> None:
    """Raise ConfigError when the config's interpolations could expand past `limit` characters in all."""
    sizes: dict[Path_, int] = {}
    visiting: set[Path_] = set()
    longest_env = max((len(v) for v in os.environ.values()), default=0)

    def node(path: Path_) -> Any:
        value: Any = data
        for part in path:
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
                value = value[part]
            else:
                return None
        return value

    def size(path: Path_) -> int:
        if path in sizes:
            return sizes[path]
        if path in visiting:  # a cycle: OmegaConf reports it when resolving
            return 0
        visiting.add(path)
        value = node(path)
        if isinstance(value, dict):
            total = 2 + sum(len(str(k)) + 4 + size((*path, k)) for k in value)
        elif isinstance(value, list):
            total = 2 + sum(2 + size((*path, i)) for i in range(len(value)))
        elif isinstance(value, str) and "${" in value:
            total = string_size(value, path[:-1])
        else:
            total = len(str(value))
        visiting.discard(path)
        if total > limit:
            raise ConfigError(
                f"{where}: key '{_dotted(path)}': its interpolations (${{...}}) expand to more than "
                f"{limit // 2**20} MiB; a training config is much smaller: write the value out"
            )
        sizes[path] = total
        return total

    def string_size(text: str, container: Path_) -> int:
        total = 0
        for literal, inner in _split(text):
            total += len(literal)
            if inner is not None:
                total += reference_size(inner, container)
            if total > limit:
                return total
        return total

    def reference_size(inner: str, container: Path_) -> int:
        name, colon, args = inner.partition(":")
        if colon and re.fullmatch(r"[A-Za-z_][\w.]*", name.strip()):  # a resolver: oc.env, oc.select, ...
            if name.strip() == "oc.env":
                return longest_env + string_size(args, container)
            first = args.split(",", 1)[0].strip()
            if name.strip() in ("oc.select", "oc.deprecated") and "${" not in first:
                return size(_target(first, container)) + string_size(args, container)
            return string_size(args, container)
        if "${" in inner:  # a key built from interpolations: bound by the largest value of the config
            return string_size(inner, container) + size(())
        return size(_target(inner.strip(), container))

    try:
        size(())
    except RecursionError:
        raise ConfigError(
            f"{where}: interpolations (${{...}}) refer to each other too deeply; write values out"
        ) from None


def _target(reference: str, container: Path_) -> Path_:
    """`a.b[0]` (from the root) or `.x`/`..x` (relative to the value's own mapping, then its parent)."""
    dots = len(reference) - len(reference.lstrip("."))
    base = container[: len(container) - (dots - 1)] if dots else ()
    parts: list[Any] = []
    for part in re.split(r"[.\[\]]+", reference.lstrip(".")):
        if part:
            parts.append(int(part) if part.isdigit() else part)
    return (*base, *parts)


def _split(text: str) -> list[tuple[str, str | None]]:
    """[(literal text, the inside of the ${...} that follows it or None)], braces balanced."""
    out: list[tuple[str, str | None]] = []
    i, start = 0, 0
    while True:
        j = text.find("${", i)
        if j < 0:
            out.append((text[start:], None))
            return out
        depth, k = 0, j
        while k < len(text):
            if text.startswith("${", k):
                depth += 1
                k += 2
                continue
            if text[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        if depth:  # unbalanced: OmegaConf reports the syntax error
            out.append((text[start:], None))
            return out
        out.append((text[start:j], text[j + 2 : k]))
        i = start = k + 1


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
