"""Each plugin conf of a network checked against the JSON schema its native plugin declares.

The layer below the plugins cannot find a plugin: the caller hands in a `SchemaLookup`
(multipy/plugins/registry.py's `Registry.schema_for`). A plugin conf is checked against
the schema of its `type` (multipy.delegates), and, when that plugin runs natively, its
`ipam` object against the schema of the IPAM `type` (multipy.ipam). A type that runs as
a binary, or whose native plugin declares no schema, is not checked: it is listed as
such, never counted as valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from multipy.cni.errors import CNIError

from . import schema
from .network import Network, from_dict
from .problems import ConfigError, Findings, Problem, child

# The entry-point groups of multipy/plugins/contract.py, which this layer may not import.
DELEGATE_GROUP = "multipy.delegates"
IPAM_GROUP = "multipy.ipam"


@dataclass(frozen=True)
class ConfSchema:
    """What a lookup found for a `type`."""

    native: bool  # a native plugin of this type is installed; else the type runs as a binary
    schema: dict | None = None  # the JSON schema that native plugin declares for its conf, if any


# (group, type) -> ConfSchema; raises CNIError when a native plugin or its schema cannot be read.
SchemaLookup = Callable[[str, str], ConfSchema]


def plugins(net: Network, path: str) -> Iterator[tuple[str, dict]]:
    """(JSON path, plugin conf as written) of every plugin of a conf or conflist found at `path`."""
    listed = "plugins" in net.source
    for index, plugin in enumerate(net.plugins):
        yield (child(child(path, "plugins"), index) if listed else path), plugin


class _Collector:
    """The targets of one network, and what cannot be checked, for one lookup."""

    def __init__(self, lookup: SchemaLookup, binary_types: frozenset[str]) -> None:
        self.lookup = lookup
        self.binary_types = binary_types
        self.targets: list[schema.Target] = []
        self.findings = Findings()

    def add(self, group: str, plugin_type: str, document: dict, path: str, type_path: str) -> bool:
        """Queue `document` against the schema of `plugin_type`; True when that type runs natively."""
        if plugin_type in self.binary_types:
            self._skip(path, plugin_type, "is in binaryDelegates: it runs as a binary")
            return False
        try:
            found = self.lookup(group, plugin_type)
        except CNIError as err:
            self.findings.problems.append(Problem(type_path, err.msg))
            return False
        if not found.native:
            self._skip(path, plugin_type, "has no native plugin: it runs as a binary")
        elif found.schema is None:
            self._skip(path, plugin_type, "has a native plugin without a config schema")
        else:
            self.targets.append(schema.Target(found.schema, document, path))
        return found.native

    def _skip(self, path: str, plugin_type: str, why: str) -> None:
        self.findings.unchecked.append(Problem(path, f"not checked: type {plugin_type!r} {why}"))

    def plugin(self, path: str, plugin: dict) -> None:
        native = self.add(DELEGATE_GROUP, plugin["type"], plugin, path, child(path, "type"))
        ipam = plugin.get("ipam")
        # A binary runs its IPAM plugin itself, from CNI_PATH: only a native plugin's IPAM runs here.
        if native and isinstance(ipam, dict) and isinstance(ipam.get("type"), str) and ipam["type"]:
            ipam_path = child(path, "ipam")
            self.add(IPAM_GROUP, ipam["type"], ipam, ipam_path, child(ipam_path, "type"))


def check(net: Network, path: str, lookup: SchemaLookup, binary_types: frozenset[str] = frozenset(),
          stamp_dir: str | None = None) -> Findings:  # fmt: skip
    """Every plugin conf of `net`, found at `path`, against its type's schema (once per stamp)."""
    collector = _Collector(lookup, binary_types)
    for plugin_path, plugin in plugins(net, path):
        collector.plugin(plugin_path, plugin)
    collector.findings.problems += schema.validate_cached(collector.targets, stamp_dir)
    return collector.findings


def conf_findings(doc, path: str, lookup: SchemaLookup, inherited_version: str,
                  binary_types: frozenset[str] = frozenset()) -> Findings:  # fmt: skip
    """A network conf or conflist standing alone (a NAD's spec.config) found at `path`: checked as a
    delegate of the multus conf is, then each of its plugin confs against its type's schema."""
    found = Findings(schema.problems(schema.network_target(doc, path)))
    if found.problems:
        return found
    try:
        net = from_dict(doc, path, inherited_version)
    except ConfigError as err:
        return Findings(err.problems)
    return check(net, path, lookup, binary_types)
