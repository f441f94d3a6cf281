"""Lazy lookup of native plugins by `type` through entry points.

importlib.metadata costs tens of milliseconds to import and scan, so it is
touched only when a plugin is actually looked up, once per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError

if TYPE_CHECKING:
    from .contract import PluginFactory


class Registry:
    def __init__(self, extra: dict[str, dict[str, PluginFactory]] | None = None) -> None:
        # `extra` registers factories directly (tests, a daemon's overrides); it wins.
        self._extra = extra or {}
        self._entry_points: dict[str, dict] = {}

    def _group(self, group: str) -> dict:
        if group not in self._entry_points:
            from importlib.metadata import entry_points

            self._entry_points[group] = {ep.name: ep for ep in entry_points(group=group)}
        return self._entry_points[group]

    def find(self, group: str, plugin_type: str) -> PluginFactory | None:
        factory = self._extra.get(group, {}).get(plugin_type)
        if factory is not None:
            return factory
        entry_point = self._group(group).get(plugin_type)
        if entry_point is None:
            return None
        try:
            return entry_point.load()
        except Exception as exc:  # a broken third-party package must name itself
            raise CNIError(
                INVALID_NETWORK_CONFIG,
                f"native plugin {plugin_type!r} ({entry_point.value}) failed to load: {type(exc).__name__}: {exc}",
            ) from exc

    def names(self, group: str) -> list[str]:
        return sorted(set(self._group(group)) | set(self._extra.get(group, {})))
