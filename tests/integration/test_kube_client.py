"""The Kubernetes client through the real `kubernetes` library and a kubeconfig, against the local API server.

Also checks that the local API server answers as kube-apiserver does where clients can tell.
"""

from __future__ import annotations

import http.client
import json
import time

import pytest

from multipy.clients.kube import KubeError, KubeNotFound, KubeUnauthorized, KubeUnavailable, from_kubeconfig

NETWORK_STATUS = "k8s.v1.cni.cncf.io/network-status"


@pytest.fixture
def kube(kube_api):
    with from_kubeconfig(kube_api.kubeconfig, timeout=2) as client:
        yield client


def test_get_pod_returns_the_api_json(kube, kube_api):
    made = kube_api.add_pod("db", "database-1", annotations={"kube-ipam.ip": "10.188.0.218"}, uid="uid-1")
    pod = kube.get_pod("db", "database-1")
    assert pod["metadata"]["uid"] == "uid-1"
    assert pod["metadata"]["annotations"] == {"kube-ipam.ip": "10.188.0.218"}
    assert pod["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    assert pod["metadata"]["creationTimestamp"].endswith("Z")
    assert (pod["kind"], pod["apiVersion"], pod["status"]["phase"]) == ("Pod", "v1", "Running")
    request = kube_api.requests[-1]
    assert (request.method, request.path) == ("GET", "/api/v1/namespaces/db/pods/database-1")


def test_list_pods_with_selectors(kube, kube_api):
    kube_api.add_pod("db", "database-1", labels={"app": "db"}, node_name="node-1")
    kube_api.add_pod("db", "database-2", labels={"app": "db"}, node_name="node-2")
    kube_api.add_pod("web", "web-1", labels={"app": "web"}, node_name="node-1")
    assert [p["metadata"]["name"] for p in kube.list_pods("db")] == ["database-1", "database-2"]
    assert [p["metadata"]["name"] for p in kube.list_pods(field_selector="spec.nodeName=node-1")] == ["database-1", "web-1"]
    assert [p["metadata"]["name"] for p in kube.list_pods("db", label_selector="app=db,app!=web")] == ["database-1", "database-2"]
    assert kube.list_pods("empty") == []
    with pytest.raises(KubeError, match="field label not supported: spec.bogus") as caught:
        kube.list_pods(field_selector="spec.bogus=1")
    assert caught.value.status == 400


def test_missing_pod_and_nad_are_not_found_naming_server_and_object(kube, kube_api):
    with pytest.raises(KubeNotFound) as caught:
        kube.get_pod("db", "database-9")
    assert str(caught.value) == f'get pod "db/database-9" on {kube_api.url}: HTTP 404: pods "database-9" not found'
    assert caught.value.reason == "NotFound"
    with pytest.raises(KubeNotFound, match=r'network-attachment-definitions.k8s.cni.cncf.io "macvlan-conf" not found'):
        kube.get_network_attachment_definition("db", "macvlan-conf")


def test_a_rejected_token_is_unauthorized_and_never_shown(kube, kube_api):
    kube_api.add_pod("db", "database-1")
    kube_api.reject_token()
    with pytest.raises(KubeUnauthorized) as caught:
        kube.get_pod("db", "database-1")
    assert caught.value.status == 401 and "Unauthorized" in str(caught.value)
    assert kube_api.token not in str(caught.value)
    kube_api.accept_token()
    assert kube.get_pod("db", "database-1")


def test_a_wrong_token_in_the_kubeconfig_is_unauthorized(kube_api, tmp_path):
    path = kube_api.write_kubeconfig(str(tmp_path / "other"), token="not-the-token")
    with from_kubeconfig(path) as client:
        with pytest.raises(KubeUnauthorized) as caught:
            client.get_pod("db", "x")
    assert "not-the-token" not in str(caught.value)


def test_missing_rbac_is_unauthorized_with_the_servers_words(kube, kube_api):
    kube_api.forbid()
    with pytest.raises(KubeUnauthorized, match='cannot patch resource "pods/status"') as caught:
        kube.patch_pod_status("db", "database-1", {NETWORK_STATUS: "[]"})
    assert caught.value.status == 403 and caught.value.reason == "Forbidden"


def test_api_down_is_unavailable_at_once_and_recovers(kube, kube_api):
    kube_api.add_pod("db", "database-1")
    kube.get_pod("db", "database-1")  # a pooled keep-alive connection exists
    kube_api.stop()
    start = time.monotonic()
    with pytest.raises(KubeUnavailable, match="connection refused") as caught:
        kube.get_pod("db", "database-1")
    assert time.monotonic() - start < 0.5
    assert kube_api.url in str(caught.value)
    kube_api.start()
    assert kube.get_pod("db", "database-1")["metadata"]["name"] == "database-1"


def test_a_slow_api_times_out_within_the_budget(kube_api):
    kube_api.add_pod("db", "database-1")
    kube_api.delay = 3
    with from_kubeconfig(kube_api.kubeconfig, timeout=0.5) as client:
        start = time.monotonic()
        with pytest.raises(KubeUnavailable, match=r"no answer within 0.5 s"):
            client.get_pod("db", "database-1")
        elapsed = time.monotonic() - start
    assert 0.45 < elapsed < 1.0
    assert len([r for r in kube_api.requests if r.path.endswith("/database-1")]) == 1  # tried once, no retries


@pytest.mark.parametrize("code", [500, 503, 429])
def test_server_errors_are_unavailable_and_not_retried(kube, kube_api, code):
    kube_api.fail_with(code)
    with pytest.raises(KubeUnavailable, match=f"HTTP {code}"):
        kube.get_pod("db", "database-1")
    assert len(kube_api.requests) == 1


def test_patch_pod_status_merges_annotations_through_the_status_subresource(kube, kube_api):
    made = kube_api.add_pod("db", "database-1", annotations={"kube-ipam.ip": "10.188.0.218", "old": "x"})
    pod = kube.patch_pod_status("db", "database-1", {NETWORK_STATUS: '[{"name":"k8s-pod-network"}]', "old": None})
    assert pod["metadata"]["annotations"] == {"kube-ipam.ip": "10.188.0.218", NETWORK_STATUS: '[{"name":"k8s-pod-network"}]'}
    assert int(pod["metadata"]["resourceVersion"]) > int(made["metadata"]["resourceVersion"])
    assert kube_api.pod("db", "database-1")["metadata"]["annotations"] == pod["metadata"]["annotations"]
    request = kube_api.requests[-1]
    assert (request.method, request.path, request.content_type) == (
        "PATCH", "/api/v1/namespaces/db/pods/database-1/status", "application/merge-patch+json",
    )  # fmt: skip
    with pytest.raises(KubeNotFound):
        kube.patch_pod_status("db", "gone", {NETWORK_STATUS: "[]"})


def test_get_and_list_network_attachment_definitions(kube, kube_api):
    conf = {"cniVersion": "0.3.1", "type": "macvlan", "master": "eth1"}
    kube_api.add_nad("db", "macvlan-conf", conf)
    kube_api.add_nad("other", "bridge-conf", '{"type":"bridge"}')
    nad = kube.get_network_attachment_definition("db", "macvlan-conf")
    assert (nad["apiVersion"], nad["kind"]) == ("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition")
    assert json.loads(nad["spec"]["config"]) == conf
    assert [n["metadata"]["name"] for n in kube.list_network_attachment_definitions("db")] == ["macvlan-conf"]
    assert kube_api.requests[-1].path == "/apis/k8s.cni.cncf.io/v1/namespaces/db/network-attachment-definitions"


def test_create_event_as_multus_does(kube, kube_api):
    pod = kube_api.add_pod("db", "database-1")
    event = kube.create_event("db", "database-1", "AddedInterface", "Add net1 [10.188.0.218/24] from db/macvlan-conf",
                              pod_uid=pod["metadata"]["uid"])  # fmt: skip
    assert event["metadata"]["name"].startswith("database-1.")
    (stored,) = kube_api.events
    assert stored["reason"] == "AddedInterface" and stored["type"] == "Normal"
    assert stored["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "db", "name": "database-1",
                                        "uid": pod["metadata"]["uid"]}  # fmt: skip
    assert kube_api.requests[-1].path == "/api/v1/namespaces/db/events"


def test_empty_names_are_refused_before_any_request(kube, kube_api):
    with pytest.raises(KubeError, match="empty namespace or name"):
        kube.get_pod("db", "")
    assert kube_api.requests == []


# -- the local API server's fidelity, seen from a plain HTTP client


def _raw(api, method, path, body=None, content_type="application/json", token=None):
    conn = http.client.HTTPConnection("127.0.0.1", int(api.url.rsplit(":", 1)[1]), timeout=5)
    headers = {"Authorization": f"Bearer {token or api.token}", "Content-Type": content_type}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, response.getheader("Content-Type"), payload


def test_fake_server_status_objects_match_kube_apiserver(kube_api):
    status, content_type, payload = _raw(kube_api, "GET", "/api/v1/namespaces/ns/pods/x")
    assert (status, content_type) == (404, "application/json")
    assert json.loads(payload) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods "x" not found', "reason": "NotFound", "details": {"name": "x", "kind": "pods"}, "code": 404,
    }  # fmt: skip
    assert json.loads(_raw(kube_api, "GET", "/api/v1/namespaces/ns/pods/x", token="bad")[2])["reason"] == "Unauthorized"
    assert _raw(kube_api, "GET", "/no/such/path")[::2] == (404, b"404 page not found\n")
    assert json.loads(_raw(kube_api, "DELETE", "/api/v1/namespaces/ns/events")[2])["code"] == 405
    kube_api.add_pod("ns", "x")
    assert json.loads(_raw(kube_api, "PATCH", "/api/v1/namespaces/ns/pods/x/status", {}, "text/plain")[2])["code"] == 415


def test_fake_server_json_patch_and_optimistic_updates(kube_api):
    pod = kube_api.add_pod("ns", "x", annotations={"a": "1"})
    ops = [{"op": "add", "path": "/metadata/annotations/k8s.v1.cni.cncf.io~1network-status", "value": "[]"},
           {"op": "remove", "path": "/metadata/annotations/a"}]  # fmt: skip
    status, _, payload = _raw(kube_api, "PATCH", "/api/v1/namespaces/ns/pods/x/status", ops, "application/json-patch+json")
    assert status == 200 and json.loads(payload)["metadata"]["annotations"] == {NETWORK_STATUS: "[]"}

    stale = dict(pod, metadata=dict(pod["metadata"], annotations={"b": "2"}))
    status, _, payload = _raw(kube_api, "PUT", "/api/v1/namespaces/ns/pods/x/status", stale)
    assert status == 409 and json.loads(payload)["reason"] == "Conflict"

    fresh = kube_api.pod("ns", "x")
    fresh["metadata"]["annotations"]["b"] = "2"
    fresh["spec"]["nodeName"] = "elsewhere"  # the status subresource ignores spec changes
    status, _, payload = _raw(kube_api, "PUT", "/api/v1/namespaces/ns/pods/x/status", fresh)
    stored = json.loads(payload)
    assert status == 200 and stored["metadata"]["annotations"]["b"] == "2" and stored["spec"]["nodeName"] == "node-1"


def test_fake_server_keeps_objects_across_restart_on_the_same_port(kube_api):
    kube_api.add_pod("ns", "x")
    url = kube_api.url
    kube_api.stop()
    assert not kube_api.running
    kube_api.start()
    assert kube_api.url == url
    assert _raw(kube_api, "GET", "/api/v1/namespaces/ns/pods/x")[0] == 200


# -- UID preconditions: a status write must never land on a recreated pod of the same name


def test_patch_pod_status_with_the_pods_uid(kube, kube_api):
    kube_api.add_pod("db", "database-2", uid="uid-new")
    pod = kube.patch_pod_status("db", "database-2", {NETWORK_STATUS: "[]"}, uid="uid-new")
    assert pod["metadata"]["uid"] == "uid-new" and pod["metadata"]["annotations"] == {NETWORK_STATUS: "[]"}
    assert kube_api.requests[-1].body == {"metadata": {"annotations": {NETWORK_STATUS: "[]"}, "uid": "uid-new"}}


def test_patch_pod_status_of_a_recreated_pod_is_refused_as_kube_apiserver_refuses_it(kube, kube_api):
    """database-2 deleted and recreated: the old incarnation's uid is immutable metadata to the new
    one. A patch carries no storage precondition, so kube-apiserver's answer is validation's 422."""
    kube_api.add_pod("db", "database-2", uid="uid-old", annotations={"a": "1"})
    kube_api.delete_pod("db", "database-2")
    before = kube_api.add_pod("db", "database-2", uid="uid-new", annotations={"a": "1"})
    with pytest.raises(KubeError) as caught:
        kube.patch_pod_status("db", "database-2", {NETWORK_STATUS: "[]"}, uid="uid-old")
    assert (caught.value.status, caught.value.reason) == (422, "Invalid")
    assert str(caught.value).endswith(
        'HTTP 422: Pod "database-2" is invalid: metadata.uid: Invalid value: "uid-old": field is immutable'
    )
    assert kube_api.pod("db", "database-2") == before  # nothing written, not even a new resourceVersion


@pytest.mark.parametrize("path", ["/api/v1/namespaces/db/pods/x", "/api/v1/namespaces/db/pods/x/status"])
def test_fake_server_uid_in_a_patch_is_validated_as_immutable(kube_api, path):
    kube_api.add_pod("db", "x", uid="uid-1")
    status, _, payload = _raw(kube_api, "PATCH", path, {"metadata": {"uid": "uid-0"}}, "application/merge-patch+json")
    assert status == 422
    assert json.loads(payload) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'Pod "x" is invalid: metadata.uid: Invalid value: "uid-0": field is immutable', "reason": "Invalid",
        "details": {"name": "x", "kind": "Pod", "causes": [
            {"reason": "FieldValueInvalid", "message": 'Invalid value: "uid-0": field is immutable', "field": "metadata.uid"}]},
        "code": 422,
    }  # fmt: skip
    # A JSON patch reaches the same check; the uid's own value passes, and so does removing it.
    ops = [{"op": "replace", "path": "/metadata/uid", "value": "uid-0"}]
    assert _raw(kube_api, "PATCH", path, ops, "application/json-patch+json")[0] == 422
    same = [{"op": "replace", "path": "/metadata/uid", "value": "uid-1"}, {"op": "add", "path": "/metadata/labels", "value": {"k": "v"}}]
    assert _raw(kube_api, "PATCH", path, same, "application/json-patch+json")[0] == 200
    assert _raw(kube_api, "PATCH", path, {"metadata": {"uid": None}}, "application/merge-patch+json")[0] == 200
    assert kube_api.pod("db", "x")["metadata"]["uid"] == "uid-1"


def test_fake_server_a_stale_resource_version_is_checked_before_the_uid(kube_api):
    kube_api.add_pod("db", "x", uid="uid-1")
    body = {"metadata": {"uid": "uid-0", "resourceVersion": "1"}}
    status, _, payload = _raw(kube_api, "PATCH", "/api/v1/namespaces/db/pods/x/status", body, "application/merge-patch+json")
    assert status == 409 and "the object has been modified" in json.loads(payload)["message"]


def test_fake_server_uid_in_an_update_is_a_storage_precondition(kube_api):
    kube_api.add_pod("db", "x", uid="uid-1")
    stale_incarnation = kube_api.pod("db", "x")
    stale_incarnation["metadata"]["uid"] = "uid-0"
    status, _, payload = _raw(kube_api, "PUT", "/api/v1/namespaces/db/pods/x/status", stale_incarnation)
    assert status == 409
    assert json.loads(payload)["message"] == (
        'Operation cannot be fulfilled on pods "x": StorageError: invalid object, Code: 4, Key: /registry/pods/db/x, '
        "ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: uid-0, UID in object meta: uid-1"
    )
    assert json.loads(payload)["reason"] == "Conflict"


# -- faults on some requests only


def test_fail_with_only_some_methods(kube, kube_api):
    kube_api.add_pod("db", "database-1")
    kube_api.fail_with(500, methods=("PATCH",))
    assert kube.get_pod("db", "database-1")["metadata"]["name"] == "database-1"
    assert kube.create_event("db", "database-1", "AddedInterface", "Add net1 [] from x")
    with pytest.raises(KubeUnavailable, match="HTTP 500: Internal error occurred: injected failure 500"):
        kube.patch_pod_status("db", "database-1", {NETWORK_STATUS: "[]"})
    kube_api.fail_with(503, methods="get")  # one method as a string, any case
    with pytest.raises(KubeUnavailable, match="HTTP 503"):
        kube.get_pod("db", "database-1")
    assert kube.patch_pod_status("db", "database-1", {NETWORK_STATUS: "[]"})
    kube_api.fail_with(None)
    assert kube.get_pod("db", "database-1")
    kube_api.fail_with(500)  # the default is still every request
    with pytest.raises(KubeUnavailable):
        kube.create_event("db", "database-1", "AddedInterface", "Add net1 [] from x")


def test_forbid_only_some_verbs_with_the_servers_words(kube, kube_api):
    kube_api.add_pod("db", "database-1")
    kube_api.add_nad("db", "macvlan-conf", {"type": "macvlan"})
    kube_api.forbid(verbs=("patch",))
    assert kube.get_pod("db", "database-1")
    assert kube.list_network_attachment_definitions("db")
    with pytest.raises(KubeUnauthorized) as caught:
        kube.patch_pod_status("db", "database-1", {NETWORK_STATUS: "[]"})
    assert caught.value.status == 403 and caught.value.reason == "Forbidden"
    assert str(caught.value).endswith(
        'HTTP 403: pods "database-1" is forbidden: User "system:serviceaccount:kube-system:multus" cannot patch '
        'resource "pods/status" in API group "" in the namespace "db"'
    )
    kube_api.forbid(verbs=["create", "list"])
    with pytest.raises(KubeUnauthorized, match='events is forbidden: User ".*" cannot create resource "events" in API group ""'):
        kube.create_event("db", "database-1", "AddedInterface", "Add net1 [] from x")
    with pytest.raises(KubeUnauthorized) as caught:
        kube.list_network_attachment_definitions("db")
    assert str(caught.value).endswith(
        'HTTP 403: network-attachment-definitions.k8s.cni.cncf.io is forbidden: User '
        '"system:serviceaccount:kube-system:multus" cannot list resource "network-attachment-definitions" '
        'in API group "k8s.cni.cncf.io" in the namespace "db"'
    )
    assert kube.get_network_attachment_definition("db", "macvlan-conf")  # get is not list
    kube_api.forbid(False)
    assert kube.patch_pod_status("db", "database-1", {NETWORK_STATUS: "[]"})


def test_fault_filters_refuse_typos(kube_api):
    with pytest.raises(ValueError, match="unknown verb.* pach"):
        kube_api.forbid(verbs=("pach",))
    with pytest.raises(ValueError, match="unknown HTTP method.* FETCH"):
        kube_api.fail_with(500, methods=("FETCH",))
    with pytest.raises(ValueError, match="none given"):
        kube_api.fail_with(500, methods=())


def test_fake_server_discovery_stays_readable_when_forbidden(kube_api):
    kube_api.forbid()
    assert _raw(kube_api, "GET", "/api")[0] == 200
    assert _raw(kube_api, "GET", "/apis")[0] == 200
    assert _raw(kube_api, "GET", "/api/v1/namespaces/db/pods")[0] == 403


def test_fake_server_forbidden_status_as_kube_apiserver_writes_it(kube_api):
    kube_api.forbid(verbs=("get",))
    status, _, payload = _raw(kube_api, "GET", "/apis/k8s.cni.cncf.io/v1/namespaces/db/network-attachment-definitions/m")
    assert status == 403
    assert json.loads(payload) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'network-attachment-definitions.k8s.cni.cncf.io "m" is forbidden: User '
                   '"system:serviceaccount:kube-system:multus" cannot get resource "network-attachment-definitions" '
                   'in API group "k8s.cni.cncf.io" in the namespace "db"',
        "reason": "Forbidden", "details": {"name": "m", "group": "k8s.cni.cncf.io", "kind": "network-attachment-definitions"},
        "code": 403,
    }  # fmt: skip
    status, _, payload = _raw(kube_api, "GET", "/api/v1/namespaces/db/pods/x/status")
    assert json.loads(payload)["details"] == {"name": "x", "kind": "pods"}
