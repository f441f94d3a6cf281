"""Lazy lookup of native plugins by `type` through entry points.

importlib.metadata costs 20-40 ms to import and scan, more than the rest of an
ADD's own Python work, and every delegate's type must be looked up (a native
plugin wins over a binary of the same name). So the entry points of our groups
are kept in a small index file, valid while the installed distributions are
unchanged: its key is the mtime of every sys.path directory and of every
distribution's entry_points.txt, which any install, upgrade or removal touches.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import import_module
from typing import TYPE_CHECKING

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError

from .contract import DELEGATE_GROUP, IPAM_GROUP

if TYPE_CHECKING:
    from .contract import PluginFactory

GROUPS = (DELEGATE_GROUP, IPAM_GROUP)


def _fingerprint() -> list:
    stamp: list = []
    for entry in sys.path:
        try:
            stamp.append([entry, os.stat(entry).st_mtime_ns])
            with os.scandir(entry) as found:
                names = sorted(e.name for e in found if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue
        for name in names:
            try:
                stamp.append([name, os.stat(os.path.join(entry, name, "entry_points.txt")).st_mtime_ns])
            except OSError:
                pass
    return stamp


def _scan() -> dict[str, dict[str, str]]:
    from importlib.metadata import entry_points

    return {group: {ep.name: ep.value for ep in entry_points(group=group)} for group in GROUPS}


def _load(value: str):
    module, _, attr = value.partition(":")
    target = import_module(module.strip())
    for part in filter(None, attr.strip().split(".")):
        target = getattr(target, part)
    return target


class Registry:
    def __init__(self, extra: dict[str, dict[str, PluginFactory]] | None = None, index_path: str | None = None):
        # `extra` registers factories directly (tests, a daemon's overrides); it wins.
        self._extra = extra or {}
        self._index_path = index_path
        self._groups: dict[str, dict[str, str]] | None = None

    def _index(self) -> dict[str, dict[str, str]]:
        if self._groups is None:
            self._groups = self._cached_scan()
        return self._groups

    def _cached_scan(self) -> dict[str, dict[str, str]]:
        if not self._index_path:
            return _scan()
        fingerprint = _fingerprint()
        try:
            with open(self._index_path) as f:
                cached = json.load(f)
            if cached["fingerprint"] == fingerprint:
                return cached["groups"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        groups = _scan()
        tmp = f"{self._index_path}.tmp{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(self._index_path), mode=0o700, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"fingerprint": fingerprint, "groups": groups}, f)
            os.replace(tmp, self._index_path)
        except OSError:
            pass  # without an index the next call just scans again
        return groups

    def find(self, group: str, plugin_type: str) -> PluginFactory | None:
        factory = self._extra.get(group, {}).get(plugin_type)
        if factory is not None:
            return factory
        value = self._index().get(group, {}).get(plugin_type)
        if value is None:
            return None
        try:
            return _load(value)
        except Exception as exc:  # a broken third-party package must name itself
            raise CNIError(
                INVALID_NETWORK_CONFIG,
                f"native plugin {plugin_type!r} ({value}) failed to load: {type(exc).__name__}: {exc}",
            ) from exc
