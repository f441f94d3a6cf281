"""What kubelet and containerd do for a pod's network on the demo node, and `kubectl exec` into it.

A pod's sandbox is a fresh network namespace and a new 64-hex container ID. multus-cni is
executed inside the node's namespace with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME=eth0,
CNI_PATH and kubelet's CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID,
K8S_POD_UID), the conf on stdin. Deleting a pod is CNI DEL, the namespace's removal, then the pod
object's removal from the API.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from cluster import Cluster, remove_namespace
from manifests import PodTemplate

from multipy.net.netns import run_in
from multipy.testing import kernel
from multipy.testing.runtime import executable, invoke

NAMESPACE = "default"


class CNIFailed(RuntimeError):
    pass


@dataclass
class Pod:
    name: str
    uid: str
    container_id: str
    netns: str  # its name under /run/netns
    running: bool = False

    def address(self, ifname: str) -> str:
        """The interface's IPv4 address with its prefix, "" when it has none."""
        return (kernel.addresses(self.netns, ifname).get(ifname) or [""])[0]


class Kubelet:
    def __init__(self, cluster: Cluster, conf: dict):
        self.cluster, self.conf = cluster, conf
        self._sandboxes: dict[str, int] = {}  # pod name -> sandboxes made for it

    def run(self, template: PodTemplate) -> Pod:
        """The pod is created in the API (by its controller), then its sandbox is wired by multus-cni."""
        created = self.cluster.api.add_pod(NAMESPACE, template.name, annotations=template.annotations or None,
                                           labels=template.labels)  # fmt: skip
        generation = self._sandboxes[template.name] = self._sandboxes.get(template.name, 0) + 1
        netns = self.cluster.add_namespace(f"{self.cluster.tag}-{template.name}-{generation}")
        pod = Pod(template.name, created["metadata"]["uid"], secrets.token_hex(32), netns)
        # Registered after the namespace's removal, so run before it: DEL while the sandbox exists.
        self.cluster.stack.callback(self._del_if_running, pod)
        pod.running = True  # from here on a DEL is owed, even if the ADD fails half-way
        self.cni("ADD", pod)
        return pod

    def delete(self, pod: Pod) -> None:
        """`kubectl delete pod`: the sandbox is torn down (CNI DEL), then the object goes."""
        self.cni("DEL", pod)
        pod.running = False
        remove_namespace(pod.netns)
        self.cluster.api.delete_pod(NAMESPACE, pod.name)

    def cni(self, command: str, pod: Pod) -> dict | None:
        args = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={NAMESPACE};K8S_POD_NAME={pod.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={pod.container_id};K8S_POD_UID={pod.uid}")  # fmt: skip
        outcome = invoke(executable("multus-cni"), command, self.conf, container_id=pod.container_id,
                         netns=f"/run/netns/{pod.netns}", ifname="eth0", cni_args=args,
                         cni_path=self.cluster.bin_dir, host_netns=self.cluster.node, timeout=60)  # fmt: skip
        if not outcome.ok:
            raise CNIFailed(f"multus-cni {command} for pod {pod.name} exited {outcome.returncode}: "
                            f"{(outcome.stdout + outcome.stderr).strip()}")  # fmt: skip
        return outcome.json

    def _del_if_running(self, pod: Pod) -> None:
        """Cleanup after a failure: the DEL kubelet would owe this sandbox."""
        if pod.running:
            pod.running = False
            try:
                self.cni("DEL", pod)
            except CNIFailed as error:
                print(f"cleanup: {error}", file=sys.stderr)

    # -- kubectl exec

    def exec(self, pod: Pod, *argv: str) -> subprocess.CompletedProcess:
        """Runs argv in the pod's namespace, printing it as the seed shows it, then its output."""
        print(f"# kubectl exec -it {pod.name} -- {' '.join(argv)}")
        done = subprocess.run(["ip", "netns", "exec", pod.netns, *argv], capture_output=True, text=True)
        print(done.stdout + done.stderr, end="", flush=True)
        return done

    def ip_address(self, pod: Pod) -> None:
        if self.exec(pod, "ip", "address").returncode != 0:
            raise RuntimeError(f"ip address in pod {pod.name} failed")

    def route_over_net1(self, source: Pod, address: str) -> None:
        """The database area is reached over net1, while eth0 keeps the pod's default route."""
        done = self.exec(source, "ip", "route", "get", address)
        if done.returncode != 0 or " dev net1 " not in done.stdout:
            raise RuntimeError(f"{source.name} does not route {address} over net1")

    def ping(self, source: Pod, address: str) -> None:
        done = self.exec(source, "ping", "-c", "3", "-i", "0.2", "-W", "2", address)
        if done.returncode != 0:
            raise RuntimeError(f"{source.name} cannot reach {address}")

    # -- a web server in a pod, for the user's side (eth0)

    def serve_http(self, pod: Pod, port: int, page: str) -> None:
        """A static page on the pod's eth0 address (the seed's nginx), stopped at cleanup."""
        root = self.cluster.workdir / "www" / pod.name
        root.mkdir(parents=True)
        (root / "index.html").write_text(page)
        address = pod.address("eth0").split("/")[0]
        server = subprocess.Popen(
            ["ip", "netns", "exec", pod.netns, sys.executable, "-m", "http.server", str(port), "--bind", address,
             "--directory", str(root)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.cluster.stack.callback(_stop, server)

    def fetch_from_node(self, url: str, wait: float = 5.0) -> str:
        """GET `url` from the node's namespace (where a NodePort or an ingress controller would be)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return run_in(self.cluster.node_path, _get, url)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as answer:
        return answer.read().decode()


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

