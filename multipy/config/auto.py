"""Multus's `auto` conf: multipy's conf generated from the node's primary CNI conf.

Go Multus (`--multus-conf-file=auto` in thin mode, `"multusConfigFile": "auto"` in its thick
daemon) takes the node's primary conf (the first in libcni's order, e.g. flannel's conflist) as the
cluster network and writes 00-multus.conf ahead of it: the runtime then runs Multus, and Multus
runs the primary on the pod's eth0. The conf made here is the one of Go's thin entrypoint: the
primary embedded as the master delegate, the primary's cniVersion, and the union of the
capabilities its plugins declare (the runtime only sends what the conf it reads declares), plus
the Multus keys the operator gives.

Embedded rather than named (`clusterNetwork`, as Go's thick daemon does), because then the conf
is whole: it validates where the node's files are not visible (an installer container), an ADD
reads one file rather than two that may change between the reads, and with a kubeconfig no
NetworkAttachmentDefinition is looked up under the file's path on every ADD. The cost, a copy
that can go stale, is paid by regenerating it when the primary changes (`install --auto
--every`, the daemon's autoConf), and a stale copy still wires pods the way the primary did.

`generate` and `render` touch no file; `from_conf_dir` reads the primary through
confdir.primary and nothing else. Writing is the caller's (atomically, only when changed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from . import confdir, network, schema
from .problems import ConfigError, Problem, child

DEFAULT_FILE_NAME = "00-multus.conf"  # Go Multus's: sorts before the primary, so the runtime reads it
NETWORK_NAME = "multus-cni-network"  # Go Multus's; it names the attachment records, so it must stay put
# Keys the conf's shape decides, never an option: the primary is the delegate, the mode the type.
NOT_OPTIONS = {
    "delegates": "made from the primary conf",
    "clusterNetwork": "the primary conf is embedded in 'delegates' instead",
    "defaultNetworks": "needs 'clusterNetwork', and the primary is embedded in 'delegates': write the conf by hand",
    "type": "the mode's: multus-cni, or multus-shim in thick mode",
}


@dataclass(frozen=True)
class Generated:
    primary: str  # the primary conf's path, as the node sees it
    doc: dict  # the conf
    data: bytes  # what goes into the file


def option_problem(key: str) -> str | None:
    """Why `key` cannot be set on the generated conf, or None."""
    if key in NOT_OPTIONS:
        return f"cannot be set: {NOT_OPTIONS[key]}"
    if key not in schema.schema()["properties"]:
        return "unknown key of multipy's conf (see docs/configuration.md)"
    return None


def parse_option(text: str) -> tuple[str, object]:
    """KEY=VALUE (`--auto-option`): VALUE is JSON when it parses as JSON (true, 30, ["a"],
    {"maxSize": 10}), else the text itself. ValueError saying what is wrong."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"{text!r} is not KEY=VALUE")
    problem = option_problem(key)
    if problem:
        raise ValueError(f"{key}: {problem}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def capabilities(primary: dict) -> dict[str, bool]:
    """The capabilities the primary's plugins turn on, as one object (sorted, as Go's JSON writes a map)."""
    listed = isinstance(primary.get("plugins"), list)
    plugins = primary["plugins"] if listed else [primary]
    found: dict[str, bool] = {}
    problems = []
    for index, plugin in enumerate(plugins):
        where = child(child("$", "plugins"), index) if listed else "$"
        path = child(where, "capabilities")
        declared = plugin.get("capabilities") if isinstance(plugin, dict) else None
        if declared is None:
            continue
        if not isinstance(declared, dict):
            problems.append(Problem(path, f"{declared!r} is not an object"))
            continue
        for name, on in declared.items():
            if not isinstance(on, bool):
                problems.append(Problem(child(path, name), f"{on!r} is not a boolean"))
            elif on:
                found[name] = True
    if problems:
        raise ConfigError(problems)
    return dict(sorted(found.items()))


def generate(primary: dict, kind: str, options: Mapping[str, object] | None = None) -> dict:
    """multipy's conf running `primary` (a conf or conflist document) as the master delegate.

    `kind` is the conf's "type" (multus-cni, or multus-shim in thick mode); `options` are top-level
    keys of the conf (cniVersion and name override the derived ones; capabilities add to the
    primary's, false turning one off). ConfigError with JSON paths into the primary when it cannot be
    a delegate. The result is checked by the caller, as any conf is (multus.problems)."""
    options = dict(options or {})
    parsed = network.from_dict(primary, "$")  # name, cniVersion(s), plugins and their types: as any delegate
    conf: dict = {"cniVersion": parsed.cni_version, "name": NETWORK_NAME, "type": kind}
    found = capabilities(primary)
    given = options.pop("capabilities", None)
    if isinstance(given, dict):
        found = dict(sorted({**found, **given}.items()))
    elif given is not None:
        found = given  # not an object: the schema check names it
    if found:
        conf["capabilities"] = found
    for key in sorted(options):
        conf[key] = options[key]
    conf["delegates"] = [primary]
    return conf


def render(conf: dict) -> bytes:
    """The file's bytes: the same conf always gives the same bytes, so an unchanged one is not rewritten."""
    return (json.dumps(conf, indent=2) + "\n").encode()


def from_conf_dir(conf_dir: str, name: str, kind: str, options: Mapping[str, object] | None = None,
                  chosen: str | None = None, shown_dir: str | None = None) -> Generated:  # fmt: skip
    """The conf `name` for the primary conf of `conf_dir` (see confdir.primary: `chosen`, else the first
    in libcni's order that is not a meta plugin's). ConfigError (confdir.Unreadable when there is no
    primary to read) naming the file, as the node sees it (`shown_dir`), and the JSON path."""
    shown, primary = confdir.primary(conf_dir, name, chosen, shown_dir)
    try:
        conf = generate(primary, kind, options)
    except ConfigError as err:
        raise ConfigError(err.problems, source=shown) from None
    return Generated(shown, conf, render(conf))
