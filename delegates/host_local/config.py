"""host-local's configuration: where its store is, and for ADD/CHECK everything else.

DEL and GC read only the store's location, so that a conf whose ranges broke
since ADD still releases what it holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.cni.result import Route
from multipy.ipam.conf import ipam_section, runtime_config, string
from multipy.ipam.ranges import RangeSet, invalid, range_sets, show
from multipy.ipam.requests import Requested, requested_ips
from multipy.ipam.routes import parse_routes

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
# What an `ipam` object is checked against before the plugin runs (the contract's config_schema);
# the checks here remain for the confs that reach the plugin unchecked (flannel's, a NAD's).
SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "host-local.schema.json")


@dataclass(frozen=True)
class Location:
    """The store of one network: `<data_dir>/<network>`."""

    data_dir: str
    network: str

    @property
    def path(self) -> str:
        return os.path.join(self.data_dir, self.network)


@dataclass(frozen=True)
class HostLocalConf:
    location: Location
    cni_version: str
    range_sets: list[RangeSet]
    requested: list[Requested]
    routes: list[Route]
    resolv_conf: str


def location(conf: dict) -> Location:
    name = conf.get("name")
    # The name is a directory under dataDir: it must not be able to climb out of it.
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            f"name: {show(name)} cannot name host-local's directory under dataDir "
            "(it must be a non-empty network name without '/')",
        )
    data_dir = string(ipam_section(conf, "host-local"), "dataDir", "ipam.dataDir") or DEFAULT_DATA_DIR
    if not os.path.isabs(data_dir):
        raise invalid("ipam.dataDir", data_dir, "is not an absolute path")
    return Location(data_dir, name)


def load(conf: dict, env_ip: str = "") -> HostLocalConf:
    """The whole conf, checked; `env_ip` is CNI_ARGS IP."""
    where = location(conf)
    ipam = ipam_section(conf, "host-local")
    version = conf.get("cniVersion") or "0.1.0"
    return HostLocalConf(
        location=where,
        cni_version=version,
        range_sets=range_sets(ipam, runtime_config(conf), version),
        requested=requested_ips(conf, env_ip),
        routes=parse_routes(ipam.get("routes"), "ipam.routes"),
        resolv_conf=string(ipam, "resolvConf", "ipam.resolvConf"),
    )
