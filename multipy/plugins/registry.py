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
import threading
from importlib import import_module
from typing import TYPE_CHECKING

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.config.plugin_schemas import ConfSchema
from multipy.files import write_atomic

from .contract import CLI_GROUP, DELEGATE_GROUP, IPAM_GROUP

if TYPE_CHECKING:
    from .contract import PluginFactory

GROUPS = (DELEGATE_GROUP, IPAM_GROUP, CLI_GROUP)


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
        self._scanning = threading.Lock()  # a daemon's threads share one registry: scan once
        self._schemas: dict[str, dict] = {}  # config_schema file -> its schema, read once per registry

    def _index(self) -> dict[str, dict[str, str]]:
        if self._groups is None:
            with self._scanning:
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
        try:
            os.makedirs(os.path.dirname(self._index_path), mode=0o700, exist_ok=True)
            index = json.dumps({"fingerprint": fingerprint, "groups": groups}).encode()
            write_atomic(self._index_path, index, mode=0o600, durable=False)  # a lost index is only rescanned
        except OSError:
            pass  # without an index the next call just scans again
        return groups

    def names(self, group: str) -> list[str]:
        """Every name registered in `group`, without importing any of them."""
        return sorted({*self._extra.get(group, {}), *self._index().get(group, {})})

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

    def schema_for(self, group: str, plugin_type: str) -> ConfSchema:
        """The JSON schema the native plugin of `plugin_type` declares for its conf (`config_schema`,
        the path of a JSON file). The config loader gets this injected: it may not import plugins.

        Imports the plugin's module, which the request imports anyway to run that type."""
        factory = self.find(group, plugin_type)
        if factory is None:
            return ConfSchema(native=False)
        source = getattr(factory, "config_schema", None)
        if source is None:
            return ConfSchema(native=True)
        source = os.fspath(source)
        found = self._schemas.get(source)
        if found is None:
            found = self._schemas[source] = _read_schema(plugin_type, source)
        return ConfSchema(native=True, schema=found)


def _read_schema(plugin_type: str, source: str) -> dict:
    try:
        with open(source, "rb") as f:
            found = json.loads(f.read())
    except OSError as exc:
        problem = f"cannot be read: {exc.strerror}"
    except ValueError as exc:
        problem = f"is not JSON: {exc}"
    else:
        if isinstance(found, dict):
            return found
        problem = "is not a JSON schema object"
    raise CNIError(INVALID_NETWORK_CONFIG, f"native plugin {plugin_type!r} declares config_schema {source}, which {problem}")
