"""Finding networks in a conf dir: by name or path, as Multus resolves clusterNetwork, and the
node's primary conf, as a runtime picks it (libcni's order)."""

from __future__ import annotations

import json
import os
import stat

from multipy import files

from . import network
from .problems import ConfigError, Problem

EXTENSIONS = (".conf", ".conflist", ".json")  # what libcni (ConfFiles) and so the runtime reads
# Meta plugins' types (multipy thin and thick, Go Multus thin and thick): such a conf is not a primary,
# delegating to it would run the meta plugin inside itself.
META_TYPES = frozenset({"multus-cni", "multipy", "multus-shim", "multus"})
# The files Go Multus generates (thin entrypoint: .conflist from cniVersion 1.0.0 on), left behind by a
# migration or an old crash (an empty one: Multus #1155): never a primary, whatever they hold.
MULTUS_GENERATED = ("00-multus.conf", "00-multus.conflist")
_PRIMARY_LIMIT = 1024 * 1024  # a CNI conf is kilobytes; a bigger file there is not one


class Unreadable(ConfigError):
    """The primary conf is missing or cannot be read (as opposed to read and invalid)."""


def conf_files(conf_dir: str) -> list[str]:
    """The conf files of `conf_dir` in the order a runtime reads them (libcni's ConfFiles): the
    regular files (or links to them) with a conf extension, sorted by name. OSError if it cannot be listed."""
    found = []
    for name in sorted(os.listdir(conf_dir)):
        path = os.path.join(conf_dir, name)
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            regular = False  # a dangling link: libcni's open would fail too
        if name.endswith(EXTENSIONS) and regular:
            found.append(path)
    return found


def _candidates(conf_dir: str) -> list[str]:
    try:
        return conf_files(conf_dir)
    except OSError:
        return []


def find(ref: str, conf_dir: str, inherited_version: str | None, path: str) -> network.Network:
    """`ref` is a path (absolute, or relative to conf_dir), a directory, or a network name.

    Problems inside the file it names are reported at `path` (the reference), naming the file.
    """
    try:
        return _find(ref, conf_dir, inherited_version, path)
    except ConfigError as err:
        if err.problems[0].path == path:
            raise
        raise ConfigError([Problem(path, f"{ref!r}: {p}") for p in err.problems]) from None


def _find(ref: str, conf_dir: str, inherited_version: str | None, path: str) -> network.Network:
    candidate = ref if os.path.isabs(ref) else os.path.join(conf_dir, ref)
    if os.path.isdir(candidate):
        files = _candidates(candidate)
        if not files:
            raise ConfigError([Problem(path, f"directory {candidate} holds no {'/'.join(EXTENSIONS)} file")])
        candidate = files[0]
    if os.path.isfile(candidate):
        return network.from_file(candidate, inherited_version)
    for file in _candidates(conf_dir):
        try:
            with open(file, "rb") as f:
                name = json.loads(f.read()).get("name")
        except (OSError, ValueError, AttributeError):
            continue  # an unrelated broken file must not hide the one we want
        if name == ref:
            return network.from_file(file, inherited_version)
    raise ConfigError([Problem(path, f"no network named {ref!r} and no such file in confDir {conf_dir}")])


def absent(ref: str, conf_dir: str) -> bool:
    """No file, directory or conf of that name: `ref` can only name something else (a NAD)."""
    candidate = ref if os.path.isabs(ref) else os.path.join(conf_dir, ref)
    return not os.path.lexists(candidate) and "/" not in ref


def is_meta(doc) -> bool:
    """A conf or conflist that runs a meta plugin (multipy's or Go Multus's, thin or thick)."""
    if not isinstance(doc, dict):
        return False
    plugins = doc["plugins"] if isinstance(doc.get("plugins"), list) else [doc]
    return any(isinstance(p, dict) and p.get("type") in META_TYPES for p in plugins)


def read_conf(path: str, shown: str) -> dict:
    """The JSON object in the conf file `path`; errors name it as `shown`."""
    try:
        # Links followed, as libcni does; a FIFO or device named *.conf is refused instead of blocking.
        raw = files.read_regular(path, _PRIMARY_LIMIT, follow_symlinks=True)
    except files.UnsafeFile as exc:
        raise ConfigError([Problem("$", exc.strerror)], source=shown) from None
    except OSError as exc:
        raise Unreadable([Problem("$", f"cannot read: {exc.strerror}")], source=shown) from None
    if not raw.strip():
        raise ConfigError([Problem("$", "the file is empty")], source=shown)
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ConfigError([Problem("$", f"not valid JSON: {exc}")], source=shown) from None
    if not isinstance(doc, dict):
        raise ConfigError([Problem("$", "the conf must be a JSON object")], source=shown)
    return doc


def primary(conf_dir: str, own_name: str, chosen: str | None = None, shown_dir: str | None = None) -> tuple[str, dict]:
    """The node's primary conf, as (its path, its document): `chosen` (a file name in `conf_dir`), else
    the first conf file in libcni's order that is neither `own_name` (the meta conf made from the
    primary), nor a file Go Multus generates, nor a meta plugin's conf.

    The runtime reads the first conf file only, so `own_name` must sort before every other: a file
    ahead of it is refused, naming it. The first candidate is the primary even when it is broken (the
    runtime would have used it too): its error names it, and no later file is taken in its place.
    Paths in errors are `shown_dir`'s (the node's path when `conf_dir` is seen under a host root).
    ConfigError naming the file and the JSON path; Unreadable when there is no primary to read.
    """
    shown_dir = shown_dir or conf_dir
    try:
        files = conf_files(conf_dir)
    except OSError as exc:
        raise Unreadable([Problem("$", f"cannot list the conf dir: {exc.strerror}")], source=shown_dir) from None
    names = [os.path.basename(f) for f in files]
    ahead = [n for n in names if n < own_name]
    if ahead:
        raise ConfigError([Problem("$", f"sorts before {own_name}, so the runtime would read it and never run "
                                        f"multipy: remove it, or name multipy's conf to sort first")],
                          source=os.path.join(shown_dir, ahead[0]))  # fmt: skip
    if chosen is not None:
        shown = os.path.join(shown_dir, chosen)
        doc = read_conf(os.path.join(conf_dir, chosen), shown)
        if is_meta(doc):
            raise ConfigError([Problem("$", "a meta plugin's conf (multipy's or Multus's own): the cluster network "
                                            "cannot be multipy itself")], source=shown)  # fmt: skip
        return shown, doc
    for path, name in zip(files, names, strict=True):
        if name == own_name or name in MULTUS_GENERATED:
            continue
        shown = os.path.join(shown_dir, name)
        doc = read_conf(path, shown)
        if not is_meta(doc):
            return shown, doc
    raise Unreadable([Problem("$", f"no CNI conf ({', '.join(EXTENSIONS)}) but multipy's or Multus's own: no "
                                   "primary network to delegate to")], source=shown_dir)  # fmt: skip
