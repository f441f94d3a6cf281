"""Kubernetes integration through multus-cni in namespaces (issue 5): the network-status
annotation, NetworkAttachmentDefinitions in both annotation forms, namespace isolation, DEL
without the API, a failed status write, UID mismatches and API timeouts.

The seed's delegates are multipy's own (flannel on eth0, macvlan + kube-ipam on net1) with a real
etcd; the local Kubernetes API runs in the node's namespace and is read through the real
`kubernetes` client with a kubeconfig. Extra networks are NADs of a macvlan with host-local.
"""

from __future__ import annotations

import json
import time

import pytest

from multipy.testing import kernel

from .conftest import POOL, records
from .test_seed_scenario import DATABASES, seed_conf

STATUS = "k8s.v1.cni.cncf.io/network-status"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
EXTRA = "10.99.0.0/24"


@pytest.fixture
def seed(tmp_path, node, cluster, subnet_env, cni_runtime, netns):
    conf = seed_conf(tmp_path, node, cluster, False, subnet_env(FLANNEL_SUBNET="10.244.1.1/24"))
    conf["kubeconfig"] = cluster.api.kubeconfig  # the meta plugin's own API access
    conf["cniVersion"] = "1.0.0"  # the seed's 0.3.1 has no CHECK
    (tmp_path / "no-binaries").mkdir()
    cni_runtime.cni_path = str(tmp_path / "no-binaries")
    return Seed(tmp_path, node, cluster, conf, cni_runtime, netns)


class Seed:
    def __init__(self, tmp_path, node, cluster, conf, runtime, netns):
        self.tmp_path, self.node, self.cluster, self.conf, self.runtime, self.netns = (
            tmp_path, node, cluster, conf, runtime, netns)  # fmt: skip
        self.api = cluster.api
        self.generation = 0

    def extra_nad(self, namespace="default", name="extra", **plugin):
        """A NAD: macvlan on the node's uplink with host-local on 10.99.0.0/24, accepting ips and mac."""
        config = {
            "cniVersion": "0.4.0",
            "type": "macvlan",
            "master": self.node.uplink,
            "mode": "bridge",
            "capabilities": {"ips": True, "mac": True},
            "ipam": {"type": "host-local", "subnet": EXTRA, "gateway": "10.99.0.1",
                     "dataDir": str(self.tmp_path / "ipam")},
            **plugin,
        }  # fmt: skip
        self.api.add_nad(namespace, name, config)

    def pod(self, name, namespace="default", annotations=None, uid=None):
        return self.api.add_pod(namespace, name, annotations=annotations, uid=uid)

    def call(self, command, name, namespace="default", cid=None, ns=None, uid=None, conf=None):
        if uid is None:
            uid = ((self.api.pod(namespace, name) or {}).get("metadata") or {}).get("uid", "")
        args = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};"
                f"K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID={uid}")  # fmt: skip
        return self.runtime(command, conf or self.conf, container_id=cid, netns=f"/run/netns/{ns}", ifname="eth0",
                            cni_args=args)  # fmt: skip

    def add(self, name, namespace="default", **kwargs):
        self.generation += 1
        cid, ns = f"{name}-c{self.generation}", self.netns("pod")
        return cid, ns, self.call("ADD", name, namespace, cid, ns, **kwargs)

    def status(self, name, namespace="default"):
        value = (self.api.pod(namespace, name)["metadata"].get("annotations") or {}).get(STATUS)
        return json.loads(value) if value is not None else None

    def etcd_owners(self):
        return [k for k in self.cluster.keys() if "/owners/" in k]

    def host_local(self, network):
        directory = self.tmp_path / "ipam" / network
        return sorted(p.name for p in directory.iterdir() if p.name[0].isdigit()) if directory.exists() else []

    def assert_nothing_left(self, ns):
        assert set(kernel.links(ns)) == {"lo"}
        assert self.etcd_owners() == []
        assert self.host_local("k8snet1") == [] and self.host_local("extra") == []
        assert records(self.tmp_path) == []


def test_network_status_after_add_matches_the_seed(seed):
    seed.conf["cniVersion"] = "0.3.1"  # the seed's own
    seed.pod("database-2", annotations=DATABASES["database-2"])
    cid, ns, added = seed.add("database-2")
    assert added.ok, added.stdout + added.stderr
    # The runtime gets the master's (flannel's) result.
    assert [i["name"] for i in added.json["interfaces"] if i.get("sandbox")] == ["eth0"]
    status = seed.status("database-2")
    links = kernel.links(ns)
    eth0, net1 = status
    assert eth0 == {
        "name": "k8snet1", "interface": "eth0", "ips": [kernel.addresses(ns)["eth0"][0].split("/")[0]],
        "mac": links["eth0"]["address"], "mtu": 1400, "default": True, "dns": {}, "gateway": ["10.244.1.1"],
    }  # fmt: skip
    assert eth0["ips"][0].startswith("10.244.1.")
    assert net1 == {
        "name": "k8snet2", "interface": "net1", "ips": ["10.188.0.219"], "mac": links["net1"]["address"],
        "mtu": links["net1"]["mtu"], "dns": {}, "gateway": ["10.188.0.1"],
    }  # fmt: skip
    # Written through pods/status, as Multus does, with the pod's UID as a precondition.
    patches = [r for r in seed.api.requests if r.method == "PATCH"]
    assert [r.path for r in patches] == ["/api/v1/namespaces/default/pods/database-2/status"]
    events = [(e["reason"], e["message"], e["involvedObject"]["name"]) for e in seed.api.events]
    assert events == [
        ("AddedInterface", f"Add eth0 [{eth0['ips'][0]}/24] from k8snet1", "database-2"),
        ("AddedInterface", "Add net1 [10.188.0.219/16] from k8snet2", "database-2"),
    ]
    deleted = seed.call("DEL", "database-2", cid=cid, ns=ns)
    assert deleted.ok, deleted.stdout
    seed.assert_nothing_left(ns)


@pytest.mark.parametrize("form", ["comma", "json"])
def test_nad_selection_with_interface_ips_mac_and_default_route(seed, form):
    seed.extra_nad()
    if form == "comma":
        value = "default/extra@ext0"
    else:
        value = json.dumps([{"name": "extra", "namespace": "default", "interface": "ext0", "ips": ["10.99.0.50/24"],
                             "mac": "02:11:22:33:44:55", "default-route": ["10.99.0.1"]}])  # fmt: skip
    seed.pod("web-1", annotations={NETWORKS: value})
    cid, ns, added = seed.add("web-1")
    assert added.ok, added.stdout + added.stderr
    addresses, links = kernel.addresses(ns), kernel.links(ns)
    assert sorted(links) == ["eth0", "ext0", "lo", "net1"]
    assert links["ext0"]["linkinfo"]["info_kind"] == "macvlan"
    status = {s["interface"]: s for s in seed.status("web-1")}
    assert status["ext0"]["name"] == "default/extra"
    routes = [{k: r[k] for k in ("dst", "gateway", "dev") if k in r} for r in kernel.routes(ns)]
    if form == "comma":
        assert addresses["ext0"][0].startswith("10.99.0.")
        assert {"dst": "default", "gateway": "10.244.1.1", "dev": "eth0"} in routes
        assert "gateway" not in status["ext0"]
    else:
        assert addresses["ext0"] == ["10.99.0.50/24"]
        assert links["ext0"]["address"] == "02:11:22:33:44:55"
        # default-route: IPv4's default goes through ext0 only; eth0's and net1's are gone.
        assert [r for r in routes if r["dst"] == "default"] == [{"dst": "default", "gateway": "10.99.0.1", "dev": "ext0"}]
        assert status["ext0"]["gateway"] == ["10.99.0.1"]
        assert "gateway" not in status["eth0"] and "gateway" not in status["net1"]
        # The runtime's result matches the kernel: eth0 no longer has the default route.
        assert not [r for r in added.json.get("routes", []) if r["dst"] == "0.0.0.0/0"]
    assert seed.call("CHECK", "web-1", cid=cid, ns=ns).ok
    assert seed.call("DEL", "web-1", cid=cid, ns=ns).ok
    seed.assert_nothing_left(ns)


def test_missing_nad_is_a_clear_error_with_nothing_left(seed):
    seed.pod("web-1", annotations={NETWORKS: "default/extra, default/nope@ext1"})
    seed.extra_nad()
    cid, ns, added = seed.add("web-1")
    assert added.returncode != 0
    assert added.json["code"] == 7
    assert "NetworkAttachmentDefinition default/nope does not exist" in added.json["msg"]
    seed.assert_nothing_left(ns)
    assert seed.status("web-1") is None


def test_namespace_isolation_refuses_a_cross_namespace_nad(seed):
    seed.conf["namespaceIsolation"] = True
    seed.extra_nad(namespace="team-b")
    seed.extra_nad(namespace="default")
    seed.pod("web-1", namespace="team-a", annotations={NETWORKS: "team-b/extra"})
    cid, ns, added = seed.add("web-1", namespace="team-a")
    assert added.json["code"] == 7
    assert "namespaceIsolation: pod team-a/web-1 may not use network team-b/extra" in added.json["msg"]
    seed.assert_nothing_left(ns)
    # The global namespace ("default") stays usable.
    seed.pod("web-2", namespace="team-a", annotations={NETWORKS: "default/extra"})
    cid, ns, added = seed.add("web-2", namespace="team-a")
    assert added.ok, added.stdout
    assert seed.call("DEL", "web-2", "team-a", cid=cid, ns=ns).ok
    seed.assert_nothing_left(ns)


@pytest.mark.parametrize("outage", ["api-stopped", "pod-deleted", "token-rejected"])
def test_del_never_needs_the_api(seed, outage):
    seed.extra_nad()
    seed.pod("database-1", annotations={**DATABASES["database-1"], NETWORKS: "extra"})
    cid, ns, added = seed.add("database-1")
    assert added.ok, added.stdout
    assert len(seed.etcd_owners()) == 1 and len(seed.host_local("extra")) == 1
    asked = len(seed.api.requests)
    if outage == "api-stopped":
        seed.api.stop()
    elif outage == "pod-deleted":
        seed.api.delete_pod("default", "database-1")
    else:
        seed.api.reject_token()
    deleted = seed.call("DEL", "database-1", cid=cid, ns=ns, uid="")
    assert deleted.ok, deleted.stdout + deleted.stderr
    seed.assert_nothing_left(ns)
    assert len(seed.api.requests) == asked  # not one request
    keys = seed.cluster.keys()
    assert keys[POOL + "ips/10.188.0.218"]["containerID"] == ""  # the fixed address stays the pod's


@pytest.mark.parametrize("failure, code", [(500, 11), (403, 7)])
def test_failed_status_write_rolls_everything_back(seed, failure, code):
    seed.extra_nad()
    seed.pod("database-1", annotations={**DATABASES["database-1"], NETWORKS: "extra"})
    if failure == 403:
        seed.api.forbid(verbs=("patch",))
    else:
        seed.api.fail_with(failure, methods=("PATCH",))
    cid, ns, added = seed.add("database-1")
    assert added.json["code"] == code, added.stdout
    assert "network-status" in added.json["msg"] and "default/database-1" in added.json["msg"]
    seed.assert_nothing_left(ns)
    assert seed.cluster.keys()[POOL + "ips/10.188.0.218"]["containerID"] == ""
    assert seed.status("database-1") is None and seed.api.events == []


def test_sandbox_of_a_deleted_incarnation_gets_nothing(seed):
    """database-2 deleted and recreated at once: kubelet may still ADD the old sandbox (old UID)."""
    seed.pod("database-2", annotations=DATABASES["database-2"], uid="11111111-1111-1111-1111-111111111111")
    cid, ns, added = seed.add("database-2", uid="00000000-0000-0000-0000-000000000000")
    assert added.json["code"] == 3
    assert "deleted incarnation" in added.json["msg"]
    seed.assert_nothing_left(ns)


def test_static_pod_mirror_uid_is_accepted(seed):
    seed.pod("etcd-node-1", annotations={"kubernetes.io/config.mirror": "static-hash"})
    cid, ns, added = seed.add("etcd-node-1", uid="static-hash")
    assert added.ok, added.stdout
    assert seed.call("DEL", "etcd-node-1", cid=cid, ns=ns).ok


def test_api_timeouts_are_bounded(seed):
    seed.conf.update(kubeTimeout=0.5, kubeTotalTimeout=1)
    seed.pod("web-1")
    seed.api.delay = 3
    started = time.monotonic()
    cid, ns, added = seed.add("web-1")
    took = time.monotonic() - started
    assert added.json["code"] == 11
    assert "no answer within 0.5 s" in added.json["msg"]
    assert took < 2.5
    seed.api.delay = 0
    seed.assert_nothing_left(ns)
