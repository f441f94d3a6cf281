"""Per-namespace sysctls (/proc/sys), as the reference plugins set them.

Keys are slash paths under /proc/sys, e.g. "net/ipv4/conf/eth0/arp_notify": an
interface name may itself contain dots, so the dotted form would be ambiguous.
"""

from __future__ import annotations

from .netns import run_in


def _path(key: str) -> str:
    if key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"sysctl key {key!r} must be relative to /proc/sys")
    return f"/proc/sys/{key}"


def _read(key: str) -> str:
    with open(_path(key)) as f:
        return f.read().strip()


def _write(values: dict[str, str]) -> None:
    for key, value in values.items():
        with open(_path(key), "w") as f:
            f.write(value)


def read(netns: str | None, key: str) -> str:
    return run_in(netns, _read, key)


def write(netns: str | None, values: dict[str, str]) -> None:
    """Write every key=value in one visit to `netns`, in order; the first failure stops it."""
    run_in(netns, _write, values)


def _write_each(values: dict[str, str]) -> dict[str, OSError]:
    failed = {}
    for key, value in values.items():
        try:
            _write({key: value})
        except OSError as exc:
            failed[key] = exc
    return failed


def write_each(netns: str | None, values: dict[str, str]) -> dict[str, OSError]:
    """Write every key=value in one visit to `netns`, past failures; returns the keys that failed.

    For the sysctls the reference sets best effort (e.g. IPv6 ones where IPv6 is off).
    """
    return run_in(netns, _write_each, values)
