"""`multipy daemon` as a real process, talked to over its unix socket as the shim talks to it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from multipy.net.netns import run_in
from multipy.testing.daemon import DaemonProcess
from multipy.testing.kube_api import KubeAPIServer
from multipy.testing.runtime import executable, invoke

CONTAINER = "cafe0001"


def loopback_conf(tmp_path, **extra) -> dict:
    """A conf whose one delegate is multipy's native loopback: real netlink work, no address to leak."""
    return {"cniVersion": "1.0.0", "name": "daemon-net", "type": "multus-shim", "cniDir": str(tmp_path / "cache"),
            "delegates": [{"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback"}], **extra}  # fmt: skip


def records(tmp_path) -> list[str]:
    directory = tmp_path / "cache"
    return sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.exists() else []


def metric_samples(text: str, name: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


@pytest.fixture
def daemon(tmp_path):
    with DaemonProcess(tmp_path) as started:
        yield started


def test_socket_and_directory_modes_and_probes(daemon):
    assert stat.S_IMODE(os.stat(daemon.socket_dir).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(daemon.socket_path).st_mode)
    assert stat.S_IMODE(os.stat(daemon.socket_path).st_mode) == 0o600
    assert daemon.request("GET", "/healthz").json == {"ok": True}
    ready = daemon.request("GET", "/readyz")
    assert (ready.status, ready.json["ready"]) == (200, True)
    assert ready.headers["connection"] == "close"


def test_bad_requests_are_cni_errors_naming_the_field(daemon):
    reply = daemon.request("POST", "/cni", b"{not json")
    assert (reply.status, reply.json["code"]) == (400, 6)
    reply = daemon.request("POST", "/cni", {"env": {"CNI_COMMAND": 7}, "config": "{}"})
    assert (reply.status, reply.json["code"]) == (400, 4) and "env.CNI_COMMAND 7" in reply.json["msg"]
    reply = daemon.request("POST", "/cni", {"env": {"CNI_COMMAND": "ADD"}, "config": "{}"})
    assert (reply.status, reply.json["code"]) == (400, 4) and "CNI_CONTAINERID" in reply.json["msg"]
    reply = daemon.request("POST", "/delegate", {"env": {"CNI_COMMAND": "CHECK"}, "config": "{}", "network": {}})
    assert (reply.status, reply.json["code"]) == (400, 4) and "'CHECK'" in reply.json["msg"]


def test_native_add_is_in_the_per_delegate_histograms(daemon, netns, tmp_path):
    pod = f"/run/netns/{netns('pod')}"
    conf = loopback_conf(tmp_path)
    added = daemon.cni("ADD", conf, container_id=CONTAINER, netns=pod, ifname="lo")
    assert added.status == 200, added.body
    assert added.json["interfaces"][0]["name"] == "lo"
    assert daemon.cni("CHECK", conf, container_id=CONTAINER, netns=pod, ifname="lo").status == 204
    assert daemon.cni("DEL", conf, container_id=CONTAINER, netns=pod, ifname="lo").status == 204
    assert records(tmp_path) == []
    text = daemon.request("GET", "/metrics").body.decode()
    counts = {(s.labels["type"], s.labels["command"]): s.value
              for s in metric_samples(text, "multipy_delegate_duration_seconds_count")}  # fmt: skip
    assert counts[("loopback", "ADD")] == 1 and counts[("loopback", "DEL")] == 1
    requests = {s.labels["command"]: s.value for s in metric_samples(text, "multipy_request_duration_seconds_count")}
    assert requests["ADD"] == requests["DEL"] == requests["CHECK"] == 1
    # The /metrics request itself is the one in flight.
    assert [s.value for s in metric_samples(text, "multipy_requests_in_flight")] == [1.0]
    assert [s.value for s in metric_samples(text, "multipy_queue_length")] == [0.0]


def test_a_passed_netns_fd_works_where_the_path_does_not_exist(daemon, netns, tmp_path):
    """The daemon may not see the runtime's mounts: the shim's fd is the namespace, the path only a name."""
    conf = loopback_conf(tmp_path)
    fd = os.open(f"/run/netns/{netns('pod')}", os.O_RDONLY)
    try:
        for command, status in (("ADD", 200), ("CHECK", 204), ("DEL", 204)):
            reply = daemon.cni(command, conf, container_id=CONTAINER, netns="/nonexistent/path", ifname="lo", netns_fd=fd)
            assert reply.status == status, reply.body
            if command == "ADD":
                assert reply.json["interfaces"][0]["sandbox"] == "/nonexistent/path"
                record = json.loads((tmp_path / "cache" / records(tmp_path)[0]).read_text())
                assert record["netns"] == "/nonexistent/path"
    finally:
        os.close(fd)
    assert records(tmp_path) == []
    # Without the fd the path is what it says: nothing.
    reply = daemon.cni("ADD", conf, container_id=CONTAINER, netns="/nonexistent/path", ifname="lo")
    assert reply.status >= 400 and records(tmp_path) == []


SLOW_PLUGIN = """#!/bin/sh
cat > /dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  sleep {seconds}
  printf '{{"cniVersion":"1.0.0","interfaces":[{{"name":"%s"}}],"ips":[]}}' "$CNI_IFNAME"
fi
"""


def test_sigterm_drains_requests_in_flight_and_keeps_the_conf(tmp_path):
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir()
    conf_dir.mkdir()
    plugin = bin_dir / "slow"
    plugin.write_text(SLOW_PLUGIN.format(seconds=2))
    plugin.chmod(0o755)
    conf = {"cniVersion": "1.0.0", "name": "slow-net", "type": "multus-shim", "cniDir": str(tmp_path / "cache"),
            "binDir": str(bin_dir), "delegates": [{"cniVersion": "1.0.0", "name": "slow", "type": "slow"}]}  # fmt: skip
    conf_file = conf_dir / "00-multipy.conf"
    conf_file.write_text(json.dumps(conf))
    daemon = DaemonProcess(tmp_path, "--drain-timeout", "20").start()
    replies: dict[int, object] = {}
    try:
        def add(i: int) -> None:
            replies[i] = daemon.cni("ADD", conf_file.read_text(), container_id=f"slow{i}", netns="/var/run/netns/x",
                                    ifname="eth0")  # fmt: skip

        threads = [threading.Thread(target=add, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(records(tmp_path)) < 3:  # written before the delegate runs: the ADDs are in flight
            assert time.monotonic() < deadline, "the ADDs did not start"
            time.sleep(0.05)
        daemon.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert not os.path.exists(daemon.socket_path)  # new shims fall back to thin at once
        for thread in threads:
            thread.join(30)
        assert daemon.wait(30) == 0
    finally:
        daemon.stop()
    assert sorted(r.status for r in replies.values()) == [200, 200, 200], [r.body for r in replies.values()]
    assert conf_file.exists()
    for i in range(3):  # the thin executable deletes what the daemon added
        outcome = invoke(executable(), "DEL", conf, container_id=f"slow{i}", netns="/var/run/netns/x", ifname="eth0")
        assert outcome.ok, outcome.stdout
    assert records(tmp_path) == []


def bridge_network(name: str, bridge: str, subnet: str, data_dir) -> dict:
    return {"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": bridge,
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(data_dir)}}  # fmt: skip


def leases(data_dir) -> list[str]:
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file() and p.name[0].isdigit())


def pod_links(pod: str) -> list[str]:
    out = subprocess.run(["ip", "-n", os.path.basename(pod), "-o", "link", "show"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return sorted(line.split(": ")[1].split("@")[0] for line in out.splitlines())


def test_delegate_hot_plugs_and_unplugs_a_nad_network_and_pod_del_leaves_nothing(netns, tmp_path):
    node = netns("node")
    pod = f"/run/netns/{netns('pod')}"
    data_dir = tmp_path / "ipam"
    (tmp_path / "kube").mkdir()
    api = KubeAPIServer(directory=str(tmp_path / "kube"))
    run_in(f"/run/netns/{node}", api.start)  # listens in the node, where the daemon runs
    daemon = DaemonProcess(tmp_path, "--kubeconfig", api.kubeconfig, "--node-name", "node-a", host_netns=node)
    try:
        uid = "8f0c1f5e-0000-4000-8000-000000000001"
        api.add_pod("default", "web", uid=uid, node_name="node-a")
        api.add_nad("default", "extra", bridge_network("extra", "br-extra", "10.77.0.0/24", data_dir))
        conf = {"cniVersion": "1.0.0", "name": "daemon-net", "type": "multus-shim", "cniDir": str(tmp_path / "cache"),
                "kubeconfig": api.kubeconfig,
                "delegates": [bridge_network("main", "br-main", "10.66.0.0/24", data_dir)]}  # fmt: skip
        daemon.start()
        deadline = time.monotonic() + 10
        while not daemon.request("GET", "/readyz").json["cachesSynced"]:
            assert time.monotonic() < deadline, "the pod and NAD caches did not sync"
            time.sleep(0.1)
        text = daemon.request("GET", "/metrics").body.decode()
        cached = {s.labels["cache"]: s.value for s in metric_samples(text, "multipy_cache_objects")}
        assert cached == {"pods": 1, "nads": 1}
        args = f"K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID={uid}"
        added = daemon.cni("ADD", conf, container_id=CONTAINER, netns=pod, ifname="eth0", cni_args=args)
        assert added.status == 200, added.body
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": CONTAINER, "CNI_NETNS": pod, "CNI_ARGS": args}
        plug = {"env": env, "config": json.dumps(conf), "network": {"name": "extra", "interface": "net7"}}
        plugged = daemon.request("POST", "/delegate", plug, netns=pod)
        assert plugged.status == 200, plugged.body
        assert plugged.json["ips"][0]["address"].startswith("10.77.0.")
        assert "net7" in pod_links(pod)
        record = json.loads((tmp_path / "cache" / records(tmp_path)[0]).read_text())
        assert [(a["ifname"], a["source"]) for a in record["attachments"]] == [("eth0", ""), ("net7", "default/extra")]
        # Plugging the same interface again is refused, naming it.
        again = daemon.request("POST", "/delegate", plug, netns=pod)
        assert (again.status, again.json["code"]) == (400, 7) and "'net7'" in again.json["msg"]

        unplug = {**plug, "env": {**env, "CNI_COMMAND": "DEL"}}
        assert daemon.request("POST", "/delegate", unplug, netns=pod).status == 204
        assert "net7" not in pod_links(pod)
        assert [p for p in leases(data_dir) if p.startswith("extra")] == []

        # Plugged again, then the pod's own DEL takes the hot-plugged interface with it.
        assert daemon.request("POST", "/delegate", {**plug, "network": {"name": "extra"}}, netns=pod).status == 200
        assert "net1" in pod_links(pod)
        deleted = daemon.cni("DEL", conf, container_id=CONTAINER, netns=pod, ifname="eth0", cni_args=args)
        assert deleted.status == 204, deleted.body
        assert pod_links(pod) == ["lo"]
        assert records(tmp_path) == []
        assert leases(data_dir) == []
    finally:
        daemon.stop()
        api.close()


CYCLES = 1000


def test_memory_is_bounded_over_add_del_cycles(daemon, netns, tmp_path):
    """Idle RSS and growth over 1,000 native ADD/DEL cycles (the figures are printed: pytest -s)."""
    pod = f"/run/netns/{netns('pod')}"
    conf = json.dumps(loopback_conf(tmp_path))
    idle = daemon.rss_kib()

    def cycle(i: int) -> None:
        cid = f"mem{i}"
        assert daemon.cni("ADD", conf, container_id=cid, netns=pod, ifname="lo").status == 200
        assert daemon.cni("DEL", conf, container_id=cid, netns=pod, ifname="lo").status == 204

    for i in range(50):  # warm: every code path imported, every pool made
        cycle(i)
    warm = daemon.rss_kib()
    started = time.monotonic()
    for i in range(CYCLES):
        cycle(i)
    elapsed = time.monotonic() - started
    after = daemon.rss_kib()
    print(f"\ndaemon RSS: idle {idle / 1024:.1f} MiB, warm {warm / 1024:.1f} MiB, after {CYCLES} ADD/DEL cycles "
          f"{after / 1024:.1f} MiB (+{(after - warm) / 1024:.2f} MiB); {elapsed / CYCLES * 1000:.1f} ms per cycle")
    assert records(tmp_path) == []
    assert idle < 50 * 1024
    assert after - warm < 5 * 1024


def test_informer_events_strip_pods_and_the_cache_falls_back_to_the_api():
    from multipy.clients.kube import Informer, strip_pod
    from multipy.daemon.cluster import Cached

    pods = Informer(None, "/api/v1/pods", "pods", strip_pod)
    full = {"metadata": {"name": "web", "namespace": "default", "uid": "u1", "annotations": {"a": "b"},
                         "managedFields": [{"big": "x" * 1000}]},
            "spec": {"nodeName": "node-a", "containers": [{"name": "main", "env": []}], "volumes": []}}  # fmt: skip
    assert pods._apply({"type": "ADDED", "object": full})
    assert pods.get("default", "web") == {
        "metadata": {"name": "web", "namespace": "default", "uid": "u1", "annotations": {"a": "b"}},
        "spec": {"nodeName": "node-a"},
    }
    assert not pods._apply({"kind": "PodList", "items": []})  # not an event: the informer relists

    class Live:
        calls: list = []

        def get_pod(self, namespace, name):
            self.calls.append((namespace, name))
            return {"metadata": {"name": name, "namespace": namespace, "uid": "u2"}}

    live = Live()
    nads = Informer(None, "/x", "nads", strip_pod)
    assert Cached(live, pods, nads, "u1").get_pod("default", "web")["metadata"]["uid"] == "u1"
    assert live.calls == []
    # The cached pod is another incarnation (recreated under the same name): the API decides.
    assert Cached(live, pods, nads, "u2").get_pod("default", "web")["metadata"]["uid"] == "u2"
    assert Cached(live, pods, nads, "").get_pod("default", "missing")["metadata"]["uid"] == "u2"
    assert live.calls == [("default", "web"), ("default", "missing")]
    assert pods._apply({"type": "DELETED", "object": full}) and pods.get("default", "web") is None
