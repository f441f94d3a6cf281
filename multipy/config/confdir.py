"""Finding networks in confDir by name or path, as Multus resolves clusterNetwork."""

from __future__ import annotations

import json
import os

from . import network
from .problems import ConfigError, Problem

EXTENSIONS = (".conf", ".conflist", ".json")


def _candidates(conf_dir: str) -> list[str]:
    try:
        names = sorted(os.listdir(conf_dir))
    except OSError:
        return []
    return [os.path.join(conf_dir, n) for n in names if n.endswith(EXTENSIONS)]


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
