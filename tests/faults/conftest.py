"""The fault-injection suite's world: a node namespace with real etcd, the seed's shape with multipy's
native delegates (bridge + host-local on eth0, macvlan + kube-ipam on net1), run through the real
`multus-cni` executable exactly as a runtime runs it, and the check that a node is clean.

Seeded: MULTIPY_FAULT_SEED replays a run (the seed is printed). MULTIPY_SOAK=1 (`make soak`)
multiplies the random runs. At the end the suite prints, per fault class, the runs, faults injected,
kill points hit, leaks and duplicate IPs found (the figures issue 13 asks for).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from multipy.net.netns import run_in
from multipy.testing import failpoints as fp
from multipy.testing import kernel
from multipy.testing.etcd import EtcdCluster
from multipy.testing.runtime import Outcome, executable

PREFIX = "/multipy/ipam/"
SOAK = os.environ.get("MULTIPY_SOAK", "") not in ("", "0")
SEED = int(os.environ.get("MULTIPY_FAULT_SEED") or random.SystemRandom().randrange(1 << 32))
BOUND = 30.0  # no CNI request of this suite may take longer than this (seconds)

TALLY = fp.Tally()


def pytest_report_header(config):
    return f"fault suite: MULTIPY_FAULT_SEED={SEED}{' (soak)' if SOAK else ''}"


def pytest_terminal_summary(terminalreporter):
    if not TALLY.classes:
        return
    tr = terminalreporter
    tr.section(f"fault injection (MULTIPY_FAULT_SEED={SEED})")
    for line in TALLY.lines():
        tr.write_line(line)
    path = os.environ.get("MULTIPY_FAULT_REPORT")
    if path:
        TALLY.dump(path)


@pytest.fixture
def rng(request) -> random.Random:
    # One stream per test, derived from the seed: a test replays alone with the same seed.
    return random.Random(f"{SEED}:{request.node.nodeid}")


def scaled(ci: int, soak: int) -> int:
    return soak if SOAK else ci


# -- the world ------------------------------------------------------------------------------------


@dataclass
class World:
    """One node, its services, its conf; every request of a test goes through `run`."""

    node: object
    netns_factory: object
    tmp: str
    etcd: EtcdCluster | None
    version: str = "1.1.0"
    extra_env: dict = field(default_factory=dict)
    pods: dict = field(default_factory=dict)  # container ID -> pod namespace name

    @property
    def where(self) -> str:
        return f"/run/netns/{self.node.name}"

    @property
    def cache(self) -> str:
        return os.path.join(self.tmp, "cache")

    @property
    def data(self) -> str:
        return os.path.join(self.tmp, "ipam")

    def conf(self, **overrides) -> dict:
        bridge = {
            "name": "k8snet1", "type": "bridge", "masterplugin": True, "bridge": "cni0", "isDefaultGateway": True,
            "mtu": 1400, "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": self.data},
        }  # fmt: skip
        net1 = {"name": "k8snet2", "type": "macvlan", "master": self.node.uplink, "mode": "bridge"}
        if self.etcd is not None:
            net1["ipam"] = {
                "type": "kube-ipam", "subnet": "10.188.0.0/16", "rangeStart": "10.188.1.0",
                "rangeEnd": "10.188.255.254", "gateway": "10.188.0.1", "etcdConfig": self.etcd.etcd_config(),
                "kubeConfig": "/nonexistent",
            }  # fmt: skip
        else:
            net1["ipam"] = {"type": "host-local", "subnet": "10.188.0.0/16", "rangeStart": "10.188.1.0",
                            "rangeEnd": "10.188.1.250", "dataDir": self.data}  # fmt: skip
        conf = {
            "cniVersion": self.version, "name": "multus-fault", "type": "multus-cni", "cniDir": self.cache,
            "binDir": "/nonexistent-bin", "logFile": os.path.join(self.tmp, "multipy.log"), "logLevel": "debug",
            "delegateTimeout": 10, "delegates": [bridge, net1],
        }  # fmt: skip
        conf.update(overrides)
        return conf

    def pod(self, cid: str) -> str:
        if cid not in self.pods:
            self.pods[cid] = self.netns_factory("fpod")
        return self.pods[cid]

    def argv_env(self, command: str, cid: str, env: dict | None, ifname: str = "eth0") -> tuple[list, dict]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "MULTIPY_FAILPOINTS"))}
        environ.update(self.extra_env)
        environ.update(env or {})
        environ.update(CNI_COMMAND=command, CNI_PATH="/nonexistent-bin")
        if command not in ("GC", "STATUS"):
            environ.update(CNI_CONTAINERID=cid, CNI_NETNS=f"/run/netns/{self.pod(cid)}", CNI_IFNAME=ifname)
        return ["ip", "netns", "exec", self.node.name, executable()], environ

    def start(self, command: str, cid: str = "", conf: dict | None = None, env: dict | None = None) -> subprocess.Popen:
        argv, environ = self.argv_env(command, cid, env)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ)
        proc.stdin.write(json.dumps(conf or self.conf()).encode())
        proc.stdin.close()
        proc.stdin = None  # written and closed: communicate() must not flush it
        return proc

    @staticmethod
    def finish(proc: subprocess.Popen, bound: float = BOUND) -> tuple[Outcome, float]:
        started = time.monotonic()
        try:
            out, err = proc.communicate(timeout=bound)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"a CNI request ran past the suite's bound of {bound:g} s") from None
        return Outcome(proc.returncode, out.decode(), err.decode()), time.monotonic() - started

    def run(self, command: str, cid: str = "", conf: dict | None = None, env: dict | None = None,
            bound: float = BOUND) -> Outcome:  # fmt: skip
        return self.finish(self.start(command, cid, conf, env), bound)[0]

    def gc(self, valid: list[str], env: dict | None = None) -> Outcome:
        conf = self.conf()
        conf["cni.dev/valid-attachments"] = [{"containerID": c, "ifname": "eth0"} for c in valid]
        return self.run("GC", conf=conf, env=env)

    # -- what a node holds

    def etcd_keys(self) -> dict[str, dict]:
        if self.etcd is None:
            return {}
        return {k: json.loads(v) for k, v in run_in(self.where, self.etcd.keys, PREFIX).items()}

    def held_ips(self) -> list[tuple[str, str]]:
        """(network, ip) of every address held now: host-local files and kube-ipam leases."""
        held = []
        if os.path.isdir(self.data):
            for net in sorted(os.listdir(self.data)):
                directory = os.path.join(self.data, net)
                if os.path.isdir(directory):
                    held += [(net, n) for n in os.listdir(directory) if n[0].isdigit()]
        held += [("kube-ipam", k.rsplit("/", 1)[1]) for k in self.etcd_keys() if "/ips/" in k]
        return held

    def leaks(self, live: tuple[str, ...] = ()) -> list[str]:
        """Everything on the node that no live attachment (`live`: container IDs) should hold."""
        found: list[str] = []
        for cid, pod in self.pods.items():
            if cid in live:
                continue
            extra = sorted(set(kernel.links(pod)) - {"lo"})
            if extra:
                found.append(f"links {extra} in pod {cid}'s namespace")
        veths = [n for n, link in kernel.links(self.node.name).items() if link.get("linkinfo", {}).get("info_kind") == "veth"
                 and n not in (self.node.uplink, self.node.peer)]  # fmt: skip
        if len(veths) != len(live):
            found.append(f"host veths {veths} for {len(live)} live pod(s)")
        records = sorted(n for n in os.listdir(self.cache) if n != "internal") if os.path.isdir(self.cache) else []
        wanted = {f"multus-fault:{cid}:eth0" for cid in live}
        if set(records) != wanted:
            found.append(f"cniDir holds {records}, expected {sorted(wanted)}")
        for top in (self.cache, self.data):
            for directory, _dirs, files in os.walk(top):
                temps = [f for f in files if f.endswith(".tmp") or ".tmp" in f]
                if temps:
                    found.append(f"temp files {temps} in {directory}")
        held = self.held_ips()
        expected = 2 * len(live) if self.etcd is not None else 2 * len(live)
        if len(held) != expected:
            found.append(f"{len(held)} addresses held for {len(live)} live pod(s): {held}")
        for key, value in self.etcd_keys().items():
            if "/owners/" in key:
                cid = key.split("/owners/")[1].split("/")[0]
                if cid not in live:
                    found.append(f"etcd owner {key}")
            elif "/ips/" in key and value.get("containerID") not in live and value.get("kind") != "fixed":
                found.append(f"etcd lease {key}: {value}")
        return found

    def duplicates(self) -> list[tuple[str, str]]:
        held = self.held_ips()
        return sorted({h for h in held if held.count(h) > 1})

    def scrub(self) -> None:
        """After a leak was counted: remove it by force, so the next run starts from a clean node."""
        for cid in list(self.pods):
            self.forget(cid)
        for name, link in kernel.links(self.node.name).items():
            if link.get("linkinfo", {}).get("info_kind") == "veth" and name not in (self.node.uplink, self.node.peer):
                subprocess.run(["ip", "-n", self.node.name, "link", "del", name], capture_output=True)
        for top in (self.cache, self.data):
            for directory, _dirs, files in os.walk(top):
                if os.path.basename(directory) == "internal":
                    continue
                for f in files:
                    if top == self.cache or f[0].isdigit() or ".tmp" in f:
                        os.unlink(os.path.join(directory, f))
        if self.etcd is not None:
            run_in(self.where, self.etcd.etcdctl, "del", "--prefix", PREFIX)

    def check(self, figures, live=(), what: str = "") -> list[str]:
        """Leaks and duplicate addresses now, counted in `figures`; a leak is scrubbed and returned."""
        leaks = self.leaks(tuple(live))
        dups = self.duplicates()
        figures.leaks += len(leaks)
        figures.duplicates += len(dups)
        problems = [f"{what}: {leak}" for leak in leaks] + [f"{what}: duplicate address {d}" for d in dups]
        if leaks and not live:
            self.scrub()
        return problems

    def forget(self, cid: str) -> None:
        """The runtime removed the sandbox: its namespace goes (after DEL, as kubelet does)."""
        pod = self.pods.pop(cid, None)
        if pod is not None:
            subprocess.run(["ip", "netns", "del", pod], capture_output=True)


@pytest.fixture
def world(node, netns, tmp_path):
    """The node with one etcd member listening inside it, and the conf of the suite."""
    etcd = EtcdCluster()
    try:
        run_in(f"/run/netns/{node.name}", etcd.start)
        yield World(node, netns, str(tmp_path), etcd)
    finally:
        etcd.close()


@pytest.fixture
def local_world(node, netns, tmp_path):
    """The same node without etcd: host-local on both networks (disk and delegate faults)."""
    yield World(node, netns, str(tmp_path), None)


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL `proc` after `delay` s unless it ended first; whether the kill landed mid-request."""
    try:
        proc.wait(delay)
        return False
    except subprocess.TimeoutExpired:
        pass
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    proc.wait()
    return proc.returncode == -signal.SIGKILL


def cni_error(outcome: Outcome) -> dict:
    """The CNI error document of a failed request; fails the test if there is none."""
    assert outcome.returncode == 1, f"expected a CNI error, got exit {outcome.returncode}: {outcome.stdout!r} {outcome.stderr[-400:]!r}"
    doc = outcome.json
    assert isinstance(doc, dict) and isinstance(doc.get("code"), int) and doc.get("msg"), outcome.stdout
    return doc
