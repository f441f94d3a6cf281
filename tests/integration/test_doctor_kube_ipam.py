"""`multipy doctor` for kube-ipam (KubeIpam.doctor_checks) against a real etcd and the local Kubernetes
API: what `multipy ipam gc` would release is reported, and released with --fix; a live pod's
reservation is not; without an API or etcd, one finding says what was not checked."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from delegates.kube_ipam import KubeIpam
from multipy.cli.commands import cli
from multipy.cni.env import Environment
from multipy.orchestrator import lock
from multipy.plugins.contract import Services
from multipy.testing.etcd import EtcdCluster
from multipy.testing.topology import SEED_KUBE_IPAM

PREFIX = "/multipy/ipam/"
POOL = f"{PREFIX}pools/10.188.0.0-16/"
KIND = "etcd-owner-without-pod"
NOT_CHECKED = "etcd-owners-not-checked"


class Node:
    """A node whose multus conf puts kube-ipam on `etcd`, pods in `api`, ADDs as a runtime makes them."""

    def __init__(self, tmp_path, etcd, api, kubeconfig=True, networks=("k8snet2",)):
        self.etcd, self.api = etcd, api
        ipam = dict(SEED_KUBE_IPAM, etcdConfig=etcd.etcd_config())
        if kubeconfig:
            ipam["kubeConfig"] = api.kubeconfig
        self.nets = [{"name": n, "type": "macvlan", "master": "eth0", "cniVersion": "0.3.1", "ipam": ipam}
                     for n in networks]  # fmt: skip
        self.cni_dir = tmp_path / "cache"
        self.cni_dir.mkdir()
        conf = {"cniVersion": "0.3.1", "name": "multus", "type": "multus-cni", "cniDir": str(self.cni_dir),
                "delegates": [{"name": "k8snet1", "type": "bridge", "masterplugin": True},
                              *({k: v for k, v in net.items() if k != "cniVersion"} for net in self.nets)]}  # fmt: skip
        self.conf = tmp_path / "10-multus.conf"
        self.conf.write_text(json.dumps(conf))
        self.plugin = KubeIpam(Services())
        self.addresses: dict[str, str] = {}

    def add(self, name, cid, fixed=None):
        pod = self.api.add_pod("default", name, annotations={"kube-ipam.ip": fixed} if fixed else None)
        args = f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={name};K8S_POD_UID={pod['metadata']['uid']}"
        net = dict(self.nets[0], ipam=dict(self.nets[0]["ipam"], kubeConfig=self.api.kubeconfig))
        result = self.plugin.add(Environment("ADD", cid, "/run/netns/x", "net1", args), net)
        self.addresses[name] = str(result.ips[0].address.ip)
        return self.addresses[name]

    def leases(self) -> dict[str, dict]:
        return {k[len(POOL) + 4 :]: json.loads(v) for k, v in self.etcd.keys(POOL + "ips/").items()}

    def owners(self) -> list[str]:
        return sorted(k[len(POOL) + 7 :] for k in self.etcd.keys(POOL + "owners/"))

    def doctor(self, *args, env=None):
        result = CliRunner().invoke(cli, ["doctor", "--conf", str(self.conf), "-o", "json", *args], env=env,
                                    catch_exceptions=False)  # fmt: skip
        return result.exit_code, json.loads(result.stdout)


def kube_ipam_findings(doc) -> dict[str, dict]:
    return {f["subject"]: f for f in doc["findings"] if f["kind"] in (KIND, NOT_CHECKED)}


@pytest.fixture
def node(tmp_path, etcd_server, kube_api):
    n = Node(tmp_path, etcd_server, kube_api)
    n.add("web-1", "c-web1")
    n.add("web-2", "c-web2")
    n.add("database-3", "c-db3", fixed="10.188.0.220")
    # web-2 and database-3 deleted without their DEL ever running (a node lost, a crashed runtime).
    kube_api.delete_pod("default", "web-2")
    kube_api.delete_pod("default", "database-3")
    return n


def test_reservations_of_deleted_pods_are_reported_and_nothing_changes(node):
    before = node.etcd.keys(PREFIX)
    code, doc = node.doctor()
    assert code == 1 and doc["clean"] is False
    found = kube_ipam_findings(doc)
    assert sorted(found) == [f"{POOL}owners/c-db3/net1", f"{POOL}owners/c-web2/net1"]  # not web-1's: its pod lives
    web2 = found[f"{POOL}owners/c-web2/net1"]
    assert web2["kind"] == KIND and web2["fixable"] is True and web2["fixed"] is False
    assert web2["detail"].startswith("pod default/web-2 is gone, container c-web2 on net1; "
                                     f"releases {node.addresses['web-2']}; no record of container c-web2")  # fmt: skip
    assert "detaches 10.188.0.220 (it stays reserved for the pod's name)" in found[f"{POOL}owners/c-db3/net1"]["detail"]
    assert node.etcd.keys(PREFIX) == before


def test_fix_releases_as_ipam_gc_does(node):
    web1, web2 = node.addresses["web-1"], node.addresses["web-2"]
    code, doc = node.doctor("--fix")
    found = kube_ipam_findings(doc)
    assert code == 0 and doc["clean"] is True
    assert {s: (f["fixable"], f["fixed"]) for s, f in found.items()} == {
        f"{POOL}owners/c-web2/net1": (True, True), f"{POOL}owners/c-db3/net1": (True, True)}  # fmt: skip
    leases = node.leases()
    assert sorted(leases) == sorted([web1, "10.188.0.220"])
    assert web2 not in leases
    # The fixed address keeps its name binding: a recreated database-3 gets it back.
    assert leases["10.188.0.220"]["pod"] == "default/database-3" and leases["10.188.0.220"]["containerID"] == ""
    assert node.owners() == ["c-web1/net1"]
    code, doc = node.doctor()
    assert code == 0 and kube_ipam_findings(doc) == {}
    assert node.add("database-3", "c-db3-new", fixed="10.188.0.220") == "10.188.0.220"


def test_a_lease_without_its_index_is_reported_by_pool_and_ip(node):
    web2 = node.addresses["web-2"]
    node.etcd.etcdctl("del", f"{POOL}owners/c-web2/net1")
    code, doc = node.doctor("--fix")
    found = kube_ipam_findings(doc)
    assert found[f"10.188.0.0-16 {web2}"]["fixed"] is True
    assert "a dynamic lease no owner index holds" in found[f"10.188.0.0-16 {web2}"]["detail"]
    assert web2 not in node.leases()


def test_a_container_with_a_request_in_flight_on_this_node_is_left_to_its_del(node):
    web2 = node.addresses["web-2"]
    with lock.held(str(node.cni_dir), "c-web2"):
        code, doc = node.doctor("--fix")
    web2_finding = kube_ipam_findings(doc)[f"{POOL}owners/c-web2/net1"]
    assert web2_finding["fixable"] is False and web2_finding["fixed"] is False and code == 1
    assert "has a record or a request in flight on this node" in web2_finding["detail"]
    assert web2 in node.leases() and "c-web2/net1" in node.owners()
    assert kube_ipam_findings(doc)[f"{POOL}owners/c-db3/net1"]["fixed"] is True


def test_a_pool_shared_by_two_networks_is_examined_once(tmp_path, etcd_server, kube_api):
    node = Node(tmp_path, etcd_server, kube_api, networks=("k8snet2", "k8snet3"))
    node.add("web-2", "c-web2")
    kube_api.delete_pod("default", "web-2")
    _, doc = node.doctor()
    assert [f["subject"] for f in doc["findings"] if f["kind"] == KIND] == [f"{POOL}owners/c-web2/net1"]


def test_without_an_api_nothing_is_checked_or_released(tmp_path, etcd_server, kube_api):
    node = Node(tmp_path, etcd_server, kube_api, kubeconfig=False)  # its ADDs still read the pod through the API
    node.add("web-2", "c-web2")
    kube_api.delete_pod("default", "web-2")
    before = etcd_server.keys(PREFIX)
    requests = len(kube_api.requests)
    code, doc = node.doctor("--fix", env={"KUBERNETES_SERVICE_HOST": ""})
    assert code == 1
    (finding,) = kube_ipam_findings(doc).values()
    assert finding["kind"] == NOT_CHECKED and finding["fixable"] is False and finding["fixed"] is False
    assert finding["subject"] == f"k8snet2: kube-ipam pool 10.188.0.0-16 at {etcd_server.url}"
    assert "not checked: no Kubernetes API to tell gone pods" in finding["detail"]
    assert "not running in a cluster" in finding["detail"] and "ipam.kubeConfig" in finding["detail"]
    assert etcd_server.keys(PREFIX) == before and len(kube_api.requests) == requests


def test_etcd_unreachable_is_one_finding_and_no_api_call(tmp_path, kube_api):
    with EtcdCluster() as etcd:
        pass
    node = Node(tmp_path, etcd, kube_api)
    code, doc = node.doctor("--fix")
    assert code == 1
    (finding,) = kube_ipam_findings(doc).values()
    assert finding["kind"] == NOT_CHECKED and finding["fixable"] is False
    assert "not checked: etcd unreachable" in finding["detail"]
    assert kube_api.requests == []  # the reservations are read first: no API call without them
