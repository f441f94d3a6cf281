"""multus-shim executed as a runtime executes it, in namespaces, with multipy's native delegates (bridge +
host-local on eth0, macvlan + host-local on net1).

With no daemon (no socket, or a socket nobody listens on, as after a SIGKILL) every request runs in thin
mode through the multus-cni next to the shim, with the same records: ADD and DEL work, DEL never
leaks, and `thinFallback: false` makes ADD fail with code 11 while DEL still falls back.

With a real daemon (`multipy daemon` in the node's namespace): thin and thick interoperate
both ways, a daemon SIGKILLed in the middle of an ADD leaves nothing behind once the shim's DEL ran,
and the seed scenario runs through the shim.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest

from multipy.testing import kernel
from multipy.testing.daemon import DaemonProcess
from multipy.testing.fixtures import Runtime
from multipy.testing.runtime import executable

from .conftest import POOL, records, reservations
from .test_seed_scenario import DATABASES, WEB, Pods, seed_conf

ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID={cid}"


@pytest.fixture
def shim(node):
    """The shim as containerd runs it, from the node's namespace; its thin fallback is the real multus-cni
    next to it (the virtualenv's bin)."""
    return Runtime(executable("multus-shim"), host_netns=node.name)


@pytest.fixture
def thin(node):
    return Runtime(executable("multus-cni"), host_netns=node.name)


@pytest.fixture
def thick_conf(seed_conf, tmp_path):
    """The seed-like conf in thick mode, every delegate native, the socket dir with no daemon in it."""

    def make(**overrides) -> dict:
        conf = seed_conf(binaryDelegates=[], **overrides)
        conf.update({"type": "multus-shim", "daemonSocketDir": str(tmp_path / "run")})
        return conf

    return make


class Pod:
    def __init__(self, netns_name: str, cid: str) -> None:
        self.netns, self.cid = netns_name, cid

    def run(self, runtime: Runtime, command: str, conf: dict, **kwargs):
        return runtime(command, conf, container_id=self.cid, netns=f"/run/netns/{self.netns}", ifname="eth0",
                       cni_args=ARGS.format(cid=self.cid), **kwargs)  # fmt: skip


@pytest.fixture
def pod(netns):
    return Pod(netns("pod"), "shim-c1")


def assert_wired(pod: Pod, outcome) -> None:
    assert outcome.ok, outcome.stdout + outcome.stderr
    links = kernel.links(pod.netns)
    assert {"eth0", "net1"} <= set(links)
    assert [ip["address"] for ip in outcome.json["ips"]] == kernel.addresses(pod.netns)["eth0"]


def assert_nothing_left(pod: Pod, tmp_path, node, node_links: set[str]) -> None:
    assert set(kernel.links(pod.netns)) == {"lo"}
    assert records(tmp_path) == []
    assert reservations(tmp_path, "k8snet1") == reservations(tmp_path, "k8snet2") == []
    assert set(kernel.links(node.name)) <= node_links | {"cni0"}  # the bridge stays, as the reference's does


# ---- the daemon is down: thin mode -------------------------------------------------------------


@pytest.mark.parametrize("down", ["no-socket", "refused"])
def test_daemon_down_add_and_del_through_the_fallback(shim, thick_conf, pod, tmp_path, node, down):
    conf = thick_conf()
    if down == "refused":  # the socket file a SIGKILLed daemon leaves: ECONNREFUSED
        (tmp_path / "run").mkdir(mode=0o700)
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(tmp_path / "run" / "multipy.sock"))
        dead.close()
    node_links = set(kernel.links(node.name))
    added = pod.run(shim, "ADD", conf)
    assert_wired(pod, added)
    assert len(records(tmp_path)) == 1
    assert len(reservations(tmp_path, "k8snet1")) == len(reservations(tmp_path, "k8snet2")) == 1
    # A record written in thin mode keeps the runtime's path, as the daemon's would.
    (record,) = records(tmp_path)
    assert json.loads((tmp_path / "cache" / record).read_text())["netns"] == f"/run/netns/{pod.netns}"
    deleted = pod.run(shim, "DEL", conf)
    assert deleted.ok and deleted.stdout == "", deleted.stdout + deleted.stderr
    assert_nothing_left(pod, tmp_path, node, node_links)


def test_thin_fallback_off_fails_add_with_code_11_and_creates_nothing(shim, thick_conf, pod, tmp_path, node):
    conf = thick_conf(thinFallback=False)
    added = pod.run(shim, "ADD", conf)
    assert not added.ok
    error = added.json
    assert error["code"] == 11 and str(tmp_path / "run" / "multipy.sock") in error["msg"]
    assert error["cniVersion"] == conf["cniVersion"]
    assert set(kernel.links(pod.netns)) == {"lo"} and records(tmp_path) == []


def test_del_with_the_daemon_down_never_leaks(shim, thin, thick_conf, pod, tmp_path, node):
    # Added in thin mode (as during a daemon restart), deleted through the shim with the daemon still
    # down and thinFallback off: Multus thick would answer success here and leak both leases.
    conf = thick_conf(thinFallback=False)
    node_links = set(kernel.links(node.name))
    assert_wired(pod, pod.run(thin, "ADD", conf))
    assert reservations(tmp_path, "k8snet1") and reservations(tmp_path, "k8snet2")
    deleted = pod.run(shim, "DEL", conf)
    assert deleted.ok, deleted.stdout + deleted.stderr
    assert_nothing_left(pod, tmp_path, node, node_links)
    # containerd's second DEL (RemovePodSandbox: no netns) succeeds too.
    again = shim("DEL", conf, container_id=pod.cid, ifname="eth0", cni_args=ARGS.format(cid=pod.cid))
    assert again.ok, again.stdout + again.stderr


# ---- with a real daemon ------------------------------------------------------------------------


@pytest.fixture
def daemon(node, tmp_path):
    """`multipy daemon` running in the node's namespace, as the DaemonSet's hostNetwork pod does."""
    with DaemonProcess(tmp_path / "daemon", host_netns=node.name) as process:
        yield process


@pytest.fixture
def served_conf(thick_conf, daemon):
    def make(**overrides) -> dict:
        return {**thick_conf(**overrides), "daemonSocketDir": daemon.socket_dir}

    return make


def test_add_thin_del_thick(shim, thin, served_conf, pod, tmp_path, node, monkeypatch):
    conf = served_conf()
    node_links = set(kernel.links(node.name))
    assert_wired(pod, pod.run(thin, "ADD", conf))
    # MULTIPY_THIN naming no file: a DEL that fell back would fail, so this one is the daemon's.
    deleted = pod.run(shim, "DEL", conf, env={"MULTIPY_THIN": str(tmp_path / "no-thin")})
    assert deleted.ok, deleted.stdout + deleted.stderr
    assert_nothing_left(pod, tmp_path, node, node_links)


def test_add_thick_del_thin(shim, thin, served_conf, pod, tmp_path, node):
    conf = served_conf()
    node_links = set(kernel.links(node.name))
    assert_wired(pod, pod.run(shim, "ADD", conf, env={"MULTIPY_THIN": str(tmp_path / "no-thin")}))
    (record,) = records(tmp_path)
    # The daemon entered the pod through the passed fd, and recorded the runtime's path.
    assert json.loads((tmp_path / "cache" / record).read_text())["netns"] == f"/run/netns/{pod.netns}"
    deleted = pod.run(thin, "DEL", conf)
    assert deleted.ok, deleted.stdout + deleted.stderr
    assert_nothing_left(pod, tmp_path, node, node_links)


def slow_delegate(directory, seconds: float) -> dict:
    """A binary delegate for net1 that takes `seconds` and creates nothing: the daemon is killed while it runs."""
    directory.mkdir(exist_ok=True)
    script = directory / "slow"
    script.write_text(f"""#!/bin/sh
[ "$CNI_COMMAND" = ADD ] && sleep {seconds}
[ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion": "0.3.1", "interfaces": [], "ips": []}}'
exit 0
""")
    script.chmod(0o755)
    return {"name": "slow", "type": "slow", "cniVersion": "0.3.1"}


@pytest.mark.parametrize("fallback", [True, False], ids=["add-falls-back", "add-fails"])
def test_daemon_killed_in_the_middle_of_an_add_then_del_through_the_shim(shim, served_conf, daemon, pod, tmp_path,
                                                                         node, fallback):  # fmt: skip
    conf = served_conf(thinFallback=fallback)
    bridge = conf["delegates"][0]
    conf["delegates"] = [bridge, slow_delegate(tmp_path / "bin", 3)]
    conf["binDir"] = str(tmp_path / "bin")
    node_links = set(kernel.links(node.name))
    outcome: dict = {}
    adding = threading.Thread(target=lambda: outcome.update(add=pod.run(shim, "ADD", conf)))
    adding.start()
    deadline = time.monotonic() + 20
    while "eth0" not in kernel.links(pod.netns) and time.monotonic() < deadline:  # the master is in place
        time.sleep(0.05)
    assert "eth0" in kernel.links(pod.netns), "the daemon never started the ADD"
    os.kill(daemon.pid, signal.SIGKILL)
    adding.join(60)
    added = outcome["add"]
    if fallback:  # the retried ADD in thin mode cleared the daemon's unfinished one first
        assert added.ok, added.stdout + added.stderr
        assert len(reservations(tmp_path, "k8snet1")) == 1
    else:
        assert not added.ok and added.json["code"] == 11
    time.sleep(3.5)  # the orphaned slow delegate ends; it created nothing
    deleted = pod.run(shim, "DEL", conf)
    assert deleted.ok, deleted.stdout + deleted.stderr
    assert set(kernel.links(pod.netns)) == {"lo"}
    assert records(tmp_path) == [] and reservations(tmp_path, "k8snet1") == []
    assert set(kernel.links(node.name)) <= node_links | {"cni0"}


def test_the_seed_scenario_through_the_shim(daemon, cluster, node, netns, tmp_path, subnet_env):
    conf = seed_conf(tmp_path, node, cluster, True, subnet_env(FLANNEL_SUBNET="10.244.1.1/24"))
    conf.update({"type": "multus-shim", "daemonSocketDir": daemon.socket_dir})
    (tmp_path / "no-binaries").mkdir()
    # MULTIPY_THIN naming no file: every request here is the daemon's, none fell back.
    runtime = Runtime(executable("multus-shim"), host_netns=node.name, cni_path=str(tmp_path / "no-binaries"),
                      env={"MULTIPY_THIN": str(tmp_path / "no-thin")})  # fmt: skip
    pods = Pods(runtime, netns, cluster, conf, True)
    for name in (*DATABASES, *WEB):
        pods.create(name)
    assert pods.net1("database-1") == "10.188.0.218/16" and pods.net1("database-2") == "10.188.0.219/16"
    for web_pod in WEB:
        for db in DATABASES:
            pods.ping(web_pod, db)
    pods.ping("database-1", "database-2")
    old_cid = pods.running["database-2"][0]
    pods.delete("database-2")
    pods.create("database-2")
    assert pods.running["database-2"][0] != old_cid and pods.net1("database-2") == "10.188.0.219/16"
    pods.ping("web-1", "database-2")
    for name in list(pods.running):
        pods.delete(name)
    left = cluster.keys()
    assert sorted(left) == [POOL + "ips/10.188.0.218", POOL + "ips/10.188.0.219"]
    assert records(tmp_path) == [] and reservations(tmp_path, "k8snet1") == []
