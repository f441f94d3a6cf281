"""The seed, end to end through multus-cni in namespaces (Networksecuritylayering.md sections 3-5).

Every delegate is multipy's own, configured as the seed's 10-multus.conf: eth0 is the flannel
master (bridge docker0 + host-local, fed by a subnet.env fixture standing in for flanneld); net1 is
the macvlan with kube-ipam, whose store is a real etcd and whose pod annotations come from the
local Kubernetes API (or, in the second variant, from the runtime through the
io.kubernetes.cri.pod-annotations capability, with no API at all). database-1 and database-2 are annotated with fixed addresses, two web pods get
dynamic ones; web reaches the databases and the databases reach each other over net1; database-2
deleted and created again, with a new container ID, has its address back.

etcd and the API server run inside the node's namespace, where multus-cni runs: the plugin
reaches them on the node's loopback, as a node reaches its cluster.
"""

from __future__ import annotations

import copy
import subprocess

import pytest

from multipy.testing import kernel
from multipy.testing.topology import SEED_KUBE_IPAM

from .conftest import POOL, records, reservations

DATABASES = {
    "database-1": {"kube-ipam.ip": "10.188.0.218", "kube-ipam.netmask": "255.255.0.0", "kube-ipam.gateway": "10.188.0.1"},
    "database-2": {"kube-ipam.ip": "10.188.0.219", "kube-ipam.netmask": "255.255.0.0", "kube-ipam.gateway": "10.188.0.1"},
}
WEB = ("web-1", "web-2")


def seed_conf(tmp_path, node, cluster, capability: bool, subnet_file: str) -> dict:
    flannel = {
        "name": "k8snet1", "type": "flannel", "masterplugin": True,
        "delegate": {"isDefaultGateway": True, "bridge": "docker0", "mtu": 1400},
        # Where this test keeps what a node keeps under /run/flannel and /var/lib/cni.
        "subnetFile": subnet_file, "dataDir": str(tmp_path / "flannel"), "ipam": {"dataDir": str(tmp_path / "ipam")},
    }  # fmt: skip
    macvlan = {
        "name": "k8snet2",
        "type": "macvlan",
        "master": node.uplink,
        "mode": "bridge",
        # The seed's, routes included: its 0.0.0.0/0 is appended after eth0's default route,
        # which stays the one traffic takes.
        "ipam": {
            **copy.deepcopy(SEED_KUBE_IPAM),
            "kubeConfig": cluster.api.kubeconfig if not capability else str(tmp_path / "no-such-kubeconfig"),
            "etcdConfig": cluster.etcd.etcd_config(),
        },
    }
    if capability:
        macvlan["capabilities"] = {"io.kubernetes.cri.pod-annotations": True}
    return {
        "cniVersion": "0.3.1",
        "name": "multus-demo",
        "type": "multus-cni",
        "cniDir": str(tmp_path / "cache"),
        # No plugin binary anywhere: every delegate and IPAM here is multipy's own.
        "binDir": str(tmp_path / "no-binaries"),
        "logFile": str(tmp_path / "multipy.log"),
        "logLevel": "debug",
        "delegates": [flannel, macvlan],
    }


class Pods:
    """Pods as kubelet + containerd would run them: a namespace, a container ID, CNI_ARGS."""

    def __init__(self, cni_runtime, netns, cluster, conf, capability):
        self.runtime, self.netns, self.cluster, self.conf = cni_runtime, netns, cluster, conf
        self.capability = capability
        self.running: dict[str, tuple[str, str]] = {}  # pod -> (container ID, namespace)
        self.generation = 0

    def _call(self, command, pod, cid, ns):
        uid = (self.cluster.api.pod("default", pod) or {}).get("metadata", {}).get("uid", "")
        args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID={uid}"
        conf = dict(self.conf)
        if self.capability:
            conf["runtimeConfig"] = {"io.kubernetes.cri.pod-annotations": dict(DATABASES.get(pod, {}))}
        return self.runtime(command, conf, container_id=cid, netns=f"/run/netns/{ns}", ifname="eth0", cni_args=args)

    def create(self, pod):
        if not self.capability:
            self.cluster.api.add_pod("default", pod, annotations=DATABASES.get(pod))
        self.generation += 1
        cid, ns = f"{pod}-c{self.generation}", self.netns("pod")
        added = self._call("ADD", pod, cid, ns)
        assert added.ok, added.stdout + added.stderr
        self.running[pod] = (cid, ns)
        return added.json

    def delete(self, pod):
        cid, ns = self.running.pop(pod)
        deleted = self._call("DEL", pod, cid, ns)
        assert deleted.ok, deleted.stdout + deleted.stderr
        if not self.capability:
            self.cluster.api.delete_pod("default", pod)

    def net1(self, pod) -> str:
        return kernel.addresses(self.running[pod][1])["net1"][0]

    def ping(self, source, target):
        ns = self.running[source][1]
        address = self.net1(target).split("/")[0]
        done = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2", "-I", "net1", address],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, f"{source} -> {target} ({address}): {done.stdout}{done.stderr}"


@pytest.mark.parametrize("capability", [False, True], ids=["annotations-from-api", "annotations-from-runtime"])
def test_seed_scenario(capability, cluster, node, netns, cni_runtime, tmp_path, subnet_env):
    conf = seed_conf(tmp_path, node, cluster, capability, subnet_env(FLANNEL_SUBNET="10.244.1.1/24"))
    (tmp_path / "no-binaries").mkdir()
    cni_runtime.cni_path = str(tmp_path / "no-binaries")
    pods = Pods(cni_runtime, netns, cluster, conf, capability)
    for pod in (*DATABASES, *WEB):
        pods.create(pod)

    # 4.2/4.3: fixed addresses on net1 with the subnet's prefix; web pods on dynamic ones.
    assert pods.net1("database-1") == "10.188.0.218/16"
    assert pods.net1("database-2") == "10.188.0.219/16"
    web = {pods.net1(p) for p in WEB}
    assert len(web) == 2 and all(a.startswith("10.188.") and not a.startswith("10.188.0.") for a in web)
    for _, ns in pods.running.values():
        links = kernel.links(ns)
        assert links["net1"]["linkinfo"]["info_kind"] == "macvlan"
        assert links["eth0"]["mtu"] == 1400
        assert kernel.addresses(ns)["eth0"][0].startswith("10.244.1.")
        routes = [{k: r[k] for k in ("dst", "gateway", "dev") if k in r} for r in kernel.routes(ns)]
        assert {"dst": "default", "gateway": "10.244.1.1", "dev": "eth0"} in routes
        assert {"dst": "default", "gateway": "10.188.0.1", "dev": "net1"} in routes
        assert {"dst": "10.244.0.0/16", "gateway": "10.244.1.1", "dev": "eth0"} in routes
        # Both default routes exist, and eth0's (the master's, added first) is the one traffic takes.
        assert kernel.ip_json(ns, "route", "get", "192.0.2.1")[0]["dev"] == "eth0"
    for web_pod in WEB:
        for db in DATABASES:
            pods.ping(web_pod, db)
    pods.ping("database-1", "database-2")
    pods.ping("database-2", "database-1")

    keys = cluster.keys()
    assert keys[POOL + "ips/10.188.0.219"]["pod"] == "default/database-2"
    assert len([k for k in keys if "/owners/" in k]) == 4

    # 5.1/5.2: database-2 deleted and recreated (new container ID, new namespace): same address.
    old_cid = pods.running["database-2"][0]
    pods.delete("database-2")
    keys = cluster.keys()
    assert keys[POOL + "ips/10.188.0.219"]["containerID"] == ""
    assert POOL + f"owners/{old_cid}/net1" not in keys
    pods.create("database-2")
    assert pods.running["database-2"][0] != old_cid
    assert pods.net1("database-2") == "10.188.0.219/16"
    # 5.3: reachable again.
    pods.ping("web-1", "database-2")
    pods.ping("database-1", "database-2")

    for pod in list(pods.running):
        pods.delete(pod)
    left = cluster.keys()
    assert sorted(left) == [POOL + "ips/10.188.0.218", POOL + "ips/10.188.0.219"]
    assert all(v["containerID"] == "" and v["kind"] == "fixed" for v in left.values())
    assert records(tmp_path) == []
    assert reservations(tmp_path, "k8snet1") == []
    assert not list((tmp_path / "flannel").iterdir())
    if capability:
        assert cluster.api.requests == [] or not [r for r in cluster.api.requests if "/pods/" in r.path]
