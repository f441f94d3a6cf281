"""ADD/CHECK/DEL of the seed topology in real namespaces, Go plugins as delegates."""

from __future__ import annotations

import pytest

from multipy.testing import kernel

from .conftest import records, reservations


def _add(cni_runtime, conf, pod, container_id="c1", **kwargs):
    return cni_runtime("ADD", conf, container_id=container_id, netns=f"/run/netns/{pod}", ifname="eth0", **kwargs)


def _del(cni_runtime, conf, pod, container_id="c1", **kwargs):
    return cni_runtime("DEL", conf, container_id=container_id, netns=f"/run/netns/{pod}", ifname="eth0", **kwargs)


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_add_wires_eth0_and_net1_and_del_removes_both(version, seed_conf, netns, node, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = seed_conf(version)

    added = _add(cni_runtime, conf, pod)
    assert added.ok, added.stdout + added.stderr

    # The runtime receives the master's (bridge) result in its version.
    result = added.json
    assert result["cniVersion"] == version
    assert [i["name"] for i in result["interfaces"]][0] == "cni0"
    assert result["interfaces"][2] == {
        "name": "eth0",
        "mac": kernel.links(pod)["eth0"]["address"],
        "sandbox": f"/run/netns/{pod}",
    }
    assert [ip["address"] for ip in result["ips"]] == ["10.244.1.2/24"]

    addrs = kernel.addresses(pod)
    assert addrs["eth0"] == ["10.244.1.2/24"]
    assert addrs["net1"] == ["10.188.1.0/16"]
    links = kernel.links(pod)
    assert links["eth0"]["mtu"] == 1400
    assert links["net1"]["linkinfo"]["info_kind"] == "macvlan"
    assert links["net1"]["linkinfo"]["info_data"]["mode"] == "bridge"
    routes = kernel.routes(pod)
    assert {"dst": "default", "gateway": "10.244.1.1", "dev": "eth0"} in [
        {k: r[k] for k in ("dst", "gateway", "dev") if k in r} for r in routes
    ]
    assert any(r["dst"] == "10.188.0.0/16" and r["dev"] == "net1" for r in routes)
    assert reservations(tmp_path, "k8snet1") == ["10.244.1.2"]
    assert reservations(tmp_path, "k8snet2") == ["10.188.1.0"]
    assert records(tmp_path) == ["multus-demo:c1:eth0"]

    if version != "0.3.1":  # CHECK exists from 0.4.0 on
        checked = cni_runtime("CHECK", dict(conf, prevResult=result), container_id="c1",
                              netns=f"/run/netns/{pod}", ifname="eth0")
        assert checked.ok, checked.stdout

    deleted = _del(cni_runtime, dict(conf, prevResult=result), pod)
    assert deleted.ok, deleted.stdout + deleted.stderr
    assert set(kernel.links(pod)) == {"lo"}
    assert reservations(tmp_path, "k8snet1") == []
    assert reservations(tmp_path, "k8snet2") == []
    assert records(tmp_path) == []
    assert not [name for name in kernel.links(node.name) if name.startswith("veth")]

    again = _del(cni_runtime, conf, pod)
    assert again.ok, again.stdout
    assert again.stdout == ""


def test_del_without_netns_still_frees_addresses(seed_conf, netns, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = seed_conf()
    assert _add(cni_runtime, conf, pod).ok
    deleted = cni_runtime("DEL", conf, container_id="c1", ifname="eth0")  # no CNI_NETNS, as after a reboot
    assert deleted.ok, deleted.stdout
    assert reservations(tmp_path, "k8snet1") == reservations(tmp_path, "k8snet2") == []
    assert records(tmp_path) == []


def test_del_without_record_uses_current_config(seed_conf, netns, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = seed_conf()
    assert _add(cni_runtime, conf, pod).ok
    (tmp_path / "cache" / "multus-demo:c1:eth0").write_text("{ torn write")
    deleted = _del(cni_runtime, conf, pod)
    assert deleted.ok, deleted.stdout
    assert set(kernel.links(pod)) == {"lo"}
    assert reservations(tmp_path, "k8snet1") == reservations(tmp_path, "k8snet2") == []
    assert records(tmp_path) == []


def test_del_after_config_broke_works_from_the_record(seed_conf, netns, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = seed_conf()
    assert _add(cni_runtime, conf, pod).ok
    broken = dict(conf, delegates=[{"name": "gone", "type": "nosuch"}], surprise=True)
    deleted = _del(cni_runtime, broken, pod)
    assert deleted.ok, deleted.stdout
    assert set(kernel.links(pod)) == {"lo"}
    assert reservations(tmp_path, "k8snet2") == []


def test_two_pods_share_the_bridge_and_reach_each_other_over_net1(seed_conf, netns, cni_runtime, tmp_path):
    conf = seed_conf()
    pods = [netns("pod"), netns("pod")]
    for index, pod in enumerate(pods):
        assert _add(cni_runtime, conf, pod, container_id=f"c{index}").ok
    peer = kernel.addresses(pods[1])["net1"][0].split("/")[0]
    ping = __import__("subprocess").run(
        ["ip", "netns", "exec", pods[0], "ping", "-c", "1", "-W", "2", peer], capture_output=True, text=True
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr
    for index, pod in enumerate(pods):
        assert _del(cni_runtime, conf, pod, container_id=f"c{index}").ok
    assert reservations(tmp_path, "k8snet2") == []


def test_parallel_pods_do_not_interfere(seed_conf, netns, cni_runtime, tmp_path):
    """The runtime handles different pods at once: records and addresses stay per pod."""
    from concurrent.futures import ThreadPoolExecutor

    conf = seed_conf()
    pods = {f"c{i}": netns("pod") for i in range(8)}

    def cycle(command):
        def run(item):
            cid, pod = item
            return cni_runtime(command, conf, container_id=cid, netns=f"/run/netns/{pod}", ifname="eth0")
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(run, pods.items()))

    added = cycle("ADD")
    assert all(o.ok for o in added), [o.stdout for o in added if not o.ok]
    net1 = {kernel.addresses(pod)["net1"][0] for pod in pods.values()}
    eth0 = {kernel.addresses(pod)["eth0"][0] for pod in pods.values()}
    assert len(net1) == len(eth0) == 8
    assert len(records(tmp_path)) == 8

    deleted = cycle("DEL")
    assert all(o.ok for o in deleted), [o.stdout for o in deleted if not o.ok]
    assert records(tmp_path) == []
    assert reservations(tmp_path, "k8snet1") == reservations(tmp_path, "k8snet2") == []
