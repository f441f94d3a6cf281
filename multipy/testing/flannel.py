"""A stand-in for flanneld in tests and benches: the subnet.env it writes once the node has a lease.

`subnet_env` (pytest fixture) is a factory: `subnet_env(FLANNEL_MTU="1400")` writes a file in the
test's tmp dir and returns its path; a key given as None is left out (flannel not ready).
"""

from __future__ import annotations

import os

import pytest

# What flanneld writes for a node holding 10.244.1.0/24 of the cluster's 10.244.0.0/16.
DEFAULT_SUBNET_ENV = {
    "FLANNEL_NETWORK": "10.244.0.0/16",
    "FLANNEL_SUBNET": "10.244.1.1/24",
    "FLANNEL_MTU": "1450",
    "FLANNEL_IPMASQ": "true",
}


def write_subnet_env(path: str, **values: str | None) -> str:
    """Write `path` as flanneld does (KEY=VALUE lines, replaced atomically); None leaves a key out."""
    merged = {**DEFAULT_SUBNET_ENV, **values}
    text = "".join(f"{key}={value}\n" for key, value in merged.items() if value is not None)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


@pytest.fixture
def subnet_env(tmp_path):
    """Factory: subnet_env(**keys) -> the path of a subnet.env under tmp_path (rewritten on each call)."""

    def make(**values: str | None) -> str:
        return write_subnet_env(str(tmp_path / "subnet.env"), **values)

    return make
