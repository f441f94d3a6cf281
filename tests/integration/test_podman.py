"""multipy under podman 4 (CNI backend): one container on a multipy conflist, bridge master + macvlan.

podman passes neither the pod's namespace nor its UID nor annotations: CNI_ARGS holds only
IgnoreUnknown=1 and K8S_POD_NAME (the container's name). multipy then cannot name a pod, so even with
a kubeconfig it asks the API nothing (no networks annotation, no network-status) and wires exactly the
conf's delegates: eth0 and net1.
"""

from __future__ import annotations

import json

import pytest

from multipy.testing import kernel
from multipy.testing.podman import Podman

from .conftest import records, reservations

pytestmark = pytest.mark.root("runs podman in a private mount namespace")


@pytest.fixture
def podman(node):
    kit = Podman(netns=node.name)
    kit.start()
    try:
        kit.install_multipy()
        yield kit
    finally:
        kit.close()
        assert kit.cgroups_left() == []


def conflist(podman, tmp_path, node, kubeconfig: str) -> dict:
    bridge = {"name": "k8snet1", "type": "bridge", "masterplugin": True, "bridge": "cni0", "isGateway": True,
              "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": str(tmp_path / "ipam")}}  # fmt: skip
    macvlan = {"name": "k8snet2", "type": "macvlan", "master": node.uplink, "mode": "bridge",
               "ipam": {"type": "host-local", "subnet": "10.188.0.0/16", "rangeStart": "10.188.1.0",
                        "rangeEnd": "10.188.1.250", "dataDir": str(tmp_path / "ipam")}}  # fmt: skip
    multus = {"type": "multus-cni", "cniDir": str(tmp_path / "cache"), "binDir": podman.bin_dir,
              "logFile": str(tmp_path / "multipy.log"), "logLevel": "debug", "kubeconfig": kubeconfig,
              "delegates": [bridge, macvlan]}  # fmt: skip
    return {"cniVersion": "0.4.0", "name": "multipy", "plugins": [multus]}


def test_a_podman_container_on_a_multipy_network(podman, cluster, node, tmp_path):
    # A pod of the same name in the API, asking for one more network: podman cannot say which pod this is.
    cluster.api.add_pod("default", "web-1", annotations={"k8s.v1.cni.cncf.io/networks": "extra"})
    podman.write_conflist(conflist(podman, tmp_path, node, cluster.api.kubeconfig))
    assert "multipy" in podman.podman("network", "ls", "--format", "{{.Name}}").stdout.split()

    box = podman.run("web-1", "multipy")
    inside = podman.addresses(box)
    assert set(inside) == {"lo", "eth0", "net1"}, inside
    assert inside["eth0"][0].startswith("10.244.1.") and inside["net1"][0].startswith("10.188.1.")
    links = {link["ifname"]: link for link in json.loads(podman.in_container(box, "ip", "-j", "-d", "link").stdout)}
    assert links["net1"]["linkinfo"]["info_kind"] == "macvlan"
    # podman's own view: the master's result.
    networks = json.loads(podman.podman("inspect", "-f", "{{json .NetworkSettings.Networks}}", box.id).stdout)
    assert networks["multipy"]["IPAddress"] == inside["eth0"][0].split("/")[0]

    # What podman sent, as multipy recorded it: the container's name and nothing else of a pod.
    (record,) = [json.loads((tmp_path / "cache" / name).read_text()) for name in records(tmp_path)]
    text = json.dumps(record)
    assert "K8S_POD_NAME=web-1" in text and "K8S_POD_NAMESPACE" not in text and "K8S_POD_UID" not in text
    assert [r for r in cluster.api.requests if "/pods" in r.path] == []  # no pod to ask about
    assert "network-status" not in json.dumps(cluster.api.pod("default", "web-1"))
    assert len(reservations(tmp_path, "k8snet1")) == 1 and len(reservations(tmp_path, "k8snet2")) == 1

    podman.remove(box)
    assert podman.podman("ps", "-a", "-q").stdout.strip() == ""
    assert podman.libcni_cache() == []
    assert records(tmp_path) == []
    assert reservations(tmp_path, "k8snet1") == [] and reservations(tmp_path, "k8snet2") == []
    assert set(kernel.links(node.name)) <= {"lo", "uplink0", "uplink0p", "cni0"}
