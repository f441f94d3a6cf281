"""A network as a runtime sees it: one plugin conf or a conflist (a chain)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from multipy.cni.version import SUPPORTED_VERSIONS, key

from .problems import ConfigError, Problem, child


@dataclass(frozen=True)
class Network:
    name: str
    cni_version: str
    plugins: tuple[dict, ...]  # each plugin's own keys; name/cniVersion are injected per call
    source: dict  # the object as written, which the attachment record keeps
    disable_check: bool = False
    disable_gc: bool = False


def _flag(value) -> bool:
    # libcni accepts the strings "true"/"false" for these as well.
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _pick_version(doc: dict, inherited: str | None, path: str) -> str:
    versions = doc.get("cniVersions")
    if isinstance(versions, list) and versions:
        usable = [v for v in versions if v in SUPPORTED_VERSIONS]
        if not usable:
            raise ConfigError([Problem(child(path, "cniVersions"), f"none of {versions} is supported")])
        return max(usable, key=key)
    version = doc.get("cniVersion") or inherited
    if not version:
        raise ConfigError([Problem(path, "'cniVersion' is a required property")])
    if version not in SUPPORTED_VERSIONS:
        raise ConfigError([Problem(child(path, "cniVersion"), f"{version!r} is not a supported version")])
    return version


def from_dict(doc: dict, path: str = "$", inherited_version: str | None = None) -> Network:
    """Parse a delegate; a missing cniVersion is inherited from the meta conf, as Multus does."""
    if not isinstance(doc, dict):
        raise ConfigError([Problem(path, f"{doc!r} is not an object")])
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError([Problem(child(path, "name"), f"network name {name!r} is missing or not a string")])
    version = _pick_version(doc, inherited_version, path)
    if "plugins" in doc:
        plugins = doc["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise ConfigError([Problem(child(path, "plugins"), "must be a non-empty list of plugin confs")])
    else:
        plugins = [doc]
    for index, plugin in enumerate(plugins):
        plugin_path = child(child(path, "plugins"), index) if "plugins" in doc else path
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) or not plugin["type"]:
            raise ConfigError([Problem(child(plugin_path, "type"), "every plugin needs a non-empty 'type'")])
        if "/" in plugin["type"] or plugin["type"] in (".", ".."):
            # The type names a binary: it must not reach outside the plugin directories.
            raise ConfigError([Problem(child(plugin_path, "type"), f"{plugin['type']!r} is not a plugin name")])
    source = dict(doc)
    source.setdefault("cniVersion", version)
    return Network(
        name=name,
        cni_version=version,
        plugins=tuple(plugins),
        source=source,
        disable_check=_flag(doc.get("disableCheck")),
        disable_gc=_flag(doc.get("disableGC")),
    )


def from_file(path: str, inherited_version: str | None = None) -> Network:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except OSError as exc:
        raise ConfigError([Problem("$", f"cannot read {path}: {exc.strerror}")]) from None
    except ValueError as exc:
        raise ConfigError([Problem("$", f"{path} is not valid JSON: {exc}")]) from None
    try:
        return from_dict(doc, "$", inherited_version)
    except ConfigError as err:
        raise ConfigError(err.problems, source=path) from None
