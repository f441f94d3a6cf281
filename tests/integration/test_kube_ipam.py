"""kube-ipam run as a CNI binary (the standalone runner) against real etcd servers and the local
Kubernetes API: ADD storms from parallel processes, errors that leave nothing behind, TLS, failover."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter

import pytest

from multipy.testing.runtime import invoke, native
from multipy.testing.topology import SEED_KUBE_IPAM

PREFIX = "/multipy/ipam/"
POOL = f"{PREFIX}pools/10.188.0.0-16/"
PLUGIN = native("kube-ipam")


def conf_for(etcd, version="1.0.0", kubeconfig="/nonexistent", **ipam) -> dict:
    section = dict(SEED_KUBE_IPAM, etcdConfig=etcd.etcd_config(), kubeConfig=kubeconfig)
    section.update(ipam)
    section = {k: v for k, v in section.items() if v is not None}
    return {"cniVersion": version, "name": "k8snet2", "type": "macvlan", "ipam": section}


def pod_args(pod: str) -> str:
    return f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_UID=uid-{pod}"


def run(command, conf, cid="c1", pod=None, ifname="net1", args=""):
    cni_args = ";".join(a for a in (pod_args(pod) if pod else "", args) if a)
    return invoke(PLUGIN, command, conf, container_id=cid, netns="/run/netns/none", ifname=ifname, cni_args=cni_args)


# -- ADD storms from parallel processes


def _storm_worker(conf: dict, jobs: list[tuple[str, str, dict | None]]) -> list[tuple[str, str, object]]:
    """One process's share: each ADD with a fresh plugin and etcd client, as a CNI exec would have."""
    from delegates.kube_ipam import KubeIpam
    from multipy.cni.env import Environment
    from multipy.cni.errors import CNIError
    from multipy.plugins.contract import Services

    out = []
    for cid, pod, given in jobs:
        request = dict(conf, runtimeConfig={"io.kubernetes.cri.pod-annotations": given or {}})
        inv = Environment("ADD", cid, "/run/netns/none", "net1", pod_args(pod))
        try:
            result = KubeIpam(Services()).add(inv, request)
            out.append((cid, pod, str(result.ips[0].address.ip)))
        except CNIError as error:
            out.append((cid, pod, (error.code, error.msg)))
    return out


def _del_worker(conf: dict, jobs: list[tuple[str, str]]) -> list[str]:
    from delegates.kube_ipam import KubeIpam
    from multipy.cni.env import Environment
    from multipy.cni.errors import CNIError
    from multipy.plugins.contract import Services

    failures = []
    for cid, pod in jobs:
        try:
            KubeIpam(Services()).delete(Environment("DEL", cid, "", "net1", pod_args(pod)), conf)
        except CNIError as error:
            failures.append(f"{cid}: {error.msg}")
    return failures


PROCESSES = 8


def _storm(etcd, rotate_endpoints: bool) -> dict:
    # A 256-address dynamic range for 190 dynamic ADDs: most tries race for the same few addresses.
    conf = conf_for(etcd, rangeStart="10.188.1.0", rangeEnd="10.188.1.255")
    fixed = [(f"db-{n}", f"10.188.0.{100 + n}") for n in range(10)]
    jobs = [(f"c-web-{n}", f"web-{n}", None) for n in range(190)]
    jobs += [(f"c-{pod}", pod, {"kube-ipam.ip": ip, "kube-ipam.netmask": "255.255.0.0"}) for pod, ip in fixed]
    # Five pods of other names want five of the databases' addresses at the same time.
    intruders = [(f"c-intruder-{n}", f"intruder-{n}", {"kube-ipam.ip": fixed[n][1]}) for n in range(5)]
    jobs += intruders
    shares = [jobs[n::PROCESSES] for n in range(PROCESSES)]
    confs = []
    for n in range(PROCESSES):
        c = json.loads(json.dumps(conf))
        if rotate_endpoints:  # spread the clients over the members: each starts on another one
            urls = etcd.endpoints[n % len(etcd.endpoints):] + etcd.endpoints[: n % len(etcd.endpoints)]
            c["ipam"]["etcdConfig"]["etcdURL"] = ",".join(urls)
        confs.append(c)
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        results = [r for part in pool.starmap(_storm_worker, zip(confs, shares, strict=True)) for r in part]
        add_seconds = time.monotonic() - started
        won = [(cid, pod, ip) for cid, pod, ip in results if isinstance(ip, str)]
        lost = [(cid, pod, outcome) for cid, pod, outcome in results if not isinstance(outcome, str)]
        ips = [ip for _, _, ip in won]
        assert len(ips) == len(set(ips)) == 200, Counter(ips).most_common(3)
        for _pod, ip in fixed[:5]:
            holders = [pod for _, pod, got in won if got == ip]
            assert len(holders) == 1, (ip, holders)
        assert all(code == 11 and "is reserved for pod default/" in msg for _, _, (code, msg) in lost), lost
        for _pod, ip in fixed[5:]:
            assert ip in ips
        stored = etcd.keys(PREFIX)
        leases = {k[len(POOL + "ips/"):]: json.loads(v) for k, v in stored.items() if k.startswith(POOL + "ips/")}
        assert sorted(leases) == sorted(ips)
        assert all(leases[ip]["containerID"] == cid for cid, _, ip in won)
        assert len([k for k in stored if k.startswith(POOL + "owners/")]) == 200

        started = time.monotonic()
        dels = [[(cid, pod) for cid, pod, _ in won[n::PROCESSES]] for n in range(PROCESSES)]
        failures = [f for part in pool.starmap(_del_worker, zip(confs, dels, strict=True)) for f in part]
        del_seconds = time.monotonic() - started
    assert failures == []
    left = {k: json.loads(v) for k, v in etcd.keys(PREFIX).items()}
    winners = {pod for _, pod, _ in won}
    expected = {POOL + f"ips/{ip}" for pod, ip in fixed if pod in winners}
    expected |= {POOL + f"ips/{fixed[int(pod.split('-')[1])][1]}" for _, pod, _ in won if pod.startswith("intruder")}
    assert set(left) == expected and len(expected) == 10
    assert all(v["kind"] == "fixed" and v["containerID"] == "" and v["pod"] for v in left.values())
    return {"add_seconds": add_seconds, "del_seconds": del_seconds}


def test_200_adds_from_8_processes_one_etcd(etcd_server, record_property):
    timings = _storm(etcd_server, rotate_endpoints=False)
    record_property("timings", timings)
    print(f"one etcd: 205 ADDs {timings['add_seconds']:.2f} s, 200 DELs {timings['del_seconds']:.2f} s")


def test_200_adds_from_8_processes_three_member_cluster(etcd_cluster, record_property):
    timings = _storm(etcd_cluster, rotate_endpoints=True)
    record_property("timings", timings)
    print(f"3 members: 205 ADDs {timings['add_seconds']:.2f} s, 200 DELs {timings['del_seconds']:.2f} s")


# -- errors through the binary: a CNI error on stdout, no traceback, nothing in etcd


@pytest.fixture
def pods(kube_api):
    kube_api.add_pod("default", "database-1", uid="uid-database-1",
                     annotations={"kube-ipam.ip": "10.188.0.218", "kube-ipam.netmask": "255.255.0.0",
                                  "kube-ipam.gateway": "10.188.0.1"})  # fmt: skip
    return kube_api


def refused(etcd, outcome, code: int, fragment: str) -> dict:
    assert outcome.returncode != 0, outcome.stdout
    assert "Traceback" not in outcome.stderr + outcome.stdout
    error = json.loads(outcome.stdout)
    assert error["code"] == code and fragment in error["msg"], error
    return error


@pytest.mark.parametrize(
    "annotations, code, fragment",
    [
        ({"kube-ipam.ip": "10.189.0.5"}, 7, "annotation kube-ipam.ip: 10.189.0.5 is not in subnet 10.188.0.0/16"),
        ({"kube-ipam.ip": "10.188.0.5"}, 7, "10.188.0.5 is outside the fixed range fixedStart..fixedEnd"),
        ({"kube-ipam.ip": "10.188.0.1"}, 7, "10.188.0.1 is the gateway of 10.188.0.0/16"),
        ({"kube-ipam.ip": "10.188.0.2555"}, 7, 'annotation kube-ipam.ip: "10.188.0.2555" is not an IP address'),
        ({"kube-ipam.ip": "10.188.0.30", "kube-ipam.netmask": "255.255.0.255"}, 7,
         'annotation kube-ipam.netmask: "255.255.0.255" is not a netmask'),
        ({"kube-ipam.ip": "10.188.0.218"}, 11, "10.188.0.218 is reserved for pod default/database-1"),
    ],
)
def test_refused_annotations(etcd_server, pods, annotations, code, fragment):
    conf = conf_for(etcd_server, kubeconfig=pods.kubeconfig)
    assert run("ADD", conf, "c-db1", "database-1").ok
    before = etcd_server.keys(PREFIX)
    pods.add_pod("default", "bad", annotations=annotations, uid="uid-bad")
    refused(etcd_server, run("ADD", conf, "c-bad", "bad"), code, fragment)
    assert etcd_server.keys(PREFIX) == before


def test_inside_the_dynamic_range(etcd_server, pods):
    conf = conf_for(etcd_server, kubeconfig=pods.kubeconfig, fixedStart=None, fixedEnd=None)
    pods.add_pod("default", "bad", annotations={"kube-ipam.ip": "10.188.9.9"}, uid="uid-bad")
    refused(etcd_server, run("ADD", conf, "c-bad", "bad"), 7, "10.188.9.9 is inside the dynamic range")
    assert etcd_server.keys(PREFIX) == {}


def test_api_unreachable_fails_closed(etcd_server, pods):
    conf = conf_for(etcd_server, kubeconfig=pods.kubeconfig)
    pods.stop()
    error = refused(etcd_server, run("ADD", conf, "c-db1", "database-1"), 11, "database-1")
    assert "127.0.0.1" in error["msg"]
    assert etcd_server.keys(PREFIX) == {}


def test_etcd_unreachable_fails_closed(etcd_server, pods):
    conf = conf_for(etcd_server, kubeconfig=pods.kubeconfig)
    etcd_server.stop_member(0)
    started = time.monotonic()
    error = refused(etcd_server, run("ADD", conf, "c-db1", "database-1"), 11, etcd_server.endpoints[0])
    assert time.monotonic() - started < 10, "bounded by the etcd timeouts"
    refused(etcd_server, run("DEL", conf, "c-db1", "database-1"), 11, etcd_server.endpoints[0])
    refused(etcd_server, run("STATUS", conf_for(etcd_server, "1.1.0")), 50, error["msg"].split(": ")[0][:10])
    etcd_server.start_member(0)
    assert etcd_server.keys(PREFIX) == {}


def test_tls_with_client_certificates_end_to_end(etcd_tls_server, pods):
    etcd = etcd_tls_server
    conf = conf_for(etcd, "1.1.0", kubeconfig=pods.kubeconfig)
    assert conf["ipam"]["etcdConfig"]["etcdURL"].startswith("https://")
    added = run("ADD", conf, "c-db1", "database-1")
    assert added.ok, added.stdout + added.stderr
    assert added.json["ips"] == [{"address": "10.188.0.218/16", "gateway": "10.188.0.1"}]
    assert run("CHECK", dict(conf, prevResult=added.json), "c-db1", "database-1").ok
    assert run("STATUS", conf).ok
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "c-db1", "ifname": "net1"}]})
    assert run("GC", gc).ok
    assert json.loads(etcd.keys(PREFIX)[POOL + "ips/10.188.0.218"])["containerID"] == "c-db1"
    assert run("DEL", conf, "c-db1", "database-1").ok
    assert list(etcd.keys(PREFIX)) == [POOL + "ips/10.188.0.218"]
    # Without the client certificate the server refuses the handshake: a config-shaped error, nothing written.
    no_cert = json.loads(json.dumps(conf))
    del no_cert["ipam"]["etcdConfig"]["etcdCertFile"], no_cert["ipam"]["etcdConfig"]["etcdKeyFile"]
    refused(etcd, run("ADD", no_cert, "c-web"), 11, "client certificate")


def test_a_cluster_serves_with_one_member_down_and_refuses_without_quorum(etcd_cluster):
    conf = conf_for(etcd_cluster)
    etcd_cluster.stop_member(0)
    added = run("ADD", conf, "c1")
    assert added.ok, added.stdout
    etcd_cluster.stop_member(1)
    refused(etcd_cluster, run("ADD", conf, "c2"), 11, etcd_cluster.endpoints[2])
    etcd_cluster.start_member(0)
    assert run("DEL", conf, "c1").ok
    assert run("DEL", conf, "c2").ok
    assert etcd_cluster.keys(PREFIX) == {}
