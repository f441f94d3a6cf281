"""`multipy ipam gc` against a real etcd that kube-ipam filled and the local Kubernetes API:
what goes, what stays, dry runs, --include-fixed, a race with a DEL, and the exit codes."""

from __future__ import annotations

import ipaddress
import json

import pytest
from click.testing import CliRunner

from delegates.kube_ipam import KubeIpam
from delegates.kube_ipam import gc as ipam_gc
from delegates.kube_ipam.store import Store
from multipy.cli.commands import cli
from multipy.clients.etcd import connect
from multipy.cni.env import Environment
from multipy.plugins.contract import Services
from multipy.testing.etcd import EtcdCluster
from multipy.testing.topology import SEED_KUBE_IPAM

PREFIX = "/multipy/ipam/"
POOL = f"{PREFIX}pools/10.188.0.0-16/"
FIXED = {"database-1": "10.188.0.218", "database-2": "10.188.0.219", "database-3": "10.188.0.220"}


class Cluster:
    """The seed's net1 with kube-ipam on `etcd`, pods in `api`, ADDs as a runtime would make them."""

    def __init__(self, tmp_path, etcd, api):
        self.etcd, self.api = etcd, api
        self.net = {"name": "k8snet2", "type": "macvlan", "master": "eth0", "cniVersion": "0.3.1",
                    "ipam": dict(SEED_KUBE_IPAM, etcdConfig=etcd.etcd_config(), kubeConfig=api.kubeconfig)}  # fmt: skip
        conf = {"cniVersion": "0.3.1", "name": "multus", "type": "multus-cni",
                "delegates": [{"name": "k8snet1", "type": "bridge", "masterplugin": True},
                              {k: v for k, v in self.net.items() if k != "cniVersion"}]}  # fmt: skip
        self.conf = tmp_path / "10-multus.conf"
        self.conf.write_text(json.dumps(conf))
        self.plugin = KubeIpam(Services())
        self.addresses: dict[str, str] = {}

    def add(self, name, cid, namespace="default"):
        uid = ""
        if name:
            uid = self.api.add_pod(
                namespace, name, annotations={"kube-ipam.ip": FIXED[name]} if name in FIXED else None
            )["metadata"]["uid"]
        args = f"K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_UID={uid}" if name else ""
        result = self.plugin.add(Environment("ADD", cid, "/run/netns/x", "net1", args), self.net)
        self.addresses[name or cid] = str(result.ips[0].address.ip)
        return self.addresses[name or cid]

    def delete(self, cid):
        self.plugin.delete(Environment("DEL", cid, "", "net1"), self.net)

    def leases(self) -> dict[str, dict]:
        return {k[len(POOL) + 4 :]: json.loads(v) for k, v in self.etcd.keys(POOL + "ips/").items()}

    def owners(self) -> list[str]:
        return sorted(k[len(POOL) + 7 :] for k in self.etcd.keys(POOL + "owners/"))


@pytest.fixture
def cluster(tmp_path, etcd_server, kube_api):
    c = Cluster(tmp_path, etcd_server, kube_api)
    c.add("web-1", "c-web1")
    c.add("web-2", "c-web2")
    c.add("database-1", "c-db1")
    c.add("database-2", "c-db2")
    c.add("database-3", "c-db3")
    c.add("", "podman-1")  # a runtime that names no pod
    # web-2 and database-3 deleted without their DEL ever running (a node lost, a crashed runtime);
    # database-2 deleted properly: its DEL ran, its name keeps 10.188.0.219.
    kube_api.delete_pod("default", "web-2")
    kube_api.delete_pod("default", "database-3")
    c.delete("c-db2")
    kube_api.delete_pod("default", "database-2")
    return c


def gc(conf, *args, env=None):
    result = CliRunner().invoke(cli, ["ipam", "--conf", str(conf), "gc", *args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def ips(rows):
    return sorted(r["ip"] for r in rows)


def test_dry_run_changes_nothing_and_says_what_would_go(cluster):
    before = cluster.etcd.keys(PREFIX)
    code, out, err = gc(cluster.conf, "--dry-run", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["dryRun"] is True and doc["pods"] == 2
    assert ips(doc["released"]) == [cluster.addresses["web-2"]]
    assert ips(doc["detached"]) == ["10.188.0.220"]
    assert ips(doc["kept"]) == sorted(["10.188.0.219", cluster.addresses["podman-1"]])
    assert doc["changed"] == []
    assert doc["released"][0]["reason"] == "pod default/web-2 is gone, container c-web2 on net1"
    assert cluster.etcd.keys(PREFIX) == before

    code, out, err = gc(cluster.conf, "--dry-run")
    assert code == 0
    assert f"would release {cluster.addresses['web-2']} (dynamic, default/web-2): pod default/web-2 is gone" in out
    assert "would detach 10.188.0.220 (fixed, default/database-3): pod default/database-3 is gone" in out
    assert (
        "kept 10.188.0.219 (fixed, default/database-2): pod default/database-2 is gone; fixed reservations stay" in out
    )
    assert "1 would release, 1 would detach, 0 left alone" in err and "dry run: nothing changed" in err
    assert cluster.etcd.keys(PREFIX) == before


def test_gc_releases_dynamic_and_detaches_fixed_then_include_fixed_frees_gone_names(cluster):
    web1, web2, podman = (cluster.addresses[k] for k in ("web-1", "web-2", "podman-1"))
    code, out, err = gc(cluster.conf, "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert ips(doc["released"]) == [web2] and ips(doc["detached"]) == ["10.188.0.220"]
    leases = cluster.leases()
    assert sorted(leases) == sorted([web1, podman, "10.188.0.218", "10.188.0.219", "10.188.0.220"])
    assert leases["10.188.0.220"]["pod"] == "default/database-3" and leases["10.188.0.220"]["containerID"] == ""
    assert cluster.owners() == ["c-db1/net1", "c-web1/net1", "podman-1/net1"]

    # A second run finds nothing more to do, and says so.
    code, out, err = gc(cluster.conf)
    assert code == 0 and "released" not in out and "detached" not in out
    assert err == "0 released, 0 detached, 0 left alone, 3 kept; 2 pod(s) listed\n"

    code, out, _ = gc(cluster.conf, "--include-fixed")
    assert code == 0
    assert sorted(out.splitlines()) == sorted([
        "released 10.188.0.219 (fixed, default/database-2): pod default/database-2 is gone",
        "released 10.188.0.220 (fixed, default/database-3): pod default/database-3 is gone",
        f"kept {podman} (dynamic, podman-1): no pod recorded: whether it is in use cannot be told",
    ])  # fmt: skip
    assert sorted(cluster.leases()) == sorted([web1, podman, "10.188.0.218"])
    # database-2 recreated: its address is free for anyone now, and it gets a dynamic one or asks again.
    assert cluster.add("database-2", "c-db2-new") == "10.188.0.219"


def test_a_recreated_pod_keeps_its_fixed_address(cluster):
    # database-3 came back (a new UID) before gc ran: its name's address is not touched, not even
    # with --include-fixed; only the old container's attachment goes.
    cluster.api.add_pod("default", "database-3", annotations={"kube-ipam.ip": "10.188.0.220"})
    code, out, _ = gc(cluster.conf, "--include-fixed", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and ips(doc["detached"]) == ["10.188.0.220"] and "10.188.0.220" not in ips(doc["released"])
    assert cluster.leases()["10.188.0.220"]["pod"] == "default/database-3"
    assert cluster.add("database-3", "c-db3-new") == "10.188.0.220"


def test_a_reservation_changed_after_reading_is_left_alone(cluster):
    web2 = cluster.addresses["web-2"]
    # web-2's index removed by hand: its lease is released on its own, against the revision read.
    cluster.etcd.etcdctl("del", f"{POOL}owners/c-web2/net1")
    store = Store(connect(cluster.etcd.url), ipaddress.ip_network("10.188.0.0/16"))
    try:
        todo = ipam_gc.plan(store.leases(), store.owners(), ipam_gc.Pods(list(cluster.api.pods.values())), False)
        assert [str(d.lease.ip) for d in todo.removals] == [web2]
        # Meanwhile the lease is written again, and c-db3's DEL runs.
        cluster.etcd.etcdctl("put", f"{POOL}ips/{web2}", cluster.etcd.keys(f"{POOL}ips/{web2}")[f"{POOL}ips/{web2}"])
        cluster.delete("c-db3")
        done, changed = ipam_gc.apply(store, todo)
    finally:
        store.etcd.close()
    assert [(d.verb, str(d.lease.ip)) for d in changed] == [("release", web2)]
    assert done == []  # the DEL already detached 10.188.0.220: its index is gone, nothing left to do
    assert web2 in cluster.leases()


def test_api_unreachable_or_refusing_exits_5_and_releases_nothing(cluster):
    before = cluster.etcd.keys(PREFIX)
    cluster.api.reject_token()
    code, out, err = gc(cluster.conf)
    assert code == 5 and out == ""
    assert "cannot list pods, nothing released" in err and "HTTP 401" in err and cluster.api.token not in err
    cluster.api.accept_token()
    cluster.api.stop()
    code, _, err = gc(cluster.conf)
    assert code == 5 and f"on {cluster.api.url}: connection refused" in err
    assert cluster.etcd.keys(PREFIX) == before


def test_etcd_down_exits_3(tmp_path, kube_api):
    with EtcdCluster() as etcd:
        url = etcd.url
    result = CliRunner().invoke(cli, ["ipam", "--etcd-url", url, "gc", "--kubeconfig", kube_api.kubeconfig])
    assert result.exit_code == 3 and url in result.stderr
    assert kube_api.requests == []  # the reservations are read first: no API call without them


def test_which_kubeconfig(cluster, tmp_path):
    missing = tmp_path / "nope"
    code, _, err = gc(cluster.conf, "--kubeconfig", str(missing))
    assert code == 2 and f"kubeconfig {missing} does not exist (give --kubeconfig)" in err
    # --etcd-url names no cluster: --kubeconfig, or the in-cluster service account.
    env = {"KUBERNETES_SERVICE_HOST": ""}
    result = CliRunner().invoke(cli, ["ipam", "--etcd-url", cluster.etcd.url, "gc"], env=env)
    assert (
        result.exit_code == 2 and "not running in a cluster" in result.stderr and "give --kubeconfig" in result.stderr
    )
    result = CliRunner().invoke(cli, ["ipam", "--etcd-url", cluster.etcd.url, "gc", "--dry-run", "-o", "json",
                                      "--kubeconfig", cluster.api.kubeconfig])  # fmt: skip
    assert result.exit_code == 0 and ips(json.loads(result.stdout)["released"]) == [cluster.addresses["web-2"]]


@pytest.mark.parametrize(
    "args, fragment",
    [(["--dry-run", "-o", "yaml"], "Invalid value for '--output'"), (["--bogus"], "No such option '--bogus'")],
)
def test_bad_arguments(tmp_path, args, fragment):
    result = CliRunner().invoke(cli, ["ipam", "--conf", str(tmp_path / "x.conf"), "gc", *args])
    assert result.exit_code == 2 and fragment in result.stderr
