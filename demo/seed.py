"""The seed document's sections 4 and 5 on this one machine, through the real CNI entry point.

A "node" namespace holds the macvlan master; each pod is a namespace. multus-cni
is executed as containerd executes it, once per pod. Until the native flannel and
kube-ipam delegates land, the seed's delegates are stood in for by the Go
reference plugins: bridge + host-local on eth0, macvlan + host-local on net1,
with the databases' fixed IPs requested through the runtime's `ips` capability.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import uuid

from multipy.net.netlink import Namespaces
from multipy.testing.runtime import executable, invoke, unique

GO_PLUGINS = "/usr/lib/cni"
DATABASES = {"database-1-0": "10.188.0.218", "database-2-0": "10.188.0.219"}
WEBS = ["web-5fd8684df7-8c7zb", "web-5fd8684df7-p9g8s"]


def conf(workdir: str) -> dict:
    return {
        "cniVersion": "0.3.1",
        "name": "multus-demo",
        "type": "multus-cni",
        "capabilities": {"ips": True},
        "cniDir": f"{workdir}/cache",
        "binDir": GO_PLUGINS,
        "logFile": f"{workdir}/multipy.log",
        "binaryDelegates": ["bridge", "host-local", "macvlan"],  # Go stand-ins until the native path lands
        "logLevel": "verbose",
        "delegates": [
            {"name": "k8snet1", "type": "bridge", "masterplugin": True, "bridge": "docker0",
             "isDefaultGateway": True, "mtu": 1400,
             "ipam": {"type": "host-local", "subnet": "10.244.5.0/24", "dataDir": f"{workdir}/ipam"}},
            {"name": "k8snet2", "type": "macvlan", "master": "uplink0", "mode": "bridge",
             "capabilities": {"ips": True},
             "ipam": {"type": "host-local", "dataDir": f"{workdir}/ipam",
                      # host-local serves a requested IP only from a range: the seed's dynamic
                      # range, then its fixed one (fixedStart..fixedEnd).
                      "ranges": [[{"subnet": "10.188.0.0/16", "rangeStart": "10.188.1.0",
                                   "rangeEnd": "10.188.255.254", "gateway": "10.188.0.1"},
                                  {"subnet": "10.188.0.0/16", "rangeStart": "10.188.0.10",
                                   "rangeEnd": "10.188.0.255", "gateway": "10.188.0.1"}]]}},
        ],
    }


class Demo:
    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.conf = conf(workdir)
        self.namespaces: list[str] = []
        self.pods: dict[str, tuple[str, str]] = {}  # pod -> (netns, container id)
        self.node = ""

    def step(self, text: str) -> None:
        print(f"\n### {text}", flush=True)

    def sh(self, *argv: str, check: bool = True) -> str:
        print("# " + " ".join(argv), flush=True)
        proc = subprocess.run(argv, capture_output=True, text=True)
        print(proc.stdout + proc.stderr, end="", flush=True)
        if check and proc.returncode != 0:
            raise SystemExit(f"step failed: {' '.join(argv)}")
        return proc.stdout

    def namespace(self, prefix: str) -> str:
        name = unique(prefix)
        Namespaces.create(name)
        self.namespaces.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    def setup_node(self) -> None:
        self.node = self.namespace("node-")
        for args in (["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
                     ["link", "set", "uplink0", "up"], ["link", "set", "uplink0p", "up"]):
            subprocess.run(["ip", "-n", self.node, *args], check=True)

    def cni(self, command: str, pod: str, fixed_ip: str | None = None) -> dict | None:
        netns, container_id = self.pods[pod]
        conf = dict(self.conf)
        if fixed_ip:
            conf["runtimeConfig"] = {"ips": [f"{fixed_ip}/16"]}
        outcome = invoke(executable(), command, conf, container_id=container_id, netns=f"/run/netns/{netns}",
                         ifname="eth0", cni_args=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}",
                         cni_path=GO_PLUGINS, host_netns=self.node)
        if not outcome.ok:
            raise SystemExit(f"CNI {command} for {pod} failed: {outcome.stdout}{outcome.stderr}")
        return outcome.json

    def start_pod(self, pod: str) -> None:
        self.pods[pod] = (self.namespace("pod-"), uuid.uuid4().hex)
        self.cni("ADD", pod, DATABASES.get(pod))

    def stop_pod(self, pod: str) -> None:
        self.cni("DEL", pod)
        netns, _ = self.pods.pop(pod)
        Namespaces.remove(netns)
        self.namespaces.remove(netns)

    def exec(self, pod: str, *argv: str) -> str:
        print(f"# kubectl exec -it {pod} -- {' '.join(argv)}", flush=True)
        proc = subprocess.run(["ip", "netns", "exec", self.pods[pod][0], *argv], capture_output=True, text=True)
        print(proc.stdout + proc.stderr, end="", flush=True)
        if proc.returncode != 0:
            raise SystemExit(f"step failed in {pod}: {' '.join(argv)}")
        return proc.stdout

    def net1(self, pod: str) -> str:
        out = subprocess.run(["ip", "-j", "-n", self.pods[pod][0], "-4", "addr", "show", "net1"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)[0]["addr_info"][0]["local"]

    def run(self) -> None:
        self.step("[3] a node with a macvlan master, and multus-cni with the seed's two delegates")
        self.setup_node()
        print(json.dumps({k: v for k, v in self.conf.items() if k == "delegates"}, indent=2))
        self.step("[3.2][3.3] create the database and web pods (CNI ADD through multus-cni)")
        for pod in [*DATABASES, *WEBS]:
            self.start_pod(pod)
            print(f"{pod}: eth0 and net1 wired")
        self.step("[4.2] database-2-0 has its fixed IP on net1")
        self.exec("database-2-0", "ip", "address")
        self.step("[4.2] a web pod reaches the database over net1")
        self.exec(WEBS[0], "ping", "-c", "3", "-i", "0.2", "-W", "2", DATABASES["database-2-0"])
        self.step("[4.3] database pods reach each other over net1")
        self.exec("database-1-0", "ip", "address")
        self.exec("database-2-0", "ping", "-c", "3", "-i", "0.2", "-W", "2", DATABASES["database-1-0"])
        self.step("[5.1] delete database-2-0 (CNI DEL), then recreate it with a new sandbox")
        before = self.net1("database-2-0")
        self.stop_pod("database-2-0")
        self.start_pod("database-2-0")
        after = self.net1("database-2-0")
        self.step("[5.2] the recreated pod keeps its net1 address")
        self.exec("database-2-0", "ip", "address")
        print(f"net1 before: {before}, after: {after}")
        if before != after or after != DATABASES["database-2-0"]:
            raise SystemExit("the recreated database pod did not keep its address")
        self.step("[5.3] the recreated database is reachable again")
        self.exec(WEBS[0], "ping", "-c", "3", "-i", "0.2", "-W", "2", after)

    def cleanup(self) -> None:
        for pod in list(self.pods):
            try:
                self.stop_pod(pod)
            except SystemExit as exc:
                print(f"cleanup: {exc}", file=sys.stderr)
        for name in reversed(self.namespaces):
            Namespaces.remove(name)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="multipy-demo-") as workdir:
        demo = Demo(workdir)
        try:
            demo.run()
        finally:
            demo.cleanup()
    print("\nseed verification passed: fixed IPs on net1, web -> database and database <-> database reachable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
