"""100 pods at once through multus-shim, against one `multipy daemon`: unique addresses, no failure, nothing left.

The seed's conf in thick mode (`"type": "multus-shim"`, `daemonSocketDir`): eth0 the flannel master
(bridge docker0 + host-local, fed by a subnet.env fixture), net1 macvlan + kube-ipam on a real etcd.
etcd, the daemon and every shim run inside the node's namespace, as a node's runtime and a hostNetwork
DaemonSet would; the shim is executed as a runtime executes it (multipy.testing.runtime.invoke). Ten
database pods carry fixed addresses in their annotations, handed over by the runtime through the
io.kubernetes.cri.pod-annotations capability (no API server); ninety web pods get dynamic ones.
MULTIPY_THIN names no file, so a request that fell back to thin mode would fail: every one here is
served by the daemon.
"""

from __future__ import annotations

import ipaddress
import threading
import time

import pytest

from multipy.testing import kernel
from multipy.testing.daemon import DaemonProcess
from multipy.testing.runtime import executable, invoke

from .conftest import POOL, records, reservations
from .test_seed_scenario import seed_conf

PODS = 100
DATABASES = {f"database-{n}": f"10.188.0.{200 + n}" for n in range(10)}  # in fixedStart..fixedEnd
WEB = [f"web-{n}" for n in range(PODS - len(DATABASES))]
DYNAMIC = (ipaddress.ip_address("10.188.1.0"), ipaddress.ip_address("10.188.255.254"))
FLANNEL = ipaddress.ip_network("10.244.1.0/24")


def annotations(pod: str) -> dict:
    ip = DATABASES.get(pod)
    return {"kube-ipam.ip": ip, "kube-ipam.netmask": "255.255.0.0", "kube-ipam.gateway": "10.188.0.1"} if ip else {}


@pytest.fixture
def thick_daemon(node, tmp_path):
    """One `multipy daemon` in the node's namespace (its default log level), stopped at teardown."""
    (tmp_path / "daemon").mkdir()
    with DaemonProcess(tmp_path / "daemon", host_netns=node.name, log_level="error") as daemon:
        yield daemon


def served(daemon: DaemonProcess, command: str) -> float:
    """/cni requests of `command` the daemon answered, from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(daemon.request("GET", "/metrics").body.decode())
    return sum(s.value for f in families if f.name == "multipy_request_duration_seconds" for s in f.samples
               if s.name.endswith("_count") and s.labels.get("endpoint", "").strip("/") == "cni" and s.labels.get("command") == command)


def all_at_once(calls) -> list:
    """Runs every call in its own thread, released together; returns their results in order."""
    gate = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        gate.wait()
        try:
            results[i] = calls[i]()
        except Exception as error:  # noqa: BLE001 - asserted by the caller
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_100_concurrent_pods_through_the_shim(cluster, node, netns, tmp_path, subnet_env, thick_daemon,
                                              record_property):
    conf = seed_conf(tmp_path, node, cluster, True, subnet_env(FLANNEL_SUBNET="10.244.1.1/24"))
    conf.update({"type": "multus-shim", "daemonSocketDir": thick_daemon.socket_dir, "logLevel": "verbose"})
    (tmp_path / "no-binaries").mkdir()
    shim = executable("multus-shim")
    pods = {pod: (f"{pod}-c1", netns("pod")) for pod in [*DATABASES, *WEB]}
    node_links = set(kernel.links(node.name))

    def call(command: str, pod: str):
        cid, ns = pods[pod]
        args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID=uid-{pod}"
        request = {**conf, "runtimeConfig": {"io.kubernetes.cri.pod-annotations": annotations(pod)}}
        return lambda: invoke(shim, command, request, container_id=cid, netns=f"/run/netns/{ns}", ifname="eth0",
                              cni_args=args, cni_path=str(tmp_path / "no-binaries"), host_netns=node.name,
                              env={"MULTIPY_THIN": str(tmp_path / "no-thin-fallback")})

    started = time.monotonic()
    added = all_at_once([call("ADD", pod) for pod in pods])
    add_seconds = time.monotonic() - started
    failed = {pod: outcome for pod, outcome in zip(pods, added, strict=True) if not getattr(outcome, "ok", False)}
    assert not failed, {pod: getattr(o, "stdout", o) for pod, o in list(failed.items())[:3]}

    eth0, net1 = {}, {}
    for pod, (_, ns) in pods.items():
        found = kernel.addresses(ns)
        eth0[pod], net1[pod] = found["eth0"][0], found["net1"][0]
    assert len(set(eth0.values())) == PODS and all(ipaddress.ip_interface(a) in FLANNEL for a in eth0.values())
    assert len(set(net1.values())) == PODS
    for pod, ip in DATABASES.items():
        assert net1[pod] == f"{ip}/16"
    assert all(DYNAMIC[0] <= ipaddress.ip_interface(net1[pod]).ip <= DYNAMIC[1] for pod in WEB)
    for pod, outcome in zip(pods, added, strict=True):  # the runtime gets the master's eth0
        assert [ip["address"] for ip in outcome.json["ips"]] == [eth0[pod]]
    keys = cluster.keys()
    assert len([k for k in keys if k.startswith(POOL + "ips/")]) == PODS
    assert len([k for k in keys if k.startswith(POOL + "owners/")]) == PODS
    assert served(thick_daemon, "ADD") >= PODS

    started = time.monotonic()
    deleted = all_at_once([call("DEL", pod) for pod in pods])
    record_property("timings", {"add_seconds": add_seconds, "del_seconds": time.monotonic() - started})
    print(f"{PODS} ADDs at once {add_seconds:.2f} s, {PODS} DELs {time.monotonic() - started:.2f} s")
    failed = {pod: outcome for pod, outcome in zip(pods, deleted, strict=True) if not getattr(outcome, "ok", False)}
    assert not failed, {pod: getattr(o, "stdout", o) for pod, o in list(failed.items())[:3]}
    assert served(thick_daemon, "DEL") >= PODS

    left = cluster.keys()
    assert sorted(left) == sorted(POOL + f"ips/{ip}" for ip in DATABASES.values())
    assert all(v["kind"] == "fixed" and v["containerID"] == "" and v["pod"].startswith("default/database-")
               for v in left.values())
    assert records(tmp_path) == []
    assert reservations(tmp_path, "k8snet1") == []
    assert not list((tmp_path / "flannel").iterdir())
    for _, ns in pods.values():
        assert set(kernel.links(ns)) == {"lo"}
    assert set(kernel.links(node.name)) <= node_links | {"docker0"}
    with open(thick_daemon.log_path, errors="replace") as log:  # at its default level: errors only
        assert "Traceback" not in log.read()
