"""`make demo`: the seed document (Networksecuritylayering.md) sections 3 to 5 on this one machine.

Every delegate is multipy's own: eth0 is the flannel master (bridge docker0 + host-local, fed by a
subnet.env), net1 the macvlan with kube-ipam, whose store is a real etcd and whose pod annotations
come from the local Kubernetes API. The pods are those of conf/db.yaml and conf/web.yaml; each
is a network namespace wired by the `multus-cni` executable exactly as containerd runs it, with
no plugin binary anywhere (see cluster.py and kubelet.py).

The output reads like the seed's walkthrough. Any failed step ends the demo with exit code 1
and the step's name; Ctrl-C (or SIGTERM) ends it with 130. Either way every namespace, process
and temp directory made here is removed first.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sys
import traceback
from contextlib import ExitStack

from cluster import FLANNEL_SUBNET, REPO, Cluster
from kubelet import CNIFailed, Kubelet, Pod
from manifests import ManifestError, PodTemplate, ingress_backend, pods, service

from multipy.clients.kube import KubeError
from multipy.k8s.selection import STATUS_ANNOTATION
from multipy.net.netns import run_in
from multipy.testing.etcd import EtcdStartError

FIXED_IP = "kube-ipam.ip"
FIXED_NETMASK = "kube-ipam.netmask"
EXPECTED_FAILURES = (CNIFailed, ManifestError, KubeError, EtcdStartError, RuntimeError, OSError)


class DemoError(RuntimeError):
    """What the seed promises did not happen."""


class Walkthrough:
    def __init__(self, stack: ExitStack):
        self.step = "setting up the node"
        self.cluster = Cluster(stack, tag=f"mpdemo{os.getpid()}")
        self.kubelet: Kubelet | None = None
        self.templates: dict[str, PodTemplate] = {}
        self.running: dict[str, Pod] = {}

    # The step is named before its header is printed: a Ctrl-C right after the header must be
    # reported against the step the reader sees.
    def section(self, title: str) -> None:
        self.step = title
        print(f"\n\n[{title}]", flush=True)

    def sub(self, title: str) -> None:
        self.step = title
        print(f"\n--- {title}", flush=True)

    # -- the walkthrough

    def run(self) -> None:
        self.section("2 Install CNI plugin and flannel: this machine as a one-node cluster")
        self.setup()
        self.section("3 Configure and create Pod")
        self.create_pods()
        self.section("4 Verify hierarchical network access")
        self.verify_access()
        self.section("5 Verify fixed IP communication")
        self.verify_fixed_ip()
        self.section("network-status, as read back from the API")
        statuses = self.print_network_status()
        check_network_status(statuses, self.running)
        self.section("clean up")
        self.tear_down()

    def setup(self) -> None:
        cluster = self.cluster
        cluster.start()
        print(f'node: network namespace {cluster.node}, macvlan master "uplink0" (a veth), loopback up')
        print(f"etcd (TLS): {cluster.etcd.url}   Kubernetes API: {cluster.api.url}   both on the node's loopback")
        print(f"flanneld's subnet.env: FLANNEL_NETWORK=10.244.0.0/16 FLANNEL_SUBNET={FLANNEL_SUBNET}")
        print(f"state directories: {', '.join(cluster.paths())}")
        print("plugin binaries on binDir and CNI_PATH: none (every delegate and IPAM is multipy's own)")

    def create_pods(self) -> None:
        self.sub("3.1 Create CNI configuration: conf/10-multus.conf, adapted to this node")
        conf, changes = self.cluster.conf()
        for change in changes:
            print(f"  {change}")
        self.kubelet = Kubelet(self.cluster, conf)
        for number, manifest in (("3.2", "db.yaml"), ("3.3", "web.yaml")):
            self.sub(f"{number} Create the pods of conf/{manifest} (each: CNI ADD through multus-cni)")
            print(f"# kubectl apply -f conf/{manifest}")
            for template in pods(REPO / "conf" / manifest):
                self.start(template)
        self.sub("3.4 Create service or ingress: conf/web-svc.yaml, conf/web-ingress.yaml")
        selector, port = service(REPO / "conf" / "web-svc.yaml")
        backend, backend_port = ingress_backend(REPO / "conf" / "web-ingress.yaml")
        print(f"web-svc selects {selector} on port {port}; web-ingress's default backend is {backend}:{backend_port}.")
        print("No kube-proxy or ingress controller runs here: in 4.1 the node reaches the selected pods' eth0.")
        self.get_pods()

    def verify_access(self) -> None:
        databases, webs = self.databases(), self.webs()
        self.sub("4.1 The user accesses the Web over eth0")
        selector, port = service(REPO / "conf" / "web-svc.yaml")
        selected = self.cluster.kube("list_pods", "default", label_selector=",".join(f"{k}={v}" for k, v in selector.items()))
        for item in selected:
            pod = self.running[item["metadata"]["name"]]
            self.kubelet.serve_http(pod, port, f"<h1>Welcome to {pod.name}</h1>\n")
        for item in selected:
            pod = self.running[item["metadata"]["name"]]
            url = f"http://{pod.address('eth0').split('/')[0]}:{port}"
            print(f"# curl {url}")
            print(self.kubelet.fetch_from_node(url), end="")
        self.sub("4.2 Web Pod accesses the database through a fixed IP (net1)")
        for pod in (databases[-1], *webs):
            self.kubelet.ip_address(pod)
        self.kubelet.route_over_net1(webs[0], self.fixed_ip(databases[-1]))
        for web in webs:
            self.kubelet.ping(web, self.fixed_ip(databases[-1]))
        self.sub("4.3 Pods in the database area communicate with each other through a fixed IP")
        self.kubelet.ip_address(databases[0])
        self.kubelet.ping(databases[-1], self.fixed_ip(databases[0]))
        self.kubelet.ping(databases[0], self.fixed_ip(databases[-1]))

    def verify_fixed_ip(self) -> None:
        old = self.databases()[-1]
        self.sub(f"5.1 Delete a database Pod: {old.name}")
        print(f"# kubectl delete pod {old.name}")
        self.kubelet.delete(old)
        del self.running[old.name]
        print(f'pod "{old.name}" deleted   (CNI DEL of container {old.container_id[:12]}, sandbox removed)')
        self.get_pods()
        self.print_reservation(self.fixed_ip(old))
        self.sub(f"5.2 Recreate {old.name}: a new UID, container and sandbox, the same net1 address")
        new = self.start(self.templates[old.name])
        for what, before, after in (("uid", old.uid, new.uid), ("container", old.container_id[:12], new.container_id[:12]),
                                    ("sandbox", old.netns, new.netns)):  # fmt: skip
            print(f"  {what:<9} {before} -> {after}")
        if new.uid == old.uid or new.container_id == old.container_id or new.netns == old.netns:
            raise DemoError(f"{new.name} was not recreated from scratch")
        self.get_pods()
        self.kubelet.ip_address(new)
        print(f"net1 before: {self.fixed_ip(old)}, after: {new.address('net1').split('/')[0]}")
        self.sub(f"5.3 Verify that {new.name} can be accessed normally")
        for source in (*self.webs(), self.databases()[0]):
            self.kubelet.ping(source, self.fixed_ip(new))

    def tear_down(self) -> None:
        print("# kubectl delete -f conf/web.yaml -f conf/db.yaml")
        for pod in list(self.running.values()):
            self.kubelet.delete(pod)
            del self.running[pod.name]
            print(f'pod "{pod.name}" deleted')

    # -- pods

    def start(self, template: PodTemplate) -> Pod:
        self.templates[template.name] = template
        pod = self.kubelet.run(template)
        self.running[pod.name] = pod
        eth0, net1 = pod.address("eth0"), pod.address("net1")
        print(f"{template.owner}: pod {pod.name} (uid {pod.uid[:8]}): eth0 {eth0 or '-'}, net1 {net1 or '-'}")
        if ipaddress.ip_interface(eth0 or "0.0.0.0/0") not in ipaddress.ip_network(FLANNEL_SUBNET, strict=False):
            raise DemoError(f"{pod.name}: eth0 has {eth0 or 'no address'}, not one of flannel's {FLANNEL_SUBNET}")
        wanted = expected_net1(template)
        if wanted and net1 != wanted:
            raise DemoError(f"{pod.name}: net1 has {net1 or 'no address'}, its {FIXED_IP} annotation asks for {wanted}")
        if not wanted and not net1.startswith("10.188."):
            raise DemoError(f"{pod.name}: net1 has {net1 or 'no address'}, not one of kube-ipam's 10.188.0.0/16")
        return pod

    def databases(self) -> list[Pod]:
        return [p for n, p in self.running.items() if expected_net1(self.templates[n])]

    def webs(self) -> list[Pod]:
        return [p for n, p in self.running.items() if not expected_net1(self.templates[n])]

    def fixed_ip(self, pod: Pod) -> str:
        return expected_net1(self.templates[pod.name]).split("/")[0]

    # -- reading the cluster back

    def get_pods(self) -> None:
        print("# kubectl get pod -o wide")
        print(f"{'NAME':<24}{'STATUS':<10}{'IP':<14}{'NODE':<8}NET1 (from the pod)")
        for item in self.cluster.kube("list_pods", "default"):
            name = item["metadata"]["name"]
            pod = self.running.get(name)
            eth0, net1 = (pod.address(i).split("/")[0] if pod else "<none>" for i in ("eth0", "net1"))
            print(f"{name:<24}{'Running' if pod else 'Pending':<10}{eth0:<14}{item['spec'].get('nodeName', ''):<8}{net1}")

    def print_reservation(self, address: str) -> None:
        """kube-ipam's record of a fixed address in etcd: bound to the pod's name, not its container."""
        keys = run_in(self.cluster.node_path, self.cluster.etcd.keys, "/multipy/ipam/pools/")
        for key, value in keys.items():
            if key.endswith(f"/ips/{address}"):
                print(f"# etcdctl get {key}\n{value}")

    def print_network_status(self) -> dict[str, str | None]:
        statuses = {}
        for name in self.running:
            annotations = self.cluster.kube("get_pod", "default", name)["metadata"].get("annotations") or {}
            statuses[name] = annotations.get(STATUS_ANNOTATION)
            print(f"# kubectl get pod {name} -o jsonpath='{{.metadata.annotations.k8s\\.v1\\.cni\\.cncf\\.io/network-status}}'")
            print(one_entry_per_line(statuses[name]) if statuses[name] is not None else "(not written)")
        return statuses

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "".join((self.cluster.workdir / "multipy.log").read_text().splitlines(True)[-lines:])
        except OSError:
            return ""


def expected_net1(template: PodTemplate) -> str:
    """The net1 address the pod's kube-ipam annotations ask for, with its prefix; "" for a dynamic one."""
    address = template.annotations.get(FIXED_IP)
    if not address:
        return ""
    netmask = template.annotations.get(FIXED_NETMASK, "255.255.0.0")
    return f"{address}/{ipaddress.ip_network(f'0.0.0.0/{netmask}').prefixlen}"


def one_entry_per_line(value: str) -> str:
    """The annotation's JSON list (written indented, ~14 lines per entry) with one line per entry."""
    try:
        entries = json.loads(value)
    except ValueError:
        return value
    if not isinstance(entries, list):
        return value
    return "[\n" + ",\n".join(f"  {json.dumps(e)}" for e in entries) + "\n]"


def check_network_status(statuses: dict[str, str | None], running: dict[str, Pod]) -> None:
    """multus-cni writes k8s.v1.cni.cncf.io/network-status on every pod it wired (the conf has a
    top-level kubeconfig): one entry per interface, eth0 the default, with the pod's addresses."""
    missing = sorted(name for name, value in statuses.items() if value is None)
    if missing:
        raise DemoError(f"no network-status annotation on {', '.join(missing)}")
    for name, value in statuses.items():
        try:
            entries = {e.get("interface"): e for e in json.loads(value)}
        except (ValueError, TypeError, AttributeError):
            raise DemoError(f"{name}: network-status is not a JSON list of objects: {value[:80]}") from None
        pod = running[name]
        for ifname in ("eth0", "net1"):
            address = pod.address(ifname).split("/")[0]
            if address not in (entries.get(ifname) or {}).get("ips", []):
                raise DemoError(f"{name}: network-status has no {ifname} entry with {address}: {value}")
        if entries["eth0"].get("default") is not True:
            raise DemoError(f"{name}: network-status does not mark eth0 as the default network: {value}")


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # the walkthrough and a failure on stderr stay in order in a pipe
    signal.signal(signal.SIGTERM, _interrupted)
    stack = ExitStack()
    walk: Walkthrough | None = None
    code, failure, log_tail = 0, "", ""
    try:
        walk = Walkthrough(stack)
        walk.run()
    except KeyboardInterrupt:
        code, failure = 130, "interrupted"
    except EXPECTED_FAILURES as error:
        code, failure = 1, str(error)
        if isinstance(error, CNIFailed):
            log_tail = walk.log_tail()  # read now: the log goes with the state directory
    except Exception as error:  # a bug in the demo: its traceback helps
        code, failure = 1, f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
    finally:
        # Cleanup runs to the end: a second Ctrl-C must not leave namespaces or etcd behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        step = walk.step if walk else "setting up"
        try:
            stack.close()
            print("\nremoved: every pod namespace, the node namespace, etcd, the API server, the state directories")
        except Exception as error:  # noqa: BLE001 - reported, and the exit code says so
            print(f"\ncleanup failed: {error}", file=sys.stderr)
            if not code:
                code, failure, step = 1, str(error), "clean up"
    if log_tail:
        print(f"\nthe end of multipy's log:\n{log_tail}", file=sys.stderr, end="")
    if code:
        print(f"\ndemo FAILED at step '{step}': {failure}", file=sys.stderr)
        return code
    print("\nseed verification passed: fixed IPs on net1 kept across a delete, web -> database and "
          "database <-> database reachable over net1, network-status on every pod")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
