"""The seed's 10-multus.conf shape, with the Debian Go plugins as external delegates."""

from __future__ import annotations

import os

import pytest

from multipy.testing.topology import seed_delegates

GO_PLUGINS = "/usr/lib/cni"


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.netns)


def multus_conf(tmp_path, version: str, delegates: list[dict], binary: list[str] = ()) -> dict:
    """The seed's multus-cni conf around `delegates`, its state and log under tmp_path; `binary`: its
    binaryDelegates, the types that run as the Go plugins in GO_PLUGINS."""
    return {
        "cniVersion": version,
        "name": "multus-demo",
        "type": "multus-cni",
        "cniDir": str(tmp_path / "cache"),
        "binDir": GO_PLUGINS,
        "logFile": str(tmp_path / "multipy.log"),
        "logLevel": "debug",
        "delegates": delegates,
        "binaryDelegates": list(binary),
    }


@pytest.fixture
def seed_conf(tmp_path, node):
    """Factory for the seed topology: bridge + host-local on eth0, macvlan + host-local on net1."""

    def make(version: str = "0.3.1", delegate_version: str | None = None, **overrides) -> dict:
        bridge, macvlan = seed_delegates(
            str(tmp_path / "ipam"), overrides.pop("macvlan_master", node.uplink), overrides.pop("range_end", "10.188.1.250")
        )
        if delegate_version:
            bridge["cniVersion"] = macvlan["cniVersion"] = delegate_version
        # The Go reference plugins stand in here, not multipy's native plugins of the same names.
        conf = multus_conf(tmp_path, version, [bridge, macvlan], binary=["bridge", "host-local", "macvlan"])
        conf.update(overrides)
        return conf

    return make


def reservations(tmp_path, network: str) -> list[str]:
    """host-local's reservation files (one per IP) for one network."""
    directory = tmp_path / "ipam" / network
    if not directory.exists():
        return []
    return sorted(n for n in os.listdir(directory) if n[0].isdigit())


def records(tmp_path) -> list[str]:
    directory = tmp_path / "cache"
    return sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.exists() else []
