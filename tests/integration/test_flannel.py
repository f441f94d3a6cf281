"""The native flannel master: through multus-cni, standalone, and against the Go bridge it stands for.

flanneld is replaced by a subnet.env fixture (multipy/testing/flannel.py). The reference flannel
binary is not in Debian, so the reference side is what that plugin would run: the Go bridge with
the conf flannel builds (`delegates.flannel.delegate_conf`), which the unit tests pin to the
reference's own example.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from delegates import flannel, flannel_env
from multipy.cni.result import Result
from multipy.testing import kernel, snapshot
from multipy.testing.runtime import executable, invoke, native
from multipy.testing.topology import seed_delegates

from .conftest import GO_PLUGINS, multus_conf, records, reservations

VERSIONS = ["0.3.1", "0.4.0", "1.0.0"]
# The seed's own master delegate (Networksecuritylayering.md), with the paths a test needs added.
SEED_MASTER = {"name": "k8snet1", "type": "flannel", "masterplugin": True,
               "delegate": {"isDefaultGateway": True, "bridge": "docker0", "mtu": 1400}}


@pytest.fixture
def master(tmp_path, subnet_env):
    """Factory for the seed's flannel master delegate, fed by a subnet.env fixture."""

    def make(**keys) -> dict:
        delegate = json.loads(json.dumps(SEED_MASTER))
        delegate.update(dataDir=str(tmp_path / "flannel"), ipam={"dataDir": str(tmp_path / "ipam")}, **keys)
        if "subnetFile" not in keys:
            delegate["subnetFile"] = subnet_env()
        return delegate

    return make


def _stored(tmp_path) -> list[str]:
    directory = tmp_path / "flannel"
    return sorted(os.listdir(directory)) if directory.exists() else []


def _pod_call(cni_runtime, command, conf, pod, container_id="c1", **kwargs):
    return cni_runtime(command, conf, container_id=container_id, netns=f"/run/netns/{pod}", ifname="eth0", **kwargs)


# ---------------------------------------------------------------- the seed topology, flannel master


@pytest.mark.parametrize("version", VERSIONS)
def test_seed_topology_with_the_native_flannel_master(version, master, netns, node, cni_runtime, tmp_path):
    """The core's two-delegate namespace test, with the seed's flannel master instead of a Go bridge."""
    macvlan = seed_delegates(str(tmp_path / "ipam"), node.uplink)[1]
    conf = multus_conf(tmp_path, version, [master(), macvlan], binary=["macvlan"])
    pod = netns("pod")

    added = _pod_call(cni_runtime, "ADD", conf, pod)
    assert added.ok, added.stdout + added.stderr
    result = added.json
    assert result["cniVersion"] == version
    assert [i["name"] for i in result["interfaces"]][0] == "docker0"
    assert result["interfaces"][2] == {"name": "eth0", "mac": kernel.links(pod)["eth0"]["address"],
                                       "sandbox": f"/run/netns/{pod}"}
    assert [ip["address"] for ip in result["ips"]] == ["10.244.1.2/24"]

    addrs = kernel.addresses(pod)
    assert addrs["eth0"] == ["10.244.1.2/24"]
    assert addrs["net1"] == ["10.188.1.0/16"]
    links = kernel.links(pod)
    assert links["eth0"]["mtu"] == 1400  # the delegate's mtu wins over FLANNEL_MTU
    assert links["net1"]["linkinfo"]["info_kind"] == "macvlan"
    routes = [{k: r[k] for k in ("dst", "gateway", "dev") if k in r} for r in kernel.routes(pod)]
    assert {"dst": "default", "gateway": "10.244.1.1", "dev": "eth0"} in routes
    assert {"dst": "10.244.0.0/16", "gateway": "10.244.1.1", "dev": "eth0"} in routes  # FLANNEL_NETWORK
    assert any(r["dst"] == "10.188.0.0/16" and r["dev"] == "net1" for r in routes)
    node_links = kernel.links(node.name)
    assert node_links["docker0"]["linkinfo"]["info_kind"] == "bridge"
    assert kernel.addresses(node.name, "docker0")["docker0"] == ["10.244.1.1/24"]
    assert reservations(tmp_path, "k8snet1") == ["10.244.1.2"]
    assert reservations(tmp_path, "k8snet2") == ["10.188.1.0"]
    assert records(tmp_path) == ["multus-demo:c1:eth0"]
    assert _stored(tmp_path) == ["c1"]
    # flanneld masquerades (FLANNEL_IPMASQ=true), so the bridge must not.
    assert snapshot.nat_rules(node.name) == []

    if version != "0.3.1":  # CHECK exists from 0.4.0 on; flannel's route has no gw (1.1.1's bridge fails that)
        checked = _pod_call(cni_runtime, "CHECK", dict(conf, prevResult=result), pod)
        assert checked.ok, checked.stdout

    deleted = _pod_call(cni_runtime, "DEL", dict(conf, prevResult=result), pod)
    assert deleted.ok, deleted.stdout + deleted.stderr
    assert set(kernel.links(pod)) == {"lo"}
    assert reservations(tmp_path, "k8snet1") == reservations(tmp_path, "k8snet2") == []
    assert records(tmp_path) == []
    assert _stored(tmp_path) == []
    assert not [name for name in kernel.links(node.name) if name.startswith("veth")]

    again = _pod_call(cni_runtime, "DEL", conf, pod)
    assert again.ok and again.stdout == "", again.stdout


# ---------------------------------------------------------------- flannel against the Go bridge it would run


@pytest.mark.parametrize("version", VERSIONS)
def test_flannel_through_multus_gives_eth0_like_the_go_bridge(version, master, netns, tmp_path, subnet_env):
    ours_node, ours_pod, go_node, go_pod = netns("h2"), netns("c2"), netns("h1"), netns("c1")
    path = subnet_env(FLANNEL_SUBNET="10.244.3.1/24", FLANNEL_IPMASQ="false")  # the bridge masquerades
    conf = multus_conf(tmp_path, version, [master(subnetFile=path)])
    delegate = flannel.delegate_conf(flannel.parse(dict(master(subnetFile=path), cniVersion=version)),
                                     flannel_env.load(path))
    delegate["ipam"]["dataDir"] = str(tmp_path / "ipam-go")

    ours = invoke(executable(), "ADD", conf, container_id="c1",
                  netns=f"/run/netns/{ours_pod}", ifname="eth0", host_netns=ours_node)
    go = invoke(f"{GO_PLUGINS}/bridge", "ADD", delegate, container_id="c1", netns=f"/run/netns/{go_pod}",
                ifname="eth0", host_netns=go_node)
    assert ours.ok and go.ok, ours.stdout + go.stdout

    def view(outcome, pod, node, names):
        doc = json.loads(json.dumps(Result.from_json(outcome.json).to_json(version)).replace(pod, "<pod>"))
        state = {"result": doc, "node": snapshot.take(node), "pod": snapshot.take(pod)}
        for side in ("node", "pod"):
            for link in state[side]["links"].values():
                if link.get("kind") == "veth":
                    link.pop("txqlen", None)  # 1.1.1 gives veths txqueuelen 0 (fixed upstream in v1.6.0)
            state[side]["routes"] = [r for r in state[side]["routes"] if r.get("table") != "local"]
        return snapshot.normalise(state, names)

    assert view(ours, ours_pod, ours_node, {}) == view(go, go_pod, go_node, {})
    assert kernel.addresses(ours_pod)["eth0"] == ["10.244.3.2/24"]
    assert any(rule.startswith(":CNI-") for rule in snapshot.nat_rules(ours_node))


# ---------------------------------------------------------------- the stored delegate conf


def test_stored_conf_lifecycle(master, netns, node, cni_runtime, tmp_path, subnet_env):
    pod = netns("pod")
    conf = multus_conf(tmp_path, "1.0.0", [master()])
    assert _pod_call(cni_runtime, "ADD", conf, pod).ok
    path = tmp_path / "flannel" / "c1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["type"] == "bridge" and stored["bridge"] == "docker0" and stored["mtu"] == 1400
    assert stored["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]

    # flanneld gone (subnet.env removed) or re-leased: DEL still undoes exactly what ADD did.
    os.unlink(subnet_env())
    deleted = _pod_call(cni_runtime, "DEL", conf, pod)
    assert deleted.ok, deleted.stdout
    assert set(kernel.links(pod)) == {"lo"}
    assert reservations(tmp_path, "k8snet1") == []
    assert _stored(tmp_path) == []


def test_failed_delegate_add_keeps_the_conf_for_the_runtime_del(master, netns, node, cni_runtime, tmp_path):
    pod = netns("pod")
    subprocess.run(["ip", "-n", node.name, "link", "add", "docker0", "type", "veth", "peer", "name", "d0p"],
                   check=True)
    conf = multus_conf(tmp_path, "1.0.0", [master()])
    added = _pod_call(cni_runtime, "ADD", conf, pod)
    assert added.json["code"] == 7
    assert 'failed to delegate add: failed to create bridge "docker0": "docker0" already exists but is not a ' \
           'bridge' in added.json["msg"]
    # multipy's own rollback already DELed flannel, which used the stored conf and then dropped it.
    assert _stored(tmp_path) == [] and records(tmp_path) == []
    assert set(kernel.links(pod)) == {"lo"}


def test_not_ready_is_code_11_and_touches_nothing(master, netns, node, cni_runtime, tmp_path, subnet_env):
    pod = netns("pod")
    path = subnet_env(FLANNEL_SUBNET=None)  # flanneld has no lease yet
    conf = multus_conf(tmp_path, "1.0.0", [master(subnetFile=path)])
    added = _pod_call(cni_runtime, "ADD", conf, pod)
    assert added.json["code"] == 11, added.stdout
    assert f"flannel is not ready yet: failed to load flannel 'subnet.env' file: {path} is missing " \
           f"FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET" in added.json["msg"]
    assert set(kernel.links(pod)) == {"lo"} and "docker0" not in kernel.links(node.name)
    assert _stored(tmp_path) == [] and reservations(tmp_path, "k8snet1") == []

    os.unlink(path)
    added = _pod_call(cni_runtime, "ADD", conf, pod)
    assert added.json["code"] == 11 and f"open {path}: no such file or directory" in added.json["msg"]


# ---------------------------------------------------------------- flannel as its own binary (standalone)


def _standalone(tmp_path, node: str, pod: str, command: str, conf: dict, container_id: str = "c1"):
    return invoke(native("flannel"), command, conf, container_id=container_id,
                  netns=f"/run/netns/{pod}" if pod else "", ifname="eth0", host_netns=node)


def _flannel_conf(master_conf: dict, version: str) -> dict:
    conf = {k: v for k, v in master_conf.items() if k != "masterplugin"}
    return dict(conf, cniVersion=version)


def test_standalone_add_check_del(master, netns, node, tmp_path):
    pod = netns("pod")
    conf = _flannel_conf(master(), "1.0.0")
    added = _standalone(tmp_path, node.name, pod, "ADD", conf)
    assert added.ok, added.stdout + added.stderr
    assert [i["name"] for i in added.json["interfaces"]] == ["docker0", added.json["interfaces"][1]["name"], "eth0"]
    checked = _standalone(tmp_path, node.name, pod, "CHECK", dict(conf, prevResult=added.json))
    assert checked.ok, checked.stdout
    subprocess.run(["ip", "-n", pod, "route", "del", "10.244.0.0/16"], check=True)
    broken = _standalone(tmp_path, node.name, pod, "CHECK", dict(conf, prevResult=added.json))
    assert not broken.ok and "10.244.0.0/16" in broken.json["msg"]
    assert _standalone(tmp_path, node.name, pod, "DEL", conf).ok
    assert set(kernel.links(pod)) == {"lo"} and _stored(tmp_path) == []
    missing = _standalone(tmp_path, node.name, pod, "CHECK", dict(conf, prevResult=added.json))
    assert not missing.ok and "no stored delegate conf for container c1" in missing.json["msg"]


def test_del_with_an_unparsable_stored_conf_succeeds_and_drops_it(master, node, tmp_path):
    conf = _flannel_conf(master(), "1.0.0")
    os.makedirs(tmp_path / "flannel")
    (tmp_path / "flannel" / "c1").write_text("{ torn")
    assert _standalone(tmp_path, node.name, "", "DEL", conf).ok
    assert _stored(tmp_path) == []
    assert _standalone(tmp_path, node.name, "", "DEL", conf).ok  # and nothing at all is fine too


@pytest.fixture
def read_only():
    """Factory: read_only(path) bind-mounts the directory `path` read-only over itself (its filesystem
    went read-only) and returns what undoes it; the teardown undoes whatever a test left mounted."""
    mounted: list[str] = []

    def make(path: str):
        subprocess.run(["mount", "--bind", path, path], check=True)
        mounted.append(path)
        subprocess.run(["mount", "-o", "remount,ro,bind", path], check=True)

        def clear() -> None:
            subprocess.run(["umount", path], check=True)
            mounted.remove(path)

        return clear

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", path], check=False)


def test_failed_delegate_del_keeps_the_conf_and_a_retry_releases_everything(master, netns, node, tmp_path,
                                                                             read_only):
    """The stored conf goes only after the delegate's DEL succeeded: the runtime's retry must still find it."""
    pod = netns("pod")
    conf = _flannel_conf(master(), "1.0.0")
    assert _standalone(tmp_path, node.name, pod, "ADD", conf).ok
    path = tmp_path / "flannel" / "c1"
    stored = path.read_bytes()
    assert reservations(tmp_path, "k8snet1") == ["10.244.1.2"]

    clear = read_only(str(tmp_path / "ipam" / "k8snet1"))  # host-local cannot remove its reservation
    failed = _standalone(tmp_path, node.name, pod, "DEL", conf)
    assert failed.json["code"] == 5 and "10.244.1.2: Read-only file system" in failed.json["msg"], failed.stdout
    assert path.read_bytes() == stored
    assert reservations(tmp_path, "k8snet1") == ["10.244.1.2"]

    clear()
    retried = _standalone(tmp_path, node.name, pod, "DEL", conf)
    assert retried.ok, retried.stdout + retried.stderr
    assert _stored(tmp_path) == [] and reservations(tmp_path, "k8snet1") == []
    assert set(kernel.links(pod)) == {"lo"}
    assert not [name for name in kernel.links(node.name) if name.startswith("veth")]


def test_status_and_gc(master, netns, node, tmp_path, subnet_env):
    conf = _flannel_conf(master(), "1.1.0")
    assert _standalone(tmp_path, node.name, "", "STATUS", conf).ok
    pods = {cid: netns("pod") for cid in ("keep", "stale")}
    for cid, pod in pods.items():
        assert _standalone(tmp_path, node.name, pod, "ADD", conf, container_id=cid).ok
    assert len(reservations(tmp_path, "k8snet1")) == 2
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    collected = _standalone(tmp_path, node.name, "", "GC", gc)
    assert collected.ok, collected.stdout
    assert _stored(tmp_path) == ["keep"]
    assert reservations(tmp_path, "k8snet1") == ["10.244.1.2"]

    os.unlink(subnet_env())
    status = _standalone(tmp_path, node.name, "", "STATUS", conf)
    assert status.json["code"] == 50 and "flannel is not ready yet" in status.json["msg"]
