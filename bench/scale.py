"""kube-ipam at cluster scale: simulated nodes on one machine sharing one 3-member etcd cluster.

    sudo .venv/bin/python bench/scale.py                              # CI size: 3 nodes, 60 pods
    sudo .venv/bin/python bench/scale.py --nodes 10 --pods 1000 --faults   # the full run
    sudo .venv/bin/python bench/scale.py --nodes 10 --pods 1000 --faults --thick   # thick mode
    options: --inflight N (ADDs/DELs in flight per node, default 3), --sts-share 0.1, --churn 0.2,
             --exhaust (also: an ADD into a full range fails cleanly), --thick, --json

The cluster:
  infra    a network namespace with a bridge (10.250.0.1/16). The 3 etcd members run in it (data on tmpfs),
           listening on 127.0.0.1 and the bridge; this process enters it, so it reads etcd (etcdctl,
           /metrics) on loopback. Nothing of the host's network is touched.
  node i   a network namespace joined to the bridge by a veth (10.250.1.i), with its own macvlan master
           (a veth pair, uplink0/uplink0p) and its own multus-cni state dir. kubelet's part: every pod's
           ADD and DEL is `ip netns exec <node> multus-cni`, env and stdin as containerd sends them
           (multipy.testing.runtime.invoke), at most --inflight at a time per node.
  pod      a fresh network namespace (the sandbox). The conf wires `lo` with the native loopback plugin as
           the master (CNI_IFNAME=lo) and net1 with macvlan + kube-ipam, so nothing but kube-ipam is
           shared between nodes: a bridge or flannel master would add node-local work (a veth, a
           host-local file lock) that says nothing about the shared store. The pod's annotations come
           in runtimeConfig (io.kubernetes.cri.pod-annotations capability): no API server.

The workload (pods spread round robin over the nodes):
  create   --pods pods, --sts-share of them StatefulSet pods (db-<n>) asking for a fixed address by
           annotation (kube-ipam.ip, 10.188.0.10 on), the rest dynamic (web-<n>, 10.188.1.0-10.188.255.254)
  churn    every StatefulSet pod deleted and recreated under the same name on the next node (new
           sandbox, new container ID: it must get its address back); --churn of the others deleted
           and replaced by new pods
  delete   DEL of everything
A failed ADD is handled as kubelet does: the sandbox is torn down (DEL) and created again with a new
container ID, at most 6 sandboxes; a failed DEL is retried with backoff for up to 2 minutes (kubelet
keeps the pod Terminating until a DEL succeeds). Every failed attempt is counted and reported.

--thick: the same with thick mode: a `multipy daemon` per node, in its namespace, and the lone
multus-shim as the CNI executable (no fallback to thin mode).

--faults: during the create phase one etcd member is killed (SIGKILL) and restarted 2 s later, and
later the leader is moved to another member (etcdctl move-leader).

Reported: wall time per phase and in total; ADD and DEL p50/p99/max; etcd transactions, reads and
lost transactions (conflicts, each followed by a retry) per ADD and DEL, counted by kube-ipam's store
(MULTIPY_KUBE_IPAM_STATS) and cross-checked with etcd's own gRPC counters (/metrics); failures;
duplicate addresses (running pods by their ADD results, and etcd's leases); what etcd holds after
the delete phase (only the StatefulSet pods' name-bound reservations may remain); each beside the
published whereabouts and Spiderpool figures. Everything made (namespaces, links, etcd members,
temp files) is removed in `finally` blocks, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH))

from delegates.kube_ipam.pods import ANNOTATIONS_CAPABILITY  # noqa: E402
from delegates.kube_ipam.records import PREFIX  # noqa: E402
from delegates.kube_ipam.store import STATS_ENV  # noqa: E402
from multipy.testing.daemon import DaemonProcess  # noqa: E402
from multipy.testing.etcd import ETCD_BIN, ETCDCTL_BIN, EtcdCluster, EtcdStartError  # noqa: E402
from multipy.testing.runtime import executable, invoke  # noqa: E402
from multipy.testing.topology import SEED_KUBE_IPAM  # noqa: E402

NAMESPACE = "default"
NETWORK = "k8snet2"
POOL = f"{PREFIX}pools/10.188.0.0-16/"
INFRA_IP = "10.250.0.1"
FIXED_FIRST = ipaddress.ip_address(SEED_KUBE_IPAM["fixedStart"])
FIXED_LAST = ipaddress.ip_address(SEED_KUBE_IPAM["fixedEnd"])
DYNAMIC = (ipaddress.ip_address(SEED_KUBE_IPAM["rangeStart"]), ipaddress.ip_address(SEED_KUBE_IPAM["rangeEnd"]))
ATTEMPTS = 6  # sandboxes per pod (kubelet makes a new one after a failed ADD)
RETRY_FOR = 120.0  # seconds a DEL is retried, with backoff: kubelet keeps the pod Terminating until one succeeds
CNI_TIMEOUT = 240  # kubelet's sandbox timeout: 4 minutes

# Published figures (issue 16, ../shared/notes/thick-mode.md, kube-ipam.md). Same question, a real cluster.
PUBLISHED = {
    "whereabouts": {
        "wall": "2,529 s (v0.6.2, pool with room); stalled at 845 of 1,000 when addresses = pods",
        "lock": "one cluster-wide lease serialises every ADD and DEL",
        "failures": "155 of 1,000 never started (pool = pods); 128 nodes x 16 networks: kubelet's 4-min timeout",
        "duplicates": "duplicates reported at scale (#110), hence the global lease",
    },
    "Spiderpool": {"wall": "182-207 s", "lock": "per-pool CRD updates", "failures": "not published",
                   "duplicates": "not published"},  # fmt: skip
}


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------- namespaces and links


def sh(*argv: str, tries: int = 1) -> str:
    for attempt in range(tries):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode == 0:
            return proc.stdout
        time.sleep(0.2 * (attempt + 1))
    raise BenchError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")


_libc = ctypes.CDLL("libc.so.6", use_errno=True)
CLONE_NEWNET = 0x40000000


def enter(path: str) -> None:
    """This process (its one thread, before any other starts) into the namespace at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise BenchError(f"setns {path}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


class Namespaces:
    """Network namespaces this run made; all removed by close()."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.made: set[str] = set()
        self.lock = threading.Lock()
        self.count = 0

    def add(self, kind: str) -> str:
        with self.lock:
            self.count += 1
            name = f"{self.tag}-{kind}{self.count}"
            self.made.add(name)
        sh("ip", "netns", "add", name)
        return name

    def remove(self, name: str) -> None:
        if os.path.exists(f"/run/netns/{name}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        with self.lock:
            self.made.discard(name)

    def close(self) -> None:
        for name in sorted(self.made):
            self.remove(name)


class InfraEtcd(EtcdCluster):
    """The 3 members, also listening on the infra bridge, so the nodes reach them."""

    def _argv(self, member):
        argv = super()._argv(member)
        at = argv.index("--listen-client-urls") + 1
        argv[at] = f"{argv[at]},http://{INFRA_IP}:{member.client_port}"
        return argv

    @property
    def node_url(self) -> str:
        return ",".join(f"http://{INFRA_IP}:{m.client_port}" for m in self.members)

    banked: dict[str, float] | None = None  # counters of members since restarted (which resets them)

    def member_metrics(self, index: int) -> dict[str, float]:
        """The KV gRPC calls one member served since it started: {"Txn": n, "Range": n, ...}."""
        totals: dict[str, float] = {}
        m = self.members[index]
        if not m.running:
            return totals
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{m.client_port}/metrics", timeout=5).read().decode()
        except OSError:
            return totals
        for line in text.splitlines():
            if line.startswith("grpc_server_handled_total{") and 'grpc_service="etcdserverpb.KV"' in line:
                method = line.split('grpc_method="')[1].split('"')[0]
                totals[method] = totals.get(method, 0) + float(line.rsplit(" ", 1)[1])
        return totals

    def bank(self, index: int) -> None:
        """Keeps a member's counters before it is killed."""
        self.banked = self.banked or {}
        for k, v in self.member_metrics(index).items():
            self.banked[k] = self.banked.get(k, 0) + v

    def metrics(self) -> dict[str, float]:
        """KV gRPC calls served by every member, those killed since included."""
        totals = dict(self.banked or {})
        for i in range(len(self.members)):
            for k, v in self.member_metrics(i).items():
                totals[k] = totals.get(k, 0) + v
        return totals

    def leader(self) -> tuple[int, dict[int, str]]:
        """The leader's member ID and every running member's ID -> client URL."""
        ids: dict[int, str] = {}
        leader = 0
        for m in self.members:
            if not m.running:
                continue
            out = json.loads(self.etcdctl("endpoint", "status", "-w", "json", endpoints=[m.client_url]))
            status = out[0]["Status"]
            ids[status["header"]["member_id"]] = m.client_url
            leader = status["leader"]
        return leader, ids


# ---------------------------------------------------------------- the cluster


@dataclass
class Node:
    index: int
    name: str
    state: str  # multus-cni's cniDir
    conf: dict = field(default_factory=dict)
    daemon: DaemonProcess | None = None  # --thick: `multipy daemon` in the node namespace


@dataclass
class Pod:
    name: str
    node: Node
    fixed: str | None  # the address a StatefulSet pod asks for
    uid: str = ""
    container_id: str = ""
    netns: str = ""
    ip: str = ""


class Cluster:
    def __init__(self, args, tmp: str) -> None:
        self.args, self.tmp = args, tmp
        self.tag = f"msc{os.getpid() % 100000}"
        self.namespaces = Namespaces(self.tag)
        self.etcd: InfraEtcd | None = None
        self.home_fd: int | None = None
        self.nodes: list[Node] = []
        self.stats_file = os.path.join(tmp, "kube-ipam-stats.jsonl")
        self.multus = executable("multus-cni")
        self.cni_env = {STATS_ENV: self.stats_file}
        self.lock = threading.Lock()
        self.samples: dict[str, list[float]] = {"ADD": [], "DEL": []}
        self.phase_samples: dict[str, dict[str, list[float]]] = {}
        self.failures: list[str] = []  # failed attempts (each retried)
        self.lost_pods: list[str] = []  # pods still without an address after every attempt
        self.events: list[str] = []
        self.fault_threads: list[threading.Thread] = []

    # -- set-up and tear-down

    def start(self) -> None:
        self.home_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        infra = self.namespaces.add("infra")
        sh("ip", "-n", infra, "link", "set", "lo", "up")
        sh("ip", "-n", infra, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", infra, "addr", "add", f"{INFRA_IP}/16", "dev", "br0")
        sh("ip", "-n", infra, "link", "set", "br0", "up")
        enter(f"/run/netns/{infra}")  # from here on, loopback is infra's: etcd, etcdctl, /metrics
        for i in range(self.args.nodes):
            name = self.namespaces.add("node")
            sh("ip", "-n", name, "link", "set", "lo", "up")
            sh("ip", "link", "add", f"h{i}", "type", "veth", "peer", "name", "ctl0", "netns", name)
            sh("ip", "link", "set", f"h{i}", "master", "br0", "up")
            sh("ip", "-n", name, "addr", "add", f"10.250.1.{i + 1}/16", "dev", "ctl0")
            sh("ip", "-n", name, "link", "set", "ctl0", "up")
            sh("ip", "-n", name, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p")
            sh("ip", "-n", name, "link", "set", "uplink0", "up")
            sh("ip", "-n", name, "link", "set", "uplink0p", "up")
            state = os.path.join(self.tmp, f"node{i}")
            os.makedirs(os.path.join(state, "bin"))
            self.nodes.append(Node(i, name, state))
        self.etcd = InfraEtcd(members=3)
        self.etcd.start()
        if self.args.thick:
            self.thick_start()
        for node in self.nodes:
            node.conf = self.conf(node)

    def thick_start(self) -> None:
        """A `multipy daemon` per node, in its namespace (the DaemonSet's hostNetwork pod), and the lone
        multus-shim a thick install writes; no thin fallback, so a request the daemon misses fails."""
        from multipy.cli.install_files import shim_launcher
        from multipy.shim import THIN_ENV

        self.multus = os.path.join(self.tmp, "bin", "multus-shim")
        os.makedirs(os.path.dirname(self.multus), exist_ok=True)
        with open(self.multus, "wb") as f:
            f.write(shim_launcher(sys.executable))
        os.chmod(self.multus, 0o755)
        self.cni_env[THIN_ENV] = os.path.join(self.tmp, "no-thin-fallback")
        for node in self.nodes:
            node.daemon = DaemonProcess(os.path.join(node.state, "daemon"), "--workers", str(2 * self.args.inflight),
                                        env={STATS_ENV: self.stats_file}, log_level="error", host_netns=node.name)  # fmt: skip
            node.daemon.start(timeout=120)

    def stop_daemons(self) -> None:
        """SIGTERM: each daemon drains and exits, appending its store counts."""
        for node in self.nodes:
            if node.daemon is not None:
                node.daemon.stop()

    def close(self) -> None:
        try:
            self.stop_daemons()
            if self.etcd is not None:
                self.etcd.close()
        finally:
            if self.home_fd is not None:
                try:
                    enter(f"/proc/self/fd/{self.home_fd}")
                finally:
                    os.close(self.home_fd)
            self.namespaces.close()

    def conf(self, node: Node) -> dict:
        ipam = {**json.loads(json.dumps(SEED_KUBE_IPAM)), "etcdConfig": {"etcdURL": self.etcd.node_url},
                "kubeConfig": os.path.join(self.tmp, "no-kubeconfig")}  # fmt: skip
        if node.daemon is not None:
            return {**self.thin_conf(node, ipam), "type": "multus-shim", "daemonSocketDir": node.daemon.socket_dir}
        return self.thin_conf(node, ipam)

    def thin_conf(self, node: Node, ipam: dict) -> dict:
        return {
            "cniVersion": "0.3.1", "name": "multus-scale", "type": "multus-cni",
            "cniDir": os.path.join(node.state, "cni"), "binDir": os.path.join(node.state, "bin"),
            "logLevel": "error", "logFile": os.path.join(node.state, "multipy.log"),
            "delegates": [
                {"name": "lo", "type": "loopback", "masterplugin": True},
                {"name": NETWORK, "type": "macvlan", "master": "uplink0", "mode": "bridge", "ipam": ipam,
                 "capabilities": {ANNOTATIONS_CAPABILITY: True}},
            ],
        }  # fmt: skip

    # -- kubelet

    def cni(self, command: str, pod: Pod, phase: str) -> tuple[bool, dict | None, str]:
        annotations = {"app": pod.name.rsplit("-", 1)[0]}
        if pod.fixed:
            annotations = {"kube-ipam.ip": pod.fixed, "kube-ipam.netmask": "255.255.0.0"}
        conf = {**pod.node.conf, "runtimeConfig": {ANNOTATIONS_CAPABILITY: annotations}}
        args = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={pod.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={pod.container_id};K8S_POD_UID={pod.uid}")  # fmt: skip
        start = time.perf_counter()
        try:
            out = invoke(self.multus, command, conf, container_id=pod.container_id, netns=f"/run/netns/{pod.netns}",
                         ifname="lo", cni_args=args, cni_path=os.path.join(pod.node.state, "bin"),
                         host_netns=pod.node.name, env=self.cni_env, timeout=CNI_TIMEOUT)  # fmt: skip
        except subprocess.TimeoutExpired:
            return False, None, f"{command} timed out after {CNI_TIMEOUT} s"
        ms = (time.perf_counter() - start) * 1000
        with self.lock:
            self.samples[command].append(ms)
            self.phase_samples.setdefault(phase, {"ADD": [], "DEL": []})[command].append(ms)
        if not out.ok:
            return False, None, (out.stdout + out.stderr).strip()[:600]
        return True, out.json, ""

    def run_pod(self, pod: Pod, phase: str) -> None:
        """Sandbox + ADD, retried as kubelet does (DEL of the failed sandbox, then a new one)."""
        for attempt in range(ATTEMPTS):
            pod.container_id = secrets.token_hex(32)
            pod.netns = self.namespaces.add("pod")
            ok, result, why = self.cni("ADD", pod, phase)
            if ok:
                # multus-cni returns the master's result (lo here); net1's address is read from the pod.
                links = json.loads(sh("ip", "-j", "-n", pod.netns, "addr", "show", "dev", "net1", tries=3))
                net1 = [a["local"] for link in links for a in link.get("addr_info", []) if a.get("family") == "inet"]
                if len(net1) != 1:
                    raise BenchError(f"ADD of {pod.name} exited 0 but net1 holds {net1}")
                pod.ip = net1[0]
                if pod.fixed and pod.ip != pod.fixed:
                    raise BenchError(f"{pod.name} asked for {pod.fixed}, got {pod.ip}")
                return
            with self.lock:
                self.failures.append(f"{phase} {pod.name} attempt {attempt + 1}: {why}")
            self.stop_pod(pod, phase)  # the failed sandbox's teardown, retried as any DEL
            time.sleep(min(0.5 * 4**attempt, 10))
        with self.lock:
            self.lost_pods.append(pod.name)

    def stop_pod(self, pod: Pod, phase: str) -> None:
        deadline, attempt = time.monotonic() + RETRY_FOR, 0
        while True:
            ok, _, why = self.cni("DEL", pod, phase)
            if ok:
                break
            attempt += 1
            with self.lock:
                self.failures.append(f"{phase} DEL {pod.name} attempt {attempt}: {why}")
            if time.monotonic() > deadline:
                break
            time.sleep(min(0.5 * 2**attempt, 10))
        if not ok:
            with self.lock:
                self.lost_pods.append(f"{pod.name} (DEL)")
        self.namespaces.remove(pod.netns)
        pod.ip = ""

    def phase(self, name: str, work: list[tuple], progress=None) -> float:
        """Runs (fn, pod) items, each on its pod's node, at most --inflight per node; returns seconds."""
        pools = {n.index: ThreadPoolExecutor(self.args.inflight, thread_name_prefix=f"node{n.index}")
                 for n in self.nodes}  # fmt: skip
        done = [0]
        errors: list[str] = []

        def wrap(fn, pod):
            try:
                fn(pod, name)
            except Exception as error:  # noqa: BLE001 - reported, and the run fails
                errors.append(f"{pod.name}: {error}\n{traceback.format_exc(limit=3)}")
            with self.lock:
                done[0] += 1
                count = done[0]
            if progress:
                progress(count, len(work))

        start = time.perf_counter()
        try:
            futures = [pools[pod.node.index].submit(wrap, fn, pod) for fn, pod in work]
            for f in futures:
                f.result()
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True)
        if errors:
            raise BenchError(f"{name}: {len(errors)} pods went wrong; first: {errors[0]}")
        return time.perf_counter() - start

    # -- faults

    def faults(self, total: int):
        """A progress hook: kill + restart a member at 1/3 of the phase, move the leader at 2/3."""
        fired = {"kill": False, "move": False}
        etcd = self.etcd

        def kill_restart():
            # The first endpoint of etcdURL: the member every new plugin process talks to first, so
            # calls in flight fail over (reads) or fail as outcome unknown (writes).
            victim = 0
            leader, ids = etcd.leader()
            role = "the leader" if ids.get(leader) == etcd.members[victim].client_url else "a follower"
            etcd.bank(victim)
            t = time.perf_counter()
            etcd.stop_member(victim, kill=True)
            self.events.append(f"member m{victim} ({role}, the first endpoint) killed (SIGKILL) at {time.strftime('%X')}")
            time.sleep(2)
            etcd.start_member(victim)
            self.events.append(f"member m{victim} restarted and healthy after {time.perf_counter() - t:.1f} s")

        def move():
            leader, ids = etcd.leader()
            target = next(mid for mid in ids if mid != leader)
            etcd.etcdctl("move-leader", f"{target:x}", endpoints=[ids[leader]])
            new, _ = etcd.leader()
            self.events.append(f"leader moved {leader:x} -> {new:x} (etcdctl move-leader) at {time.strftime('%X')}")

        def hook(count, _total):
            for name, at, fn in (("kill", total // 3, kill_restart), ("move", 2 * total // 3, move)):
                with self.lock:
                    if fired[name] or count < at:
                        continue
                    fired[name] = True
                thread = threading.Thread(target=self._guard, args=(fn,), daemon=True)
                self.fault_threads.append(thread)
                thread.start()

        return hook

    def _guard(self, fn) -> None:
        try:
            fn()
        except Exception as error:  # noqa: BLE001 - a fault that could not be injected is reported
            self.events.append(f"FAULT INJECTION FAILED: {error}")

    # -- what etcd holds

    def store(self) -> dict[str, dict]:
        return {k: (json.loads(v) if v.startswith("{") else {"raw": v}) for k, v in self.etcd.keys(PREFIX).items()}


def check_running(cluster: Cluster, pods: list[Pod], when: str) -> dict:
    """Duplicates among running pods, and etcd's leases against them."""
    by_ip: dict[str, list[str]] = {}
    for pod in pods:
        by_ip.setdefault(pod.ip, []).append(pod.name)
    duplicates = {ip: names for ip, names in by_ip.items() if len(names) > 1}
    keys = cluster.store()
    leases = {k.rpartition("/ips/")[2]: v for k, v in keys.items() if "/ips/" in k}
    owners = {k.split("/owners/")[1]: v for k, v in keys.items() if "/owners/" in k}
    problems = []
    running = {pod.container_id: pod for pod in pods}
    for pod in pods:
        lease = leases.get(pod.ip)
        if lease is None or lease.get("containerID") != pod.container_id:
            problems.append(f"{pod.name} has {pod.ip}, etcd says {lease}")
    for ip, lease in leases.items():
        cid = lease.get("containerID")
        if cid and cid not in running:
            problems.append(f"lease {ip} held by {cid[:12]} ({lease.get('pod')}), which is not running")
        if not cid and lease.get("kind") != "fixed":
            problems.append(f"lease {ip} without a container: {lease}")
    for owner in owners:
        if owner.split("/")[0] not in running:
            problems.append(f"owner index {owner[:20]}... of a container not running")
    return {"when": when, "running": len(pods), "duplicates": duplicates, "problems": problems,
            "leases": len(leases), "owners": len(owners)}  # fmt: skip


def stats(path: str) -> dict:
    totals: dict[str, dict[str, int]] = {}
    try:
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                t = totals.setdefault(rec.get("command", "?"), {"calls": 0, "reads": 0, "txns": 0, "lost": 0})
                t["calls"] += 1
                for k in ("reads", "txns", "lost"):
                    t[k] += rec.get(k, 0)
    except FileNotFoundError:
        pass
    return totals


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 100)) - 1))]


# ---------------------------------------------------------------- the run


def exhaustion(cluster: Cluster) -> dict:
    """One more pod into a range whose every address is taken: code 11 naming the range, nothing left."""
    node = cluster.nodes[0]
    small = json.loads(json.dumps(node.conf))
    ipam = small["delegates"][1]["ipam"]
    ipam.update(rangeStart="10.188.250.1", rangeEnd="10.188.250.2")
    saved, node.conf = node.conf, small
    try:
        pods = [Pod(f"full-{n}", node, None, uid=f"uid-full-{n}") for n in range(3)]
        for pod in pods[:2]:
            cluster.run_pod(pod, "exhaustion")
            if not pod.ip:
                raise BenchError(f"exhaustion set-up: {pod.name} got no address: {cluster.failures[-1:]}")
        extra = pods[2]
        extra.container_id, extra.netns = secrets.token_hex(32), cluster.namespaces.add("pod")
        ok, result, why = cluster.cni("ADD", extra, "exhaustion")
        error = json.loads(why) if why.startswith("{") else {"msg": why}
        links = sorted(json.loads(sh("ip", "-j", "-n", extra.netns, "link", "show")), key=str)
        left_links = [link["ifname"] for link in links if link["ifname"] != "lo"]
        keys = cluster.store()
        left_keys = [k for k, v in keys.items() if extra.container_id in k or v.get("containerID") == extra.container_id]
        cluster.cni("DEL", extra, "exhaustion")
        cluster.namespaces.remove(extra.netns)
        for pod in pods[:2]:
            cluster.stop_pod(pod, "exhaustion")
        return {"ok": ok, "code": error.get("code"), "msg": error.get("msg", ""), "links_left": left_links,
                "keys_left": left_keys, "result": result}  # fmt: skip
    finally:
        node.conf = saved


def run(args, tmp: str) -> dict:
    cluster = Cluster(args, tmp)
    out: dict = {"args": {k: v for k, v in vars(args).items()}}
    try:
        cluster.start()
        sts = max(1, round(args.pods * args.sts_share)) if args.sts_share > 0 else 0
        fixed = [str(FIXED_FIRST + n) for n in range(sts)]
        if sts and ipaddress.ip_address(fixed[-1]) > FIXED_LAST:
            raise BenchError(f"{sts} StatefulSet pods: more than fixedStart..fixedEnd holds")
        pods: list[Pod] = []
        every = args.pods // sts if sts else 0
        for n in range(args.pods):
            node = cluster.nodes[n % len(cluster.nodes)]
            if every and n % every == 0 and n // every < sts:
                pod = Pod(f"db-{n // every}", node, fixed[n // every])
            else:
                pod = Pod(f"web-{n}", node, None)
            pod.uid = f"uid-{pod.name}-1"
            pods.append(pod)
        m0 = cluster.etcd.metrics()
        wall: dict[str, float] = {}
        hook = cluster.faults(len(pods)) if args.faults else None
        wall["create"] = cluster.phase("create", [(cluster.run_pod, p) for p in pods], hook)
        for thread in cluster.fault_threads:  # a restart still under way ends before anything is checked
            thread.join(60)
        running = [p for p in pods if p.ip]
        out["after_create"] = check_running(cluster, running, "after create")
        first_ip = {p.name: p.ip for p in running if p.fixed}

        # churn: StatefulSet pods recreated on the next node; a share of the others replaced
        statefulset = [p for p in running if p.fixed]
        others = [p for p in running if not p.fixed]
        replaced = others[:: max(1, round(1 / args.churn))][: round(len(others) * args.churn)] if args.churn else []

        def recreate(pod: Pod, phase: str) -> None:
            cluster.stop_pod(pod, phase)
            pod.node = cluster.nodes[(pod.node.index + 1) % len(cluster.nodes)]
            pod.uid = pod.uid[:-1] + str(int(pod.uid[-1]) + 1)
            cluster.run_pod(pod, phase)

        fresh: list[Pod] = []

        def replace(pod: Pod, phase: str) -> None:
            cluster.stop_pod(pod, phase)
            new = Pod(f"{pod.name}-r", pod.node, None, uid=f"uid-{pod.name}-r")
            cluster.run_pod(new, phase)
            with cluster.lock:
                fresh.append(new)

        wall["churn"] = cluster.phase("churn", [(recreate, p) for p in statefulset] + [(replace, p) for p in replaced])
        running = [p for p in pods if p.ip] + [p for p in fresh if p.ip]
        out["after_churn"] = check_running(cluster, running, "after churn")
        moved = {p.name: (first_ip.get(p.name), p.ip) for p in statefulset if p.ip != first_ip.get(p.name)}
        out["sts_address_changed"] = moved
        wall["delete"] = cluster.phase("delete", [(cluster.stop_pod, p) for p in running])
        m1 = cluster.etcd.metrics()
        keys = cluster.store()
        leftovers = {}
        for key, value in keys.items():
            name = value.get("pod", "").partition("/")[2]
            ok = ("/ips/" in key and value.get("kind") == "fixed" and not value.get("containerID")
                  and name.startswith("db-"))  # fmt: skip
            if not ok:
                leftovers[key] = value
        out["left_in_etcd"] = {"fixed_reservations": len(keys) - len(leftovers), "other": leftovers}
        states = []
        for node in cluster.nodes:
            cni_dir = os.path.join(node.state, "cni")
            for root, _dirs, files in os.walk(cni_dir):
                if "internal" not in os.path.relpath(root, cni_dir).split(os.sep):
                    states += [os.path.join(root, f) for f in files]
        out["left_on_nodes"] = states
        if args.exhaust:
            out["exhaustion"] = exhaustion(cluster)
        out["wall_s"] = wall
        out["samples_ms"] = cluster.samples
        out["phase_samples_ms"] = cluster.phase_samples
        out["failures"] = cluster.failures
        out["lost_pods"] = cluster.lost_pods
        out["events"] = cluster.events
        cluster.stop_daemons()  # their counts are written when they exit
        out["store_stats"] = stats(cluster.stats_file)
        out["etcd_grpc"] = {k: m1.get(k, 0) - m0.get(k, 0) for k in set(m0) | set(m1)}
        out["pods_created"] = len(pods) + len(fresh)
        out["sts"] = len(statefulset)
        out["replaced"] = len(replaced)
    finally:
        cluster.close()
    return out


def verdict(out: dict) -> list[str]:
    """What must hold: nothing lost, duplicated or leaked."""
    bad = []
    for check in ("after_create", "after_churn"):
        c = out[check]
        if c["duplicates"]:
            bad.append(f"{c['when']}: duplicate addresses {c['duplicates']}")
        if c["problems"]:
            bad.append(f"{c['when']}: {len(c['problems'])} store problems, e.g. {c['problems'][:3]}")
    if out["lost_pods"]:
        bad.append(f"pods never started: {out['lost_pods'][:5]}")
    if out["sts_address_changed"]:
        bad.append(f"StatefulSet pods with another address after recreation: {out['sts_address_changed']}")
    if out["left_in_etcd"]["other"]:
        bad.append(f"left in etcd: {list(out['left_in_etcd']['other'].items())[:5]}")
    if out["left_in_etcd"]["fixed_reservations"] != out["sts"]:
        bad.append(f"{out['left_in_etcd']['fixed_reservations']} fixed reservations left, expected {out['sts']}")
    if out["left_on_nodes"]:
        bad.append(f"left in the nodes' cniDir: {out['left_on_nodes'][:5]}")
    ex = out.get("exhaustion")
    if ex is not None:
        if ex["ok"] or ex["code"] != 11 or "10.188.250.1-10.188.250.2" not in ex["msg"]:
            bad.append(f"exhaustion: expected code 11 naming 10.188.250.1-10.188.250.2, got {ex}")
        if ex["links_left"] or ex["keys_left"]:
            bad.append(f"exhaustion left {ex['links_left']} {ex['keys_left']}")
    if any(e.startswith("FAULT INJECTION FAILED") for e in out["events"]):
        bad.append("a fault could not be injected: " + "; ".join(out["events"]))
    return bad


def report(out: dict, file) -> None:
    def p(*a):
        print(*a, file=file)

    a = out["args"]
    wall = out["wall_s"]
    total = sum(wall.values())
    s = out["samples_ms"]
    st = out["store_stats"]
    adds, dels = st.get("ADD", {}), st.get("DEL", {})
    grpc = out["etcd_grpc"]
    n_add, n_del = len(s["ADD"]), len(s["DEL"])
    p(f"\nkube-ipam at scale, {'thick' if a.get('thick') else 'thin'} mode: {a['nodes']} nodes x {a['inflight']} in flight, {a['pods']} pods "
      f"({out['sts']} StatefulSet), churn {out['sts']} recreated + {out['replaced']} replaced, then DEL of all; "
      f"3 etcd members{' with faults' if a['faults'] else ''}")  # fmt: skip
    p(f"  {'':34}{'multipy (this run)':>30}   whereabouts (published)   Spiderpool (published)")
    row = lambda k, v, w="", sp="": p(f"  {k:34}{v:>30}   {w:24}  {sp}")  # noqa: E731
    row("total wall time", f"{total:.1f} s", "", "")
    row(f"  create {a['pods']} pods", f"{wall['create']:.1f} s", "2,529 s (pool with room)", "182-207 s")
    row("  churn", f"{wall['churn']:.1f} s")
    row("  DEL of everything", f"{wall['delete']:.1f} s")
    row("ADD p50 / p99 / max (ms)", f"{pct(s['ADD'], 50):.0f} / {pct(s['ADD'], 99):.0f} / {max(s['ADD']):.0f}",
        "not published", "not published")  # fmt: skip
    row("DEL p50 / p99 / max (ms)", f"{pct(s['DEL'], 50):.0f} / {pct(s['DEL'], 99):.0f} / {max(s['DEL']):.0f}",
        "not published", "not published")  # fmt: skip
    if adds.get("calls"):
        row("etcd txns per ADD (store)", f"{adds['txns'] / adds['calls']:.2f}", "lease + pool update", "")
        row("etcd reads per ADD (store)", f"{adds['reads'] / adds['calls']:.2f}")
        row("lost txns (conflicts) per ADD", f"{adds['lost'] / adds['calls']:.3f} ({adds['lost']} in all)",
            "lease retry every 500 ms", "")  # fmt: skip
    daemon = st.get("")  # thick: each daemon's totals, every command together
    if daemon:
        calls = max(1, n_add + n_del)
        row("etcd txns / reads per CNI call", f"{daemon['txns'] / calls:.2f} / {daemon['reads'] / calls:.2f}")
        row("lost txns (conflicts) in all", f"{daemon['lost']} ({daemon['lost'] / calls:.3f} per call)")
    if dels.get("calls"):
        row("etcd txns / reads per DEL", f"{dels['txns'] / dels['calls']:.2f} / {dels['reads'] / dels['calls']:.2f}")
        row("lost txns per DEL", f"{dels['lost'] / dels['calls']:.3f}")
    row("etcd gRPC Txn / Range served", f"{grpc.get('Txn', 0):.0f} / {grpc.get('Range', 0):.0f}",
        "", "")  # fmt: skip
    row("  per CNI call (ADD+DEL)", f"{grpc.get('Txn', 0) / max(1, n_add + n_del):.2f} / "
        f"{grpc.get('Range', 0) / max(1, n_add + n_del):.2f}")  # fmt: skip
    row("failed attempts (retried)", f"{len(out['failures'])}", "155 pods never started", "not published")
    row("pods never started", f"{len(out['lost_pods'])}", "(pool = pods)", "")
    dup = len(out["after_create"]["duplicates"]) + len(out["after_churn"]["duplicates"])
    row("duplicate addresses", f"{dup}", "reported (#110)", "not published")
    row("StatefulSet address kept", f"{out['sts'] - len(out['sts_address_changed'])} of {out['sts']}",
        "no (no name binding)", "yes (StatefulSet IPs)")  # fmt: skip
    left = out["left_in_etcd"]
    row("left in etcd after DEL of all", f"{left['fixed_reservations']} fixed + {len(left['other'])} other",
        "", "")  # fmt: skip
    row("serialisation", "none: one txn per address", "one cluster-wide lease", "per-pool CRD")
    for event in out["events"]:
        p(f"  fault: {event}")
    if out["failures"]:
        p(f"  failed attempts, first: {out['failures'][:3]}")
    for phase, ps in out["phase_samples_ms"].items():
        if ps["ADD"] or ps["DEL"]:
            p(f"  {phase:10} ADD n={len(ps['ADD'])} p50 {pct(ps['ADD'], 50):.0f} p99 {pct(ps['ADD'], 99):.0f} ms; "
              f"DEL n={len(ps['DEL'])} p50 {pct(ps['DEL'], 50):.0f} p99 {pct(ps['DEL'], 99):.0f} ms")  # fmt: skip
    ex = out.get("exhaustion")
    if ex:
        p(f"  exhaustion (range 10.188.250.1-10.188.250.2, 2 pods in it, a third ADD): code {ex['code']}: {ex['msg'][:220]}")
        p(f"    left behind: links {ex['links_left'] or 'none'}, etcd keys {ex['keys_left'] or 'none'}")
    how = "multus-shim` (its request served by the node's daemon)" if a.get("thick") else "multus-cni` (a process)"
    p(f"  latency: the whole `ip netns exec <node> {how}: macvlan, kube-ipam, loopback")
    p("  on a 2-vCPU machine running every node, etcd member and plugin process at once: it measures CPU")
    p("  contention as much as kube-ipam. The published figures are real clusters (pods started end to end).")
    bad = verdict(out)
    p("  verdict: " + ("OK: nothing lost, duplicated or leaked" if not bad else "FAILED\n    " + "\n    ".join(bad)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--pods", type=int, default=60)
    parser.add_argument("--inflight", type=int, default=3, help="CNI calls in flight per node (default 3)")
    parser.add_argument("--sts-share", type=float, default=0.1, help="share of StatefulSet pods (default 0.1)")
    parser.add_argument("--churn", type=float, default=0.2, help="share of the other pods replaced (default 0.2)")
    parser.add_argument("--faults", action="store_true", help="kill+restart an etcd member and move the leader")
    parser.add_argument("--exhaust", action="store_true", help="also check an ADD into a full range")
    parser.add_argument("--thick", action="store_true", help="thick mode: multus-shim and a `multipy daemon` per node")
    parser.add_argument("--json", action="store_true", help="the raw results as JSON on stdout, the table on stderr")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    if not (1 <= args.nodes <= 200 and args.pods >= 1 and args.inflight >= 1 and 0 <= args.sts_share <= 1
            and 0 <= args.churn <= 1):  # fmt: skip
        parser.error("--nodes 1..200, --pods and --inflight positive, shares within 0..1")
    for binary in (ETCD_BIN, ETCDCTL_BIN):
        if not os.access(binary, os.X_OK):
            parser.error(f"{binary} missing (install Debian's etcd-server and etcd-client)")
    tmp = tempfile.mkdtemp(prefix="multipy-scale-")
    try:
        out = run(args, tmp)
    except (BenchError, EtcdStartError) as err:
        print(f"benchmark aborted: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(out, sys.stderr if args.json else sys.stdout)
    if args.json:
        json.dump(out, sys.stdout, indent=1, default=str)
        print()
    return 0 if not verdict(out) else 2


if __name__ == "__main__":
    sys.exit(main())
