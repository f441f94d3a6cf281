"""The seed's delegate pair with the Go reference plugins: bridge + host-local (eth0), macvlan + host-local (net1)."""

from __future__ import annotations


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
