"""The seed's topology for tests: its kube-ipam block, and its delegate pair with the Go reference plugins
(bridge + host-local on eth0, macvlan + host-local on net1)."""

from __future__ import annotations

# The seed's kube-ipam block (conf/10-multus.conf, k8snet2's ipam) without kubeConfig, etcdConfig and
# resolvConf, which name the seed's cluster: a test adds its own. Copy it before changing anything in it.
SEED_KUBE_IPAM = {
    "name": "kube-subnet",
    "type": "kube-ipam",
    "subnet": "10.188.0.0/16",
    "fixedStart": "10.188.0.10",
    "fixedEnd": "10.188.0.255",
    "rangeStart": "10.188.1.0",
    "rangeEnd": "10.188.255.254",
    "gateway": "10.188.0.1",
    "routes": [{"dst": "0.0.0.0/0"}],
}


def seed_delegates(data_dir: str, macvlan_master: str, range_end: str = "10.188.1.250") -> list[dict]:
    """The seed's 10-multus.conf delegates, with bridge standing in for flannel and host-local for kube-ipam."""
    bridge = {
        "name": "k8snet1",
        "type": "bridge",
        "masterplugin": True,
        "bridge": "cni0",
        "isDefaultGateway": True,
        "mtu": 1400,
        "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": data_dir},
    }
    macvlan = {
        "name": "k8snet2",
        "type": "macvlan",
        "master": macvlan_master,
        "mode": "bridge",
        "ipam": {
            "type": "host-local",
            "subnet": "10.188.0.0/16",
            "rangeStart": "10.188.1.0",
            "rangeEnd": range_end,
            "dataDir": data_dir,
        },
    }
    return [bridge, macvlan]
