"""What containerd does around a refused conf, through the multus-cni executable: the failed ADD,
then the DEL right after (with the netns), then Stop/RemovePodSandbox's DEL (netns gone: an empty
CNI_NETNS, no prevResult). Only the ADD may fail: a DEL with no record and nothing to undo succeeds
whatever the conf says, or kubelet never finishes terminating the pod."""

from __future__ import annotations

import os

import pytest

from multipy.testing import runtime

from .conftest import GO_PLUGINS, records

POD = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=u1"


def refused_conf(tmp_path) -> dict:
    bridge = {"name": "k8snet1", "type": "bridge", "bridge": "cni0", "isGateway": True,
              "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": str(tmp_path / "ipam")}}  # fmt: skip
    return {
        "cniVersion": "0.3.1", "name": "multus-demo", "type": "multus-cni", "cniDir": str(tmp_path / "cache"),
        "binDir": GO_PLUGINS, "logFile": str(tmp_path / "multipy.log"), "logLevel": "verbose",
        "logfile": "/var/log/multus.log",  # Go Multus's JSON decoding would take it; multipy refuses it
        "delegates": [bridge],
    }  # fmt: skip


def invoke(command: str, conf, netns: str = ""):
    return runtime.invoke(runtime.executable(), command, conf, container_id="c1", netns=netns, ifname="eth0",
                          cni_args=POD, cni_path=GO_PLUGINS)  # fmt: skip


def test_a_refused_conf_fails_add_and_never_blocks_the_dels_after_it(netns, tmp_path):
    pod = netns("pod")
    conf = refused_conf(tmp_path)

    added = invoke("ADD", conf, f"/run/netns/{pod}")
    assert added.returncode == 1 and added.json["code"] == 7
    assert "$.logfile: unknown key" in added.json["msg"]

    teardown = invoke("DEL", conf, f"/run/netns/{pod}")  # containerd's DEL right after the failed ADD
    assert teardown.ok and teardown.stdout == "", teardown.stdout

    removed = invoke("DEL", conf)  # StopPodSandbox/RemovePodSandbox: the netns is gone, no prevResult
    assert removed.ok and removed.stdout == "", removed.stdout

    assert records(tmp_path) == []
    assert not (tmp_path / "ipam").exists()  # no delegate ever ran
    cache = tmp_path / "cache"
    assert not cache.exists() or set(os.listdir(cache)) <= {"internal"}
    log = (tmp_path / "multipy.log").read_text()
    assert "no attachment record, so nothing was added" in log


@pytest.mark.parametrize(
    "conf",
    [
        {"cniVersion": "0.3.1", "name": "multus-demo", "delegates": "not a list"},
        {"cniVersion": "0.3.1", "name": "multus-demo", "type": "multus-cni"},  # no delegates at all
        {"cniVersion": "0.3.1", "name": "multus-demo", "type": "multus-cni", "clusterNetwork": 5},
        {"cniVersion": "0.3.1", "name": "multus-demo", "type": "multus-cni", "delegates": [{"type": "x"}]},
        {"cniVersion": "0.3.1", "type": "multus-cni", "delegates": [{"name": "a", "type": "x"}]},  # no name
        {"cniVersion": "9.9.9", "name": "multus-demo", "type": "multus-cni"},  # a version nobody supports
    ],
)
def test_del_with_no_record_succeeds_whatever_shape_the_conf_has(tmp_path, conf):
    conf = {**conf, "cniDir": str(tmp_path / "cache")}
    assert invoke("ADD", conf, "/run/netns/whatever").json["code"] in (1, 7)
    deleted = invoke("DEL", conf)
    assert deleted.ok and deleted.stdout == "", deleted.stdout
    assert records(tmp_path) == []
