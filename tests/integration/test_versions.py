"""What the runtime receives, per spec version, through the real topology; GC and STATUS."""

from __future__ import annotations

import pytest

from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.testing import kernel

from .conftest import records, reservations


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_runtime_gets_the_masters_result_in_its_own_version(version, seed_conf, netns, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = seed_conf(version, delegate_version="1.0.0")  # the Go plugins speak up to 1.0.0
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")

    added = cni_runtime("ADD", conf, **args)

    assert added.ok, added.stdout + added.stderr
    result = added.json
    assert result["cniVersion"] == version
    eth0_mac = kernel.links(pod)["eth0"]["address"]
    if version in ("0.1.0", "0.2.0"):
        assert result["ip4"] == {
            "ip": "10.244.1.2/24",
            "gateway": "10.244.1.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
        }
        assert "interfaces" not in result and "ips" not in result
    else:
        assert result["interfaces"][2] == {"name": "eth0", "mac": eth0_mac, "sandbox": f"/run/netns/{pod}"}
        ip = {"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 2}
        if version.startswith("0."):
            ip["version"] = "4"
        assert result["ips"] == [ip]
        assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]

    deleted = cni_runtime("DEL", conf, **args)
    assert deleted.ok, deleted.stdout
    assert reservations(tmp_path, "k8snet1") == reservations(tmp_path, "k8snet2") == []


def test_gc_removes_only_attachments_the_runtime_no_longer_has(seed_conf, netns, cni_runtime, tmp_path):
    conf = seed_conf("1.1.0", delegate_version="1.0.0")
    live, stale = netns("pod"), netns("pod")
    assert cni_runtime("ADD", conf, container_id="live", netns=f"/run/netns/{live}", ifname="eth0").ok
    assert cni_runtime("ADD", conf, container_id="stale", netns=f"/run/netns/{stale}", ifname="eth0").ok

    gc_conf = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "live", "ifname": "eth0"}]})
    collected = cni_runtime("GC", gc_conf)

    assert collected.ok, collected.stdout
    assert collected.stdout == ""
    assert records(tmp_path) == ["multus-demo:live:eth0"]
    assert reservations(tmp_path, "k8snet1") == ["10.244.1.2"]
    assert reservations(tmp_path, "k8snet2") == ["10.188.1.0"]
    assert set(kernel.links(stale)) == {"lo"}
    assert {"eth0", "net1"} <= set(kernel.links(live))
    assert cni_runtime("DEL", conf, container_id="live", netns=f"/run/netns/{live}", ifname="eth0").ok


def test_gc_rejects_a_malformed_valid_list(seed_conf, cni_runtime):
    conf = dict(seed_conf("1.1.0", delegate_version="1.0.0"), **{"cni.dev/valid-attachments": [{"ifname": 3}]})
    collected = cni_runtime("GC", conf)
    assert collected.json["code"] == 7
    assert "cni.dev/valid-attachments[0]" in collected.json["msg"]


def test_status_follows_the_readiness_indicator_file(seed_conf, cni_runtime, tmp_path):
    ready = tmp_path / "ready"
    conf = seed_conf("1.1.0", delegate_version="1.0.0", readinessindicatorfile=str(ready))

    down = cni_runtime("STATUS", conf)
    assert down.returncode == 1
    assert down.json["code"] == 50
    assert str(ready) in down.json["msg"]

    ready.touch()
    assert cni_runtime("STATUS", conf).ok


def test_add_waits_a_bounded_time_for_readiness(seed_conf, netns, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = seed_conf(readinessindicatorfile=str(tmp_path / "never"), readinessTimeout=0.5)
    added = cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")
    assert added.json["code"] == 11
    assert "did not appear within 0.5s" in added.json["msg"]
    assert set(kernel.links(pod)) == {"lo"}
    assert records(tmp_path) == []
    # DEL never waits for readiness.
    assert cni_runtime("DEL", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0").ok


def test_check_fails_when_a_delegate_lost_its_interface(seed_conf, netns, cni_runtime):
    pod = netns("pod")
    conf = seed_conf("1.0.0")
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")
    added = cni_runtime("ADD", conf, **args)
    assert added.ok
    __import__("subprocess").run(["ip", "-n", pod, "link", "del", "net1"], check=True)

    checked = cni_runtime("CHECK", dict(conf, prevResult=added.json), **args)

    assert checked.returncode == 1
    assert 'delegate "k8snet2" (macvlan on net1) CHECK failed' in checked.json["msg"]
    assert cni_runtime("DEL", conf, **args).ok


def test_check_without_an_add_is_an_error(seed_conf, netns, cni_runtime):
    pod = netns("pod")
    checked = cni_runtime("CHECK", seed_conf("1.0.0"), container_id="c9", netns=f"/run/netns/{pod}", ifname="eth0")
    assert checked.json["code"] == 103
    assert "no attachment record for container c9" in checked.json["msg"]
