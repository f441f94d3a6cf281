"""The demo's one-node cluster on this machine, and the seed's 10-multus.conf adapted to it.

A "node" network namespace holds the macvlan master (one end of a veth pair) and, on its loopback,
a real etcd (TLS, as the seed's etcdConfig) and the local Kubernetes API: multus-cni runs in that
namespace and reaches both as a node reaches its cluster. A subnet.env in the run's temp directory
stands in for flanneld. Everything is registered on an ExitStack as it is made, so whatever exists
is removed in reverse order, whichever step failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

from multipy.clients import kube as kube_client
from multipy.net.netns import run_in
from multipy.testing.etcd import EtcdCluster
from multipy.testing.flannel import write_subnet_env
from multipy.testing.kube_api import KubeAPIServer

REPO = Path(__file__).resolve().parents[1]
SEED_CONF = REPO / "conf" / "10-multus.conf"
UPLINK = "uplink0"  # the macvlan master: the node's "eth0" of the seed
FLANNEL_SUBNET = "10.244.5.1/24"  # this node's lease of flannel's 10.244.0.0/16


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class Cluster:
    """Made by start() step by step; every piece is undone by `stack` (see module docstring)."""

    def __init__(self, stack: ExitStack, tag: str):
        self.stack, self.tag = stack, tag
        self.workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="multipy-demo-")))
        self.node = f"{tag}-node"
        self.node_path = f"/run/netns/{self.node}"
        self.etcd: EtcdCluster | None = None
        self.api: KubeAPIServer | None = None
        self._kube: kube_client.Kube | None = None

    def start(self) -> None:
        self.add_namespace(self.node)
        ip("-n", self.node, "link", "add", UPLINK, "type", "veth", "peer", "name", f"{UPLINK}p")
        ip("-n", self.node, "link", "set", UPLINK, "up")
        ip("-n", self.node, "link", "set", f"{UPLINK}p", "up")
        self.etcd = EtcdCluster(tls=True)
        self.stack.callback(self.etcd.close)
        run_in(self.node_path, self.etcd.start)
        (self.workdir / "kube").mkdir()
        self.api = KubeAPIServer(directory=str(self.workdir / "kube"))
        self.stack.callback(self.api.close)
        run_in(self.node_path, self.api.start)
        write_subnet_env(str(self.workdir / "subnet.env"), FLANNEL_SUBNET=FLANNEL_SUBNET)
        (self.workdir / "no-plugin-binaries").mkdir()

    def add_namespace(self, name: str) -> str:
        ip("netns", "add", name)
        self.stack.callback(remove_namespace, name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    @property
    def bin_dir(self) -> str:
        """binDir and CNI_PATH: empty, so every delegate and IPAM is multipy's own or the ADD fails."""
        return str(self.workdir / "no-plugin-binaries")

    def conf(self) -> tuple[dict, list[str]]:
        """conf/10-multus.conf with this node's paths and endpoints, and what was changed, one line each."""
        try:
            conf = json.loads(SEED_CONF.read_text())
            flannel, macvlan = (_delegate(conf, t) for t in ("flannel", "macvlan"))
        except (OSError, ValueError) as error:
            raise RuntimeError(f"{SEED_CONF}: {error}") from None
        changes: list[str] = []

        def put(where: dict, path: str, key: str, value) -> None:
            old = where.get(key, "(absent)")
            where[key] = value
            changes.append(f"{path}.{key}: {json.dumps(old)} -> {json.dumps(value)}")

        work = str(self.workdir)
        put(conf, "$", "kubeconfig", self.api.kubeconfig)  # multipy writes network-status through it
        put(conf, "$", "cniDir", f"{work}/cni")
        put(conf, "$", "binDir", self.bin_dir)
        put(conf, "$", "logFile", f"{work}/multipy.log")
        put(conf, "$", "logLevel", "debug")
        # What a node keeps under /run/flannel and /var/lib/cni.
        put(flannel, "$.delegates[k8snet1]", "subnetFile", f"{work}/subnet.env")
        put(flannel, "$.delegates[k8snet1]", "dataDir", f"{work}/flannel")
        put(flannel, "$.delegates[k8snet1]", "ipam", {"dataDir": f"{work}/host-local"})
        put(macvlan, "$.delegates[k8snet2]", "master", UPLINK)
        ipam = macvlan["ipam"]
        put(ipam, "$.delegates[k8snet2].ipam", "kubeConfig", self.api.kubeconfig)
        etcd = self.etcd.etcd_config()
        for key in ("etcdURL", "etcdCertFile", "etcdKeyFile", "etcdTrustedCAFileFile"):
            put(ipam["etcdConfig"], "$.delegates[k8snet2].ipam.etcdConfig", key, etcd[key])
        return conf, changes

    # -- the API, read as kubectl would: through the kubeconfig, from inside the node

    def kube(self, call: str, *args, **kwargs):
        """kube_client.Kube.<call>(*args) run in the node's namespace, where the API listens."""
        if self._kube is None:
            self._kube = kube_client.from_kubeconfig(self.api.kubeconfig, timeout=5)
            self.stack.callback(self._kube.close)
        return run_in(self.node_path, getattr(self._kube, call), *args, **kwargs)

    def paths(self) -> list[str]:
        """The directories this run writes to (all removed by cleanup)."""
        return [str(self.workdir)] + ([self.etcd.directory] if self.etcd else [])


def _delegate(conf: dict, plugin_type: str) -> dict:
    found = [d for d in conf.get("delegates", []) if d.get("type") == plugin_type]
    if len(found) != 1:
        raise ValueError(f"expected one {plugin_type} delegate in $.delegates, found {len(found)}")
    return found[0]


def remove_namespace(name: str) -> None:
    if os.path.exists(f"/run/netns/{name}"):
        ip("netns", "delete", name)

