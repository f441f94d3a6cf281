"""Which networks a pod gets (multipy/k8s/resolve.py), against the local API through the real client:
clusterNetwork and defaultNetworks as NADs, the default-network override, systemNamespaces,
conf files in confDir, and the errors."""

from __future__ import annotations

import json

import pytest

from multipy.clients.kube import from_kubeconfig
from multipy.cni.errors import CNIError
from multipy.config import multus
from multipy.k8s.pod import ApiPod, PodRef
from multipy.k8s.resolve import PodNetworks
from multipy.orchestrator import plan

BRIDGE = {"cniVersion": "0.4.0", "type": "bridge", "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}
MACVLAN = {"cniVersion": "0.4.0", "type": "macvlan", "master": "eth0", "capabilities": {"ips": True},
           "ipam": {"type": "host-local", "subnet": "10.2.0.0/24"}}  # fmt: skip


@pytest.fixture
def cluster(kube_api, tmp_path):
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-file.conf").write_text(json.dumps({**BRIDGE, "name": "filenet"}))
    kube_api.add_nad("kube-system", "podnet", {**BRIDGE, "name": "podnet"})
    kube_api.add_nad("kube-system", "monitoring", {**MACVLAN, "name": "monitoring"})
    kube_api.add_nad("default", "alt", {**BRIDGE, "name": "alt"})
    kube_api.add_nad("default", "storage", {**MACVLAN, "name": "storage"})
    kube_api.add_nad("default", "fromfile", None)  # empty spec.config: the conf of that name in confDir
    (conf_dir / "fromfile.conf").write_text(json.dumps({**MACVLAN, "name": "fromfile"}))
    return kube_api, str(conf_dir)


def resolver(cluster, **keys):
    api, conf_dir = cluster
    doc = {"cniVersion": "1.0.0", "name": "multus", "type": "multus-cni", "kubeconfig": api.kubeconfig,
           "confDir": conf_dir, **keys}  # fmt: skip
    conf = multus.load(doc)
    client = from_kubeconfig(api.kubeconfig)
    return PodNetworks(conf, lambda: client)


def wanted(cluster, namespace="default", annotations=None, **keys):
    api, _ = cluster
    api.add_pod(namespace, "p", annotations=annotations)
    networks = resolver(cluster, **keys)
    ref = PodRef(namespace, "p")
    return networks.wanted(ref, networks.read_pod(ref))


def names(found):
    return [(w.source or w.network.name, w.master) for w in found]


def test_cluster_and_default_networks_are_nads_in_multus_namespace(cluster):
    found = wanted(cluster, clusterNetwork="podnet", defaultNetworks=["monitoring"])
    assert names(found) == [("kube-system/podnet", True), ("kube-system/monitoring", False)]
    ifnames = [a.ifname for a in plan.attachments(found, "eth0")]
    assert ifnames == ["eth0", "net1"]


def test_cluster_network_falls_back_to_confdir(cluster):
    found = wanted(cluster, clusterNetwork="filenet")
    assert names(found) == [("filenet", True)]


def test_system_namespaces_get_no_default_networks(cluster):
    found = wanted(cluster, namespace="kube-system", clusterNetwork="podnet", defaultNetworks=["monitoring"])
    assert names(found) == [("kube-system/podnet", True)]


def test_default_network_annotation_replaces_the_cluster_network(cluster):
    found = wanted(cluster, annotations={"v1.multus-cni.io/default-network": "alt"}, clusterNetwork="podnet")
    assert names(found) == [("default/alt", True)]


def test_networks_annotation_adds_nads_in_order_with_positional_names(cluster):
    found = wanted(cluster, annotations={"k8s.v1.cni.cncf.io/networks": "storage@st0, fromfile"},
                   clusterNetwork="podnet", defaultNetworks=["monitoring"])  # fmt: skip
    assert names(found) == [("kube-system/podnet", True), ("kube-system/monitoring", False),
                            ("default/storage", False), ("default/fromfile", False)]  # fmt: skip
    assert [a.ifname for a in plan.attachments(found, "eth0")] == ["eth0", "net1", "st0", "net3"]
    assert found[3].network.plugins[0]["type"] == "macvlan"  # read from confDir by the NAD's name


def test_conf_delegates_with_a_networks_annotation(cluster):
    delegates = [{**BRIDGE, "name": "a"}, {**MACVLAN, "name": "b"}]
    found = wanted(cluster, annotations={"k8s.v1.cni.cncf.io/networks": '[{"name": "storage", "ips": ["10.2.0.9/24"]}]'},
                   delegates=delegates)  # fmt: skip
    assert names(found) == [("a", True), ("b", False), ("default/storage", False)]
    assert found[2].runtime_config == {"ips": ["10.2.0.9/24"]}


@pytest.mark.parametrize(
    "annotations, message",
    [
        ({"k8s.v1.cni.cncf.io/networks": "nope"}, "NetworkAttachmentDefinition default/nope does not exist"),
        ({"k8s.v1.cni.cncf.io/networks": '[{"name": "alt", "ips": ["10.1.0.9/24"]}]'},
         "asks network default/alt for 'ips', but no plugin of its config declares the capability"),
        ({"k8s.v1.cni.cncf.io/networks": "storage@eth0"}, "interface name 'eth0' of network 'default/storage'"),
    ],
)
def test_bad_selections_are_code_7(cluster, annotations, message):
    with pytest.raises(CNIError) as info:
        found = wanted(cluster, annotations=annotations, clusterNetwork="podnet")
        plan.attachments(found, "eth0")
    assert info.value.code == 7
    assert message in info.value.msg


def test_unknown_cluster_network_names_both_places(cluster):
    with pytest.raises(CNIError) as info:
        wanted(cluster, clusterNetwork="ghost")
    assert info.value.code == 7
    assert "'ghost' is neither a NetworkAttachmentDefinition in namespace kube-system nor a conf in confDir" in info.value.msg


def test_nad_only_cluster_network_without_the_api_is_a_clear_error(cluster):
    api, conf_dir = cluster
    conf = multus.load({"cniVersion": "1.0.0", "name": "m", "type": "multus-cni", "kubeconfig": api.kubeconfig,
                        "confDir": conf_dir, "clusterNetwork": "podnet"})  # fmt: skip
    with pytest.raises(CNIError) as info:
        plan.attachments(conf, "eth0")
    assert "needs the pod (K8S_POD_NAMESPACE/K8S_POD_NAME) and a kubeconfig" in info.value.msg


def test_a_missing_cluster_network_without_kubeconfig_is_still_a_load_error(cluster):
    _, conf_dir = cluster
    with pytest.raises(CNIError) as info:
        multus.load({"cniVersion": "1.0.0", "name": "m", "type": "multus-cni", "confDir": conf_dir,
                     "clusterNetwork": "podnet"})  # fmt: skip
    assert "no network named 'podnet'" in info.value.msg


def test_deleted_pod_is_code_3(cluster):
    networks = resolver(cluster, clusterNetwork="podnet")
    with pytest.raises(CNIError) as info:
        networks.read_pod(PodRef("default", "gone"))
    assert info.value.code == 3


def test_select_reads_the_pod_kubelet_names_and_hands_back_its_api_uid(cluster):
    api, _ = cluster
    uid = api.add_pod("default", "web", annotations={"k8s.v1.cni.cncf.io/networks": "storage"})["metadata"]["uid"]
    networks = resolver(cluster, clusterNetwork="podnet")
    selected = networks.select(f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID={uid}")
    assert selected.pod == ApiPod(PodRef("default", "web", uid), uid)
    assert names(selected.wanted) == [("kube-system/podnet", True), ("default/storage", False)]


def test_select_without_a_pod_in_cni_args_is_none(cluster):
    networks = resolver(cluster, clusterNetwork="podnet")
    assert networks.select("IgnoreUnknown=1;K8S_POD_NAMESPACE=default") is None
    assert networks.select("") is None
