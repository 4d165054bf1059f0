"""Container mounts (`/path` or `src:dst`) merged from profile, config and command line without duplicates."""

from __future__ import annotations


def unique_mounts(mounts: list[str]) -> list[str]:
    """Drop repeated mounts: a later `src:dst` wins over an earlier mount of the same destination, and a plain
    mount inside another plain mount (/capstor/x under /capstor) is already visible, so it is dropped."""
    by_dest: dict[str, str] = {}
    for mount in mounts:
        src, _, rest = str(mount).partition(":")
        dest = (rest.split(":")[0] if rest else src).rstrip("/") or "/"
        mount = mount if rest else dest  # /data/ and /data are the same mount
        by_dest.pop(dest, None)
        by_dest[dest] = str(mount)
    plain = {d for d, m in by_dest.items() if ":" not in m}
    return [
        m
        for d, m in by_dest.items()
        if ":" in m or not any(p != d and d.startswith(p.rstrip("/") + "/") for p in plain)
    ]
