"""A local Kubernetes API server for tests and the demo: the real REST paths, JSON shapes and errors.

No API server can be installed on the test machines, so this one serves what multipy uses
(pods, pods/status, NetworkAttachmentDefinitions, events, discovery) from memory, over plain HTTP
on loopback, with bearer-token authentication. It writes a real kubeconfig, so clients go through
the real `kubernetes` library exactly as on a node. Errors are `Status` objects with the code,
reason and message wording of kube-apiserver. Faults for tests: stop()/start() (API down), a
rejected token (401), forbid() (403, on every verb or some), fail_with() (5xx, on every method or
some) and a response delay (timeouts).

    with KubeAPIServer() as api:
        api.add_pod("default", "database-1", annotations={"kube-ipam.ip": "10.188.0.218"})
        kube = multipy.clients.kube.from_kubeconfig(api.kubeconfig)
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

NAD_GROUP = "k8s.cni.cncf.io"
NAD_KIND = "NetworkAttachmentDefinition"
_NAME = r"(?P<name>[^/]+)"
_NS = r"(?P<ns>[^/]+)"
_UNAUTHENTICATED = {"/version", "/healthz", "/readyz", "/livez"}
_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"})
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: object


class ApiError(Exception):
    """Answered as a Kubernetes `Status`."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.details = code, reason, details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": str(self), "reason": self.reason, "code": self.code}  # fmt: skip
        if self.details:
            body["details"] = self.details
        return body


def _not_found(resource: str, name: str, group: str = "") -> ApiError:
    qualified = f"{resource}.{group}" if group else resource
    details = {"name": name, "kind": resource, **({"group": group} if group else {})}
    return ApiError(404, "NotFound", f'{qualified} "{name}" not found', details)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class KubeAPIServer:
    """In-memory pods, NADs and events behind the Kubernetes REST API, on 127.0.0.1."""

    def __init__(self, token: str | None = None, directory: str | None = None, user: str = "system:serviceaccount:kube-system:multus"):
        self.token = token or secrets.token_hex(16)
        self.user = user
        self._owns_directory = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="multipy-kube-")
        self.kubeconfig = f"{self.directory}/kubeconfig"
        self.delay = 0.0  # seconds before each answer
        self.requests: list[Request] = []
        self._accepted = self.token
        self._forbidden = False
        self._forbidden_verbs: frozenset[str] | None = None  # None: every verb
        self._failure: int | None = None
        self._failure_methods: frozenset[str] | None = None  # None: every method
        self._lock = threading.RLock()
        self._revision = itertools.count(1000)
        self._pods: dict[tuple[str, str], dict] = {}
        self._nads: dict[tuple[str, str], dict] = {}
        self._events: list[dict] = []
        self._port = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle

    def start(self) -> KubeAPIServer:
        """Serves (again, on the same port after stop(), so kubeconfigs stay valid)."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", self._port), _Handler, self)
        self._port = self._httpd.server_address[1]
        # A short poll interval: stop() waits for serve_forever to notice.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name="kube-api", daemon=True)
        self._thread.start()
        if not _exists(self.kubeconfig):
            self.write_kubeconfig(self.kubeconfig)
        return self

    def stop(self) -> None:
        """The API goes down: the port is closed and open connections are cut. Objects are kept."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.cut_connections()
        self._thread.join(5)

    def close(self) -> None:
        self.stop()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def write_kubeconfig(self, path: str, token: str | None = None, namespace: str = "default") -> str:
        """A kubeconfig for this server (JSON, which is YAML), with `token` or the server's own."""
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "multipy-test", "cluster": {"server": self.url}}],
            "users": [{"name": "multus", "user": {"token": token or self.token}}],
            "contexts": [{"name": "multipy-test", "context": {"cluster": "multipy-test", "user": "multus", "namespace": namespace}}],
            "current-context": "multipy-test",
        }  # fmt: skip
        with open(path, "w") as f:
            json.dump(config, f, indent=1)
        return path

    # -- faults

    def reject_token(self) -> None:
        """From now on the kubeconfig's token gets 401, as a revoked or expired one does."""
        self._accepted = secrets.token_hex(16)

    def accept_token(self) -> None:
        self._accepted = self.token

    def forbid(self, on: bool = True, verbs: Iterable[str] | str | None = None) -> None:
        """Authenticated requests get 403, as with missing RBAC rules: every request, or only
        those of `verbs` (Kubernetes verbs: get, list, create, update, patch, delete), e.g.
        ("patch",) for a role that may read pods but not write their status. Discovery stays
        readable, as the system:discovery role grants it to everyone authenticated."""
        self._forbidden = on
        self._forbidden_verbs = _checked(verbs, _VERBS, "verb", str.lower) if on else None

    def fail_with(self, code: int | None, methods: Iterable[str] | str | None = None) -> None:
        """Requests get this HTTP error (500, 503, 429...) as a Status: every request, or only
        those of `methods` (HTTP methods, e.g. ("PATCH",) so that status writes fail while
        reads work); None ends it."""
        self._failure = code
        self._failure_methods = _checked(methods, _METHODS, "HTTP method", str.upper) if code else None

    # -- objects

    def add_pod(
        self,
        namespace: str,
        name: str,
        annotations: dict[str, str] | None = None,
        uid: str | None = None,
        labels: dict[str, str] | None = None,
        node_name: str = "node-1",
        phase: str = "Running",
    ) -> dict:
        pod = {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": self._metadata(namespace, name, uid, annotations, labels),
            "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "busybox"}]},
            "status": {"phase": phase},
        }
        with self._lock:
            self._pods[(namespace, name)] = pod
            return copy.deepcopy(pod)

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            self._pods.pop((namespace, name), None)

    def terminate_pod(self, namespace: str, name: str) -> None:
        """The pod is being deleted: deletionTimestamp set, still readable (graceful termination)."""
        with self._lock:
            pod = self._pods[(namespace, name)]
            pod["metadata"]["deletionTimestamp"] = _now()
            pod["metadata"]["deletionGracePeriodSeconds"] = 30
            pod["metadata"]["resourceVersion"] = self._next_revision()

    def pod(self, namespace: str, name: str) -> dict | None:
        with self._lock:
            found = self._pods.get((namespace, name))
            return copy.deepcopy(found) if found else None

    @property
    def pods(self) -> dict[tuple[str, str], dict]:
        with self._lock:
            return copy.deepcopy(self._pods)

    def add_nad(self, namespace: str, name: str, config: str | dict | None = None, annotations: dict | None = None) -> dict:
        """A NetworkAttachmentDefinition; `config` (a conf or conflist, JSON text or dict) becomes spec.config."""
        spec = {} if config is None else {"config": config if isinstance(config, str) else json.dumps(config)}
        nad = {
            "apiVersion": f"{NAD_GROUP}/v1",
            "kind": NAD_KIND,
            "metadata": self._metadata(namespace, name, None, annotations, None),
            "spec": spec,
        }
        with self._lock:
            self._nads[(namespace, name)] = nad
            return copy.deepcopy(nad)

    def delete_nad(self, namespace: str, name: str) -> None:
        with self._lock:
            self._nads.pop((namespace, name), None)

    @property
    def events(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._events)

    def _metadata(self, namespace, name, uid, annotations, labels) -> dict:
        metadata = {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid4()),
            "resourceVersion": self._next_revision(),
            "creationTimestamp": _now(),
        }
        if labels:
            metadata["labels"] = dict(labels)
        if annotations:
            metadata["annotations"] = dict(annotations)
        return metadata

    def _next_revision(self) -> str:
        return str(next(self._revision))

    # -- request handling (called from the server's threads)

    def _serve(self, method: str, path: str, query: dict[str, str], headers, body: bytes) -> tuple[int, object]:
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip()
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body.decode("utf-8", "replace")
        with self._lock:
            self.requests.append(Request(method, path, query, content_type, parsed))
        if self.delay:
            self._stopping.wait(self.delay)
        if path in _UNAUTHENTICATED:
            return 200, _discovery(path)
        if headers.get("Authorization") != f"Bearer {self._accepted}":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if self._failure and (self._failure_methods is None or method in self._failure_methods):
            code = self._failure
            reason = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "Timeout"}.get(code, "InternalError")
            raise ApiError(code, reason, f"Internal error occurred: injected failure {code}")
        handler, match = _route(method, path)
        if handler is None:
            return 200, _discovery(path)
        verb = _verb(method, match)
        if self._forbidden and (self._forbidden_verbs is None or verb in self._forbidden_verbs):
            raise _forbidden(self.user, verb, match)
        if isinstance(parsed, str):
            raise ApiError(400, "BadRequest", f"the body of the request could not be decoded as JSON: {parsed[:80]!r}")
        with self._lock:
            return handler(self, match, query, content_type, parsed)

    # Handlers run under self._lock; each returns (HTTP code, JSON body).

    def _get_pod(self, match, query, content_type, body):
        return 200, self._existing_pod(match)

    def _list_pods(self, match, query, content_type, body):
        namespace = match.groupdict().get("ns")
        pods = [p for (ns, _), p in sorted(self._pods.items()) if namespace is None or ns == namespace]
        pods = _select(pods, query)
        return 200, self._list("PodList", "v1", pods, items_typed=False)

    def _patch_pod(self, match, query, content_type, body):
        pod = self._existing_pod(match)
        if content_type not in _PATCH_TYPES:
            raise ApiError(
                415, "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: {', '.join(_PATCH_TYPES)}, application/apply-patch+yaml",
            )  # fmt: skip
        patched = _json_patch(pod, body) if content_type == "application/json-patch+json" else _merge(pod, body)
        metadata = patched.get("metadata") if isinstance(patched, dict) and isinstance(patched.get("metadata"), dict) else {}
        # kube-apiserver's update path, in its order: the resourceVersion the patched object holds,
        # then validation, where uid is immutable. A uid in a patch (kubelet's UID precondition) is
        # checked there, not by storage, so a recreated pod answers 422 Invalid, not 409.
        wanted = metadata.get("resourceVersion")
        if wanted and wanted != pod["metadata"]["resourceVersion"]:
            raise _conflict(match["name"])
        uid = metadata.get("uid")
        if uid and uid != pod["metadata"]["uid"]:
            raise _uid_immutable(match["name"], uid)
        return 200, self._store_pod(match, pod, patched)

    def _update_pod_status(self, match, query, content_type, body):
        pod = self._existing_pod(match)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be a Pod")
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        # An update's uid is a storage precondition, checked before the resourceVersion.
        uid = metadata.get("uid")
        if uid and uid != pod["metadata"]["uid"]:
            raise _uid_precondition_failed(match["ns"], match["name"], uid, pod["metadata"]["uid"])
        if metadata.get("resourceVersion") != pod["metadata"]["resourceVersion"]:
            raise _conflict(match["name"])
        return 200, self._store_pod(match, pod, copy.deepcopy(body))

    def _store_pod(self, match, old: dict, new: dict) -> dict:
        # What a subresource may change: /status keeps the old spec, the main resource the old status.
        # Identity fields are the server's.
        keep = "spec" if match.string.endswith("/status") else "status"
        new[keep] = copy.deepcopy(old.get(keep))
        metadata = new.setdefault("metadata", {})
        for key in ("name", "namespace", "uid", "creationTimestamp"):
            metadata[key] = old["metadata"][key]
        metadata["resourceVersion"] = self._next_revision()
        new["kind"], new["apiVersion"] = "Pod", "v1"
        self._pods[(match["ns"], match["name"])] = new
        return new

    def _existing_pod(self, match) -> dict:
        pod = self._pods.get((match["ns"], match["name"]))
        if pod is None:
            raise _not_found("pods", match["name"])
        return copy.deepcopy(pod)

    def _get_nad(self, match, query, content_type, body):
        nad = self._nads.get((match["ns"], match["name"]))
        if nad is None:
            raise _not_found("network-attachment-definitions", match["name"], NAD_GROUP)
        return 200, nad

    def _list_nads(self, match, query, content_type, body):
        namespace = match.groupdict().get("ns")
        nads = [n for (ns, _), n in sorted(self._nads.items()) if namespace is None or ns == namespace]
        return 200, self._list(f"{NAD_KIND}List", f"{NAD_GROUP}/v1", nads, items_typed=True)

    def _create_event(self, match, query, content_type, body):
        api_version = "events.k8s.io/v1" if match.string.startswith("/apis/events") else "v1"
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be an Event")
        metadata = body.setdefault("metadata", {})
        namespace = match["ns"]
        if metadata.get("namespace", namespace) != namespace:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
        if not metadata.get("name"):
            if not metadata.get("generateName"):
                raise ApiError(
                    422, "Invalid", 'Event.core "" is invalid: metadata.name: Required value: name or generateName is required',
                    {"kind": "Event", "causes": [{"reason": "FieldValueRequired", "field": "metadata.name"}]},
                )  # fmt: skip
            metadata["name"] = metadata["generateName"] + secrets.token_hex(3)[:5]
        if any(e["metadata"]["namespace"] == namespace and e["metadata"]["name"] == metadata["name"] for e in self._events):
            raise ApiError(409, "AlreadyExists", f'events "{metadata["name"]}" already exists', {"name": metadata["name"], "kind": "events"})
        metadata.update(namespace=namespace, uid=str(uuid.uuid4()), resourceVersion=self._next_revision(), creationTimestamp=_now())
        body["kind"], body["apiVersion"] = "Event", api_version
        self._events.append(body)
        return 201, body

    def _list_events(self, match, query, content_type, body):
        api_version = "events.k8s.io/v1" if match.string.startswith("/apis/events") else "v1"
        events = [e for e in self._events if e["metadata"]["namespace"] == match["ns"] and e["apiVersion"] == api_version]
        return 200, self._list("EventList", api_version, events, items_typed=False)

    def _list(self, kind: str, api_version: str, items: list[dict], items_typed: bool) -> dict:
        # Built-in lists carry kind/apiVersion only on the list; custom resources on every item too.
        items = [i if items_typed else {k: v for k, v in i.items() if k not in ("kind", "apiVersion")} for i in items]
        return {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": str(next(self._revision))}, "items": items}


_ROUTES: list[tuple[str, re.Pattern, object]] = [
    (method, re.compile(pattern + "$"), handler)
    for method, pattern, handler in [
        ("GET", rf"/api/v1/namespaces/{_NS}/pods/{_NAME}", KubeAPIServer._get_pod),
        ("GET", rf"/api/v1/namespaces/{_NS}/pods/{_NAME}/status", KubeAPIServer._get_pod),
        ("PATCH", rf"/api/v1/namespaces/{_NS}/pods/{_NAME}", KubeAPIServer._patch_pod),
        ("PATCH", rf"/api/v1/namespaces/{_NS}/pods/{_NAME}/status", KubeAPIServer._patch_pod),
        ("PUT", rf"/api/v1/namespaces/{_NS}/pods/{_NAME}/status", KubeAPIServer._update_pod_status),
        ("GET", rf"/api/v1/namespaces/{_NS}/pods", KubeAPIServer._list_pods),
        ("GET", r"/api/v1/pods", KubeAPIServer._list_pods),
        ("GET", rf"/apis/{NAD_GROUP}/v1/namespaces/{_NS}/network-attachment-definitions/{_NAME}", KubeAPIServer._get_nad),
        ("GET", rf"/apis/{NAD_GROUP}/v1/namespaces/{_NS}/network-attachment-definitions", KubeAPIServer._list_nads),
        ("GET", rf"/apis/{NAD_GROUP}/v1/network-attachment-definitions", KubeAPIServer._list_nads),
        ("POST", rf"/api/v1/namespaces/{_NS}/events", KubeAPIServer._create_event),
        ("GET", rf"/api/v1/namespaces/{_NS}/events", KubeAPIServer._list_events),
        ("POST", rf"/apis/events.k8s.io/v1/namespaces/{_NS}/events", KubeAPIServer._create_event),
        ("GET", rf"/apis/events.k8s.io/v1/namespaces/{_NS}/events", KubeAPIServer._list_events),
        ("GET", r"/api", None),
        ("GET", r"/apis", None),
    ]
]


def _route(method: str, path: str):
    """The handler and the path's match; the handler is None for discovery documents."""
    allowed = False
    for route_method, pattern, handler in _ROUTES:
        match = pattern.match(path)
        if match is None:
            continue
        if route_method == method:
            return handler, match
        allowed = True
    if allowed:
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
    raise _PageNotFound()


class _PageNotFound(Exception):
    """A path the API does not have: kube-apiserver answers in plain text."""


def _discovery(path: str) -> dict:
    if path == "/version":
        return {"major": "1", "minor": "30", "gitVersion": "v1.30.0-multipy-test", "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
    if path == "/apis":
        groups = [
            {"name": name, "versions": [{"groupVersion": f"{name}/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": f"{name}/v1", "version": "v1"}}
            for name in (NAD_GROUP, "events.k8s.io")
        ]  # fmt: skip
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    return {"status": "ok"}


def _verb(method: str, match) -> str:
    """The RBAC verb of a request, as kube-apiserver's RequestInfo derives it."""
    verb = {"GET": "get", "PATCH": "patch", "PUT": "update", "POST": "create"}.get(method, method.lower())
    if verb == "get" and match.groupdict().get("name") is None:
        return "list"
    return verb


def _checked(values: Iterable[str] | str | None, known: frozenset[str], what: str, normal) -> frozenset[str] | None:
    """A fault filter: None means every one; a typo must not silently filter nothing."""
    if values is None:
        return None
    chosen = frozenset(normal(v) for v in ((values,) if isinstance(values, str) else values))
    unknown = sorted(chosen - known)
    if unknown or not chosen:
        raise ValueError(f"unknown {what}(s) {', '.join(unknown) or '(none given)'}: expected some of {', '.join(sorted(known))}")
    return chosen


def _forbidden(user: str, verb: str, match) -> ApiError:
    path = match.string
    resource = "pods/status" if path.endswith("/status") else "events" if "events" in path else (
        "network-attachment-definitions" if NAD_GROUP in path else "pods")
    group = NAD_GROUP if NAD_GROUP in path else "events.k8s.io" if path.startswith("/apis/events") else ""
    name = match.groupdict().get("name")
    # NewForbidden names the group-qualified resource without its subresource, then the object.
    kind = resource.split("/")[0]
    qualified = f"{kind}.{group}" if group else kind
    subject = f'{qualified} "{name}"' if name else qualified
    where = f' in the namespace "{match["ns"]}"' if match.groupdict().get("ns") else " at the cluster scope"
    message = f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "{group}"{where}'
    details = {"name": name, "group": group, "kind": kind}
    return ApiError(403, "Forbidden", message, {k: v for k, v in details.items() if v})


def _conflict(name: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on pods "{name}": the object has been modified; please apply your changes to the latest version and try again',
        {"name": name, "kind": "pods"},
    )  # fmt: skip


def _uid_immutable(name: str, uid: str) -> ApiError:
    # Pod validation's words (ValidateObjectMetaUpdate), for pods and pods/status alike.
    problem = f'Invalid value: "{uid}": field is immutable'
    return ApiError(
        422, "Invalid", f'Pod "{name}" is invalid: metadata.uid: {problem}',
        {"name": name, "kind": "Pod", "causes": [{"reason": "FieldValueInvalid", "message": problem, "field": "metadata.uid"}]},
    )  # fmt: skip


def _uid_precondition_failed(namespace: str, name: str, wanted: str, stored: str) -> ApiError:
    # The storage layer's precondition error, wrapped as a conflict by the registry.
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on pods "{name}": StorageError: invalid object, Code: 4, '
        f"Key: /registry/pods/{namespace}/{name}, ResourceVersion: 0, AdditionalErrorMsg: "
        f"Precondition failed: UID in precondition: {wanted}, UID in object meta: {stored}",
        {"name": name, "kind": "pods"},
    )  # fmt: skip


def _merge(target, patch):
    """RFC 7386 JSON merge patch; for the maps multipy patches, strategic merge behaves the same."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _json_patch(target: dict, operations) -> dict:
    """RFC 6902 add/replace/remove/test on object paths (enough for annotations and labels)."""
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "json patch must be a list of operations")
    result = copy.deepcopy(target)
    for op in operations:
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in str(op.get("path", "")).split("/")[1:]]
        if not tokens:
            raise ApiError(422, "Invalid", f"invalid json patch path {op.get('path')!r}")
        parent = result
        for token in tokens[:-1]:
            if not isinstance(parent, dict) or token not in parent:
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: doc is missing path: {op['path']}")
            parent = parent[token]
        last, kind = tokens[-1], op.get("op")
        if kind in ("add", "replace"):
            if kind == "replace" and last not in parent:
                raise ApiError(422, "Invalid", f"doc is missing key: {op['path']}")
            parent[last] = op.get("value")
        elif kind == "remove":
            if last not in parent:
                raise ApiError(422, "Invalid", f"doc is missing key: {op['path']}")
            del parent[last]
        elif kind == "test":
            if parent.get(last) != op.get("value"):
                raise ApiError(422, "Invalid", f"testing value {op['path']} failed")
        else:
            raise ApiError(400, "BadRequest", f"unsupported json patch operation {kind!r}")
    return result


_FIELDS = {
    "metadata.name": lambda o: o["metadata"]["name"],
    "metadata.namespace": lambda o: o["metadata"]["namespace"],
    "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
    "status.phase": lambda o: o["status"].get("phase", ""),
}


def _select(objects: list[dict], query: dict[str, str]) -> list[dict]:
    """fieldSelector (the fields pods support) and equality-based labelSelector."""
    selected = objects
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        key, negate, value = _term(term)
        if key not in _FIELDS:
            raise ApiError(400, "BadRequest", f'field label not supported: {key}')
        selected = [o for o in selected if (_FIELDS[key](o) == value) != negate]
    for term in filter(None, query.get("labelSelector", "").split(",")):
        if "=" not in term:
            present = not term.startswith("!")
            selected = [o for o in selected if (term.lstrip("!") in o["metadata"].get("labels", {})) == present]
            continue
        key, negate, value = _term(term)
        selected = [o for o in selected if (o["metadata"].get("labels", {}).get(key) == value) != negate]
    return selected


def _term(term: str) -> tuple[str, bool, str]:
    for operator, negate in (("!=", True), ("==", False), ("=", False)):
        if operator in term:
            key, value = term.split(operator, 1)
            return key.strip(), negate, value.strip()
    raise ApiError(400, "BadRequest", f"invalid selector: {term!r}")


def _exists(path: str) -> bool:
    try:
        open(path).close()
        return True
    except OSError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, api: KubeAPIServer):
        self.api = api
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self):
        connection, address = super().get_request()
        with self._connections_lock:
            self._connections.add(connection)
        return connection, address

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        """Keep-alive connections would outlive server_close(); an API that is down answers nothing."""
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle the body waits for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def _handle(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path).rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            code, answer = self.server.api._serve(self.command, path, query, self.headers, body)
        except ApiError as error:
            code, answer = error.code, error.status()
        except _PageNotFound:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
            return
        if not self.server.api.running and self.server.api._stopping.is_set():
            self.close_connection = True  # stopped while delaying: the client sees the connection drop
            return
        self._send(code, json.dumps(answer).encode(), "application/json")

    def _send(self, code: int, payload: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
