"""Writing network-status and events (multipy/k8s/report.py) against the local API, through the real client."""

from __future__ import annotations

import json

import pytest

from multipy.clients.kube import from_kubeconfig
from multipy.cni.errors import CNIError
from multipy.k8s.pod import ApiPod, PodRef
from multipy.k8s.report import Reporter
from multipy.log import Log, Settings
from multipy.orchestrator.record import Attachment, Record

RESULT = {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "mtu": 1400, "sandbox": "/x"}],
          "ips": [{"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 0}],
          "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]}  # fmt: skip


def record():
    attachment = Attachment({"name": "k8snet1", "type": "flannel"}, "eth0", True, result=RESULT)
    return Record("multus", "c1", "eth0", attachments=[attachment])


@pytest.fixture
def reporter(kube_api):
    client = from_kubeconfig(kube_api.kubeconfig)
    return Reporter(lambda: client, Log(Settings()))


def test_status_written_with_the_pods_uid(kube_api, reporter):
    uid = kube_api.add_pod("default", "web-1")["metadata"]["uid"]
    value = reporter.network_status(ApiPod(PodRef("default", "web-1", uid), uid), record(), "/nonexistent")
    written = kube_api.pod("default", "web-1")["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
    assert written == value
    assert json.loads(written) == [{"name": "k8snet1", "interface": "eth0", "ips": ["10.244.1.2"],
                                    "mac": "02:00:00:00:00:01", "mtu": 1400, "default": True, "dns": {},
                                    "gateway": ["10.244.1.1"]}]  # fmt: skip


def test_a_pod_recreated_during_add_is_not_annotated(kube_api, reporter):
    kube_api.add_pod("default", "db-2", uid="new-uid")
    with pytest.raises(CNIError) as info:
        reporter.network_status(ApiPod(PodRef("default", "db-2", "old-uid"), "old-uid"), record(), "/nonexistent")
    assert info.value.code == 3
    assert "deleted and recreated" in info.value.msg
    assert "k8s.v1.cni.cncf.io/network-status" not in (kube_api.pod("default", "db-2")["metadata"].get("annotations") or {})


def test_events_are_best_effort(kube_api, reporter):
    kube_api.add_pod("default", "web-1")
    kube_api.fail_with(503, methods=("POST",))
    reporter.added_interfaces(ApiPod(PodRef("default", "web-1"), ""), record())  # no exception
    kube_api.fail_with(None)
    reporter.added_interfaces(ApiPod(PodRef("default", "web-1"), ""), record())
    assert [e["message"] for e in kube_api.events] == ["Add eth0 [10.244.1.2/24] from k8snet1"]
