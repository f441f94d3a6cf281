"""pytest fixtures: namespaces, a node with a macvlan master, and a runtime-like invoker.

Load with `pytest_plugins = ["multipy.testing.fixtures"]`. Needs root.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

import pytest

from . import runtime
from .runtime import executable, unique


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _remove_namespace(name: str) -> None:
    # Named namespaces are `ip netns`'s business (a bind mount under /run/netns): tests only, never a CNI path.
    if os.path.exists(f"/run/netns/{name}"):
        _ip("netns", "del", name)


@pytest.fixture
def netns():
    """Factory: netns("pod") -> the name of a fresh namespace, removed at teardown."""
    made: list[str] = []

    def make(prefix: str = "mp") -> str:
        name = unique(f"{prefix}-")
        _ip("netns", "add", name)
        made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    yield make
    for name in reversed(made):
        _remove_namespace(name)


@dataclass
class Node:
    """A stand-in for a Kubernetes node: its own namespace, with `uplink` as a macvlan master."""

    name: str
    uplink: str = "uplink0"
    peer: str = "uplink0p"


@pytest.fixture
def node(netns) -> Node:
    name = netns("node")
    n = Node(name)
    _ip("-n", name, "link", "add", n.uplink, "type", "veth", "peer", "name", n.peer)
    _ip("-n", name, "link", "set", n.uplink, "up")
    _ip("-n", name, "link", "set", n.peer, "up")
    return n


@dataclass
class Runtime:
    """Invokes a CNI plugin like containerd does, optionally from inside a node namespace."""

    executable: str
    host_netns: str | None = None
    cni_path: str = "/usr/lib/cni"
    env: dict = field(default_factory=dict)

    def __call__(self, command: str, conf, **kwargs) -> runtime.Outcome:
        kwargs.setdefault("host_netns", self.host_netns)
        kwargs.setdefault("cni_path", self.cni_path)
        kwargs.setdefault("env", self.env)
        return runtime.invoke(self.executable, command, conf, **kwargs)


@pytest.fixture
def cni_runtime(node) -> Runtime:
    return Runtime(executable(), host_netns=node.name)


# etcd servers and the local Kubernetes API (multipy/testing/service_fixtures.py).
pytest_plugins = ["multipy.testing.service_fixtures"]
from .flannel import subnet_env  # noqa: E402, F401 - the flanneld stand-in's fixture
