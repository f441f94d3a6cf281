"""The seed through containerd's CRI plugin, with nothing but containerd calling multipy.

containerd 1.6 runs in the test's node namespace (multipy.testing.containerd), with multus-cni and
the Go `loopback` (which containerd runs itself) as the only binaries in its CNI bin_dir: every delegate
is multipy's own. eth0 comes from the native flannel master (a subnet.env fixture stands in for
flanneld), net1 from macvlan + kube-ipam on a real etcd. Pods are RunPodSandbox calls; each pod's
addresses are read from PodSandboxStatus and inside the pod, through the pause process's netns.

Variant `runtime-annotations`: no Kubernetes API at all; the databases' fixed addresses reach kube-ipam
from their sandbox annotations through the io.kubernetes.cri.pod-annotations capability.
Variant `api`: the local API serves the pods; kube-ipam reads their annotations there and multipy
writes each pod's network-status annotation.

Then the failure paths through containerd: a delegate failing ADD, a conf multipy refuses (at ADD and
after it), etcd down during RunPodSandbox, and a burst of 20 parallel RunPodSandbox calls.
"""

from __future__ import annotations

import copy
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from multipy.net.netns import run_in
from multipy.testing import kernel
from multipy.testing.containerd import Containerd, CRIError
from multipy.testing.runtime import executable
from multipy.testing.topology import SEED_KUBE_IPAM

from .conftest import POOL, records, reservations

pytestmark = pytest.mark.root("runs containerd in a private mount namespace")

DATABASES = {
    "database-1": {"kube-ipam.ip": "10.188.0.218", "kube-ipam.netmask": "255.255.0.0", "kube-ipam.gateway": "10.188.0.1"},
    "database-2": {"kube-ipam.ip": "10.188.0.219", "kube-ipam.netmask": "255.255.0.0", "kube-ipam.gateway": "10.188.0.1"},
}
WEB = ("web-1", "web-2")
NODE_LINKS = {"lo", "uplink0", "uplink0p", "docker0", "cni0"}  # what the node keeps: pods' veths must go
SANDBOX_ID = re.compile(r"sandbox \\?\"([0-9a-f]{64})")


@pytest.fixture
def ctrd(node, tmp_path):
    """containerd in the node's namespace: multus-cni and the Go loopback in its bin_dir, nothing else."""
    # MULTIPY_THIN names no file: in thick mode, a request the daemon does not serve fails instead of
    # falling back to thin mode unnoticed (multus-cni itself ignores it).
    kit = Containerd(netns=node.name, env={"MULTIPY_THIN": str(tmp_path / "no-thin-fallback")})
    kit.start()
    try:
        kit.install_plugins(names=["loopback"])
        kit.install_multipy()
        yield kit
    finally:
        kit.close()
        assert kit.cgroups_left() == []


def seed_conf(tmp_path, node, cluster, subnet_file: str, api: bool) -> dict:
    flannel = {
        "name": "k8snet1", "type": "flannel", "masterplugin": True,
        "delegate": {"isDefaultGateway": True, "bridge": "docker0", "mtu": 1400},
        "subnetFile": subnet_file, "dataDir": str(tmp_path / "flannel"), "ipam": {"dataDir": str(tmp_path / "ipam")},
    }  # fmt: skip
    ipam = {**copy.deepcopy(SEED_KUBE_IPAM), "etcdConfig": cluster.etcd.etcd_config()}
    macvlan = {"name": "k8snet2", "type": "macvlan", "master": node.uplink, "mode": "bridge", "ipam": ipam}
    if api:
        ipam["kubeConfig"] = cluster.api.kubeconfig
    else:
        # No API: a kubeConfig that does not exist proves none is read; annotations come from containerd.
        ipam["kubeConfig"] = str(tmp_path / "no-such-kubeconfig")
        macvlan["capabilities"] = {"io.kubernetes.cri.pod-annotations": True}
    conf = {
        "cniVersion": "0.3.1", "name": "multus-demo", "type": "multus-cni",
        "cniDir": str(tmp_path / "cache"), "logFile": str(tmp_path / "multipy.log"), "logLevel": "debug",
        "delegates": [flannel, macvlan],
    }  # fmt: skip
    if api:
        conf["kubeconfig"] = cluster.api.kubeconfig  # multipy writes network-status through it
    else:
        conf["capabilities"] = {"io.kubernetes.cri.pod-annotations": True}  # or containerd sends none
    return conf


class Seed:
    """Pods as kubelet would run them through containerd (with or without the API)."""

    def __init__(self, ctrd, cluster, api: bool):
        self.ctrd, self.cluster, self.api = ctrd, cluster, api
        self.running = {}

    def create(self, name):
        uid = None
        if self.api:
            uid = self.cluster.api.add_pod("default", name, annotations=DATABASES.get(name))["metadata"]["uid"]
        self.running[name] = self.ctrd.run_pod(name, uid=uid, annotations=DATABASES.get(name))
        return self.running[name]

    def delete(self, name):
        pod = self.running.pop(name)
        self.ctrd.stop_pod(pod)
        self.ctrd.remove_pod(pod)
        if self.api:
            self.cluster.api.delete_pod("default", name)
        return pod

    def net1(self, name) -> str:
        return self.ctrd.addresses(self.running[name])["net1"][0]

    def ping(self, source, target):
        address = self.net1(target).split("/")[0]
        done = self.ctrd.in_pod(self.running[source], "ping", "-c", "1", "-W", "2", "-I", "net1", address, check=False)
        assert done.returncode == 0, f"{source} -> {target} ({address}): {done.stdout}{done.stderr}"


def node_links(node) -> set[str]:
    return set(kernel.links(node.name))


def assert_nothing_left(ctrd, node, tmp_path, cluster=None):
    assert ctrd.pods == {}
    assert ctrd.libcni_cache() == []
    assert ctrd.netns_files() == []
    assert node_links(node) <= NODE_LINKS
    assert records(tmp_path) == []
    assert reservations(tmp_path, "k8snet1") == []
    flannel = tmp_path / "flannel"
    assert not flannel.exists() or not list(flannel.iterdir())
    if cluster is not None:
        left = cluster.keys()
        assert set(left) <= {POOL + "ips/10.188.0.218", POOL + "ips/10.188.0.219"}, sorted(left)
        assert all(v["containerID"] == "" and v["kind"] == "fixed" for v in left.values())


def thick_mode() -> str | None:
    """None when this tree has thick mode (multus-shim and `multipy daemon`), else why not."""
    try:
        import multipy.daemon  # noqa: F401
        import multipy.shim  # noqa: F401
        from multipy.testing.daemon import DaemonProcess  # noqa: F401
    except ImportError as error:
        return f"thick mode is not in this tree: {error}"
    return None


@pytest.mark.parametrize("mode", ["runtime-annotations", "api", "thick"])
def test_the_seed_through_containerd(mode, ctrd, cluster, node, tmp_path, subnet_env):
    api = mode == "api"
    conf = seed_conf(tmp_path, node, cluster, subnet_env(FLANNEL_SUBNET="10.244.1.1/24"), api)
    daemon = None
    if mode == "thick":
        if (missing := thick_mode()) is not None:
            pytest.skip(missing)
        from multipy.testing.daemon import DaemonProcess

        # The shim as containerd's CNI executable, the daemon in the node namespace (see ctrd: no thin fallback).
        ctrd.install_executable(executable("multus-shim"))
        (tmp_path / "daemon").mkdir()
        daemon = DaemonProcess(tmp_path / "daemon", host_netns=node.name)
        conf = {**conf, "type": "multus-shim", "daemonSocketDir": daemon.socket_dir}
    try:
        if daemon is not None:
            daemon.start(timeout=60)
        ctrd.write_conf(conf)
        seed_scenario(ctrd, cluster, node, tmp_path, api, daemon)
    finally:
        if daemon is not None:
            daemon.stop()


def seed_scenario(ctrd, cluster, node, tmp_path, api, daemon):
    seed = Seed(ctrd, cluster, api)
    for name in (*DATABASES, *WEB):
        seed.create(name)

    for name, pod in seed.running.items():
        inside = ctrd.addresses(pod)
        assert pod.ip and inside["eth0"] == [f"{pod.ip}/24"], (name, pod.ip, inside)  # PodSandboxStatus: the master's eth0
        assert pod.ip.startswith("10.244.1.")
        links = json.loads(ctrd.in_pod(pod, "ip", "-j", "-d", "link", "show").stdout)
        kinds = {link["ifname"]: link.get("linkinfo", {}).get("info_kind") for link in links}
        assert kinds["net1"] == "macvlan" and kinds["eth0"] == "veth"
        assert {link["ifname"]: link["mtu"] for link in links}["eth0"] == 1400
    assert seed.net1("database-1") == "10.188.0.218/16"
    assert seed.net1("database-2") == "10.188.0.219/16"
    web = {seed.net1(name) for name in WEB}
    assert len(web) == 2 and all(a.startswith("10.188.") and not a.startswith("10.188.0.") for a in web)
    assert len({pod.ip for pod in seed.running.values()}) == 4
    for web_pod in WEB:
        for db in DATABASES:
            seed.ping(web_pod, db)
    seed.ping("database-1", "database-2")

    if api:
        for name, pod in seed.running.items():
            raw = cluster.api.pod("default", name)["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
            status = {entry["interface"]: entry for entry in json.loads(raw)}
            assert status["eth0"]["ips"] == [pod.ip] and status["eth0"]["default"] is True
            assert status["net1"]["ips"] == [seed.net1(name).split("/")[0]]
    else:
        assert [r for r in cluster.api.requests if "/pods/" in r.path] == []  # not one API call

    if daemon is not None:  # thick: the daemon served the ADDs, and restarts between Run and StopPodSandbox
        metrics = daemon.request("GET", "/metrics", timeout=10).body.decode()
        adds = [float(v) for labels, v in re.findall(r'multipy_request_duration_seconds_count\{([^}]*)\} (\S+)', metrics)
                if 'command="ADD"' in labels and "cni" in labels]  # fmt: skip
        assert sum(adds) >= 4, metrics[:2000]
        daemon.stop()
        daemon.start(timeout=60)

    # database-2 stopped, removed, run again (a new sandbox): same address, reachable again.
    old = seed.delete("database-2")
    assert cluster.keys()[POOL + "ips/10.188.0.219"]["containerID"] == ""
    new = seed.create("database-2")
    assert new.id != old.id
    assert seed.net1("database-2") == "10.188.0.219/16"
    seed.ping("web-1", "database-2")

    for name in list(seed.running):
        seed.delete(name)
    assert_nothing_left(ctrd, node, tmp_path, cluster)


# -- failure paths


def simple_conf(ctrd, tmp_path, delegates: list[dict], **extra) -> dict:
    return {"cniVersion": "0.3.1", "name": "multus-demo", "type": "multus-cni", "cniDir": str(tmp_path / "cache"),
            "binDir": ctrd.cni_bin_dir, "logFile": str(tmp_path / "multipy.log"), "logLevel": "debug",
            "delegates": delegates, **extra}  # fmt: skip


def bridge_master(tmp_path) -> dict:
    return {"name": "k8snet1", "type": "bridge", "masterplugin": True, "bridge": "cni0", "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": str(tmp_path / "ipam")}}  # fmt: skip


FAILING = """#!/bin/sh
# A delegate whose ADD fails; everything else succeeds.
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion": "0.3.1", "code": 11, "msg": "injected failure: uplink has no carrier"}'
  exit 1
fi
exit 0
"""


def failed_run(ctrd, name, **kwargs) -> tuple[CRIError, str]:
    with pytest.raises(CRIError) as failed:
        ctrd.run_pod(name, **kwargs)
    found = SANDBOX_ID.search(failed.value.message)
    assert found, failed.value.message
    return failed.value, found.group(1)


def assert_sandbox_gone(ctrd, sandbox_id):
    """kubelet's cleanup of a failed RunPodSandbox: Stop (NotFound is success) and Remove succeed, and
    the sandbox is gone rather than stuck (containerd keeps a sandbox whose CNI DEL failed)."""
    try:
        ctrd.stop_pod(sandbox_id, timeout=30)
    except CRIError as error:
        assert error.code == "NOT_FOUND", error
    ctrd.remove_pod(sandbox_id, timeout=30)
    with pytest.raises(CRIError) as status:
        ctrd.status(sandbox_id)
    assert status.value.code == "NOT_FOUND"


def test_a_delegate_failing_add_is_reported_and_the_sandbox_can_go(ctrd, node, tmp_path):
    script = tmp_path / "failing"
    script.write_text(FAILING)
    script.chmod(0o755)
    ctrd.install_executable(str(script))
    ctrd.write_conf(simple_conf(ctrd, tmp_path, [bridge_master(tmp_path), {"name": "k8snet2", "type": "failing"}]))

    error, sandbox_id = failed_run(ctrd, "web-1")
    assert 'delegate "k8snet2" (failing on net1) ADD failed: injected failure: uplink has no carrier' in error.message
    assert_sandbox_gone(ctrd, sandbox_id)
    assert_nothing_left(ctrd, node, tmp_path)


REFUSED = {"logfile": "/var/log/multus.log"}  # Go Multus's JSON decoding takes it; multipy refuses it


def test_a_refused_conf_fails_run_and_never_blocks_stop_and_remove(ctrd, node, tmp_path):
    ctrd.write_conf(simple_conf(ctrd, tmp_path, [bridge_master(tmp_path)], **REFUSED))
    error, sandbox_id = failed_run(ctrd, "web-1")
    assert "$.logfile: unknown key" in error.message
    assert_sandbox_gone(ctrd, sandbox_id)
    assert_nothing_left(ctrd, node, tmp_path)

    # A pod run with a good conf, which an operator then breaks: its DELs use the record.
    ctrd.write_conf(simple_conf(ctrd, tmp_path, [bridge_master(tmp_path)]))
    pod = ctrd.run_pod("web-2")
    assert pod.ip.startswith("10.244.1.")
    ctrd.write_conf(simple_conf(ctrd, tmp_path, [bridge_master(tmp_path)], **REFUSED))
    ctrd.stop_pod(pod)
    ctrd.remove_pod(pod)
    assert_nothing_left(ctrd, node, tmp_path)


def test_etcd_down_during_run_pod_sandbox_then_back(ctrd, cluster, node, tmp_path, subnet_env):
    ctrd.write_conf(seed_conf(tmp_path, node, cluster, subnet_env(FLANNEL_SUBNET="10.244.1.1/24"), api=False))
    cluster.etcd.stop_member(0)
    try:
        error, sandbox_id = failed_run(ctrd, "database-1", annotations=DATABASES["database-1"])
    finally:
        run_in(cluster.where, cluster.etcd.start_member, 0)
    assert 'delegate "k8snet2" (macvlan on net1) ADD failed' in error.message
    assert cluster.etcd.endpoints[0].split("//")[1] in error.message  # names the endpoint it could not reach
    assert_sandbox_gone(ctrd, sandbox_id)

    pod = ctrd.run_pod("database-1", annotations=DATABASES["database-1"])
    assert ctrd.addresses(pod)["net1"] == ["10.188.0.218/16"]
    ctrd.stop_pod(pod)
    ctrd.remove_pod(pod)
    assert_nothing_left(ctrd, node, tmp_path, cluster)


BURST = 20


def test_a_burst_of_parallel_run_pod_sandbox(ctrd, cluster, node, tmp_path, subnet_env):
    ctrd.write_conf(seed_conf(tmp_path, node, cluster, subnet_env(FLANNEL_SUBNET="10.244.1.1/24"), api=False))
    with ThreadPoolExecutor(BURST) as pool:
        pods = list(pool.map(lambda i: ctrd.run_pod(f"web-{i}"), range(BURST)))
    eth0 = [pod.ip for pod in pods]
    net1 = [ctrd.addresses(pod)["net1"][0] for pod in pods]
    assert len(set(eth0)) == BURST and all(ip.startswith("10.244.1.") for ip in eth0)
    assert len(set(net1)) == BURST and all(a.startswith("10.188.") for a in net1)
    assert len([k for k in cluster.keys() if "/owners/" in k]) == BURST

    def gone(pod):
        ctrd.stop_pod(pod)
        ctrd.remove_pod(pod)

    with ThreadPoolExecutor(BURST) as pool:
        list(pool.map(gone, pods))
    assert_nothing_left(ctrd, node, tmp_path, cluster)
