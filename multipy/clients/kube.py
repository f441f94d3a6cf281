"""The Kubernetes API for multipy: pods, NetworkAttachmentDefinitions, pod status annotations, events.

Built on the official `kubernetes` client, which costs ~300 ms to import: it is imported when a
client is built, never by importing this module. Objects come back as the API's own JSON (plain
dicts, camelCase keys), not as generated models. Every call has a total timeout and is tried once:
a CNI ADD is retried by kubelet, so a retry storm inside one call only delays the pod.
Failures leave as KubeNotFound, KubeUnauthorized, KubeUnavailable or KubeError, with messages that
name the API server and the object, and never carry the credentials.
"""

from __future__ import annotations

import copy
import json
import os
import time
from typing import Any

DEFAULT_TIMEOUT = 10.0
NAD_GROUP, NAD_VERSION, NAD_PLURAL = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"
_NAD_PATH = f"/apis/{NAD_GROUP}/{NAD_VERSION}/namespaces/{{namespace}}/{NAD_PLURAL}"


class KubeError(Exception):
    """The API server answered with an error not covered by a subclass (e.g. 409, 422)."""

    def __init__(self, message: str, status: int | None = None, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeConfigError(KubeError):
    """No usable kubeconfig or in-cluster configuration."""


class KubeNotFound(KubeError):
    """404: the object does not exist."""


class KubeUnauthorized(KubeError):
    """401 or 403: credentials rejected or not allowed to do this."""


class KubeUnavailable(KubeError):
    """The API server could not be reached, did not answer in time, or failed (5xx, 429)."""


def _load():
    import urllib3
    from kubernetes import client, config

    return client, config, urllib3


def from_kubeconfig(
    path: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    context: str | None = None,
    total_timeout: float | None = None,
) -> Kube:
    """A client from the kubeconfig at `path`; without one, the in-cluster service account when
    KUBERNETES_SERVICE_HOST is set (as Multus does). KUBECONFIG is not consulted: a plugin
    inherits the runtime's environment, and the conf must say which cluster it talks to."""
    if timeout <= 0:
        raise KubeConfigError("timeout must be positive")
    if path and not os.path.isfile(path):
        raise KubeConfigError(f"kubeconfig {path} does not exist")
    if not path and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise KubeConfigError("no kubeconfig given and not running in a cluster (KUBERNETES_SERVICE_HOST is unset)")
    client, config, _ = _load()
    configuration = client.Configuration()
    try:
        if path:
            # persist_config=False: never write refreshed credentials back into the node's file.
            config.load_kube_config(path, context=context, client_configuration=configuration, persist_config=False)
            source = f"kubeconfig {path}"
        else:
            config.load_incluster_config(client_configuration=configuration)
            source = "the in-cluster service account"
    except Exception as error:  # ConfigException, YAML and I/O errors: all mean the same to the caller
        where = f"kubeconfig {path}" if path else "in-cluster configuration"
        raise KubeConfigError(f"cannot load {where}: {_first_line(error)}") from None
    return Kube(configuration, source=source, timeout=timeout, total_timeout=total_timeout)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


class Kube:
    """One API server. Safe to share between threads (urllib3's pool is thread-safe).

    Requests go through the client's ApiClient (its auth, token refresh, TLS and REST layers) with
    the REST paths written here: the generated CoreV1Api module alone costs ~0.8 s to import."""

    def __init__(
        self, configuration, *, source: str = "", timeout: float = DEFAULT_TIMEOUT, total_timeout: float | None = None
    ):
        client, _, urllib3 = _load()
        if timeout <= 0 or (total_timeout is not None and total_timeout <= 0):
            raise KubeConfigError("timeout must be positive")
        # A budget for every call of this client together (one CNI ADD): N slow answers in a row
        # must not add up past what kubelet waits for a sandbox (Multus #1461).
        self.total_timeout = total_timeout
        self._deadline = time.monotonic() + total_timeout if total_timeout else None
        # One try per call; client_go_retries would also retry 429s on reads.
        configuration.retries = False
        configuration.client_go_retries = False
        self.server = configuration.host
        self.source = source
        self.timeout = timeout
        self._urllib3 = urllib3
        self._api = client.ApiClient(configuration)
        self._owns_api = True

    def bounded(self, *, timeout: float | None = None, total_timeout: float | None = None) -> Kube:
        """This client's connection with its own limits and a fresh total budget.

        What a pool hands each request: the connection (TLS, credentials, urllib3's pool) is shared,
        but one request's budget is not another's. Closing the view leaves the connection open."""
        timeout = self.timeout if timeout is None else timeout
        if timeout <= 0 or (total_timeout is not None and total_timeout <= 0):
            raise KubeConfigError("timeout must be positive")
        view = copy.copy(self)
        view.timeout = timeout
        view.total_timeout = total_timeout
        view._deadline = time.monotonic() + total_timeout if total_timeout else None
        view._owns_api = False
        return view

    def __repr__(self) -> str:
        return f"Kube({self.server})"

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection; a no-op on a view from bounded(), whose connection is its origin's."""
        if self._owns_api:
            self._api.close()

    # -- pods

    def get_pod(self, namespace: str, name: str) -> dict:
        return self._request("GET", f'pod "{namespace}/{name}"', "/api/v1/namespaces/{namespace}/pods/{name}",
                             namespace=namespace, name=name)  # fmt: skip

    def list_pods(
        self, namespace: str | None = None, *, field_selector: str | None = None, label_selector: str | None = None
    ) -> list[dict]:
        """Pods of one namespace, or of all namespaces when `namespace` is None."""
        query = [(k, v) for k, v in (("fieldSelector", field_selector), ("labelSelector", label_selector)) if v]
        if namespace is None:
            listing = self._request("GET", "pods in all namespaces", "/api/v1/pods", query=query)
        else:
            listing = self._request("GET", f'pods in namespace "{namespace}"', "/api/v1/namespaces/{namespace}/pods",
                                    query=query, namespace=namespace)  # fmt: skip
        return listing.get("items") or []

    def patch_pod_status(
        self, namespace: str, name: str, annotations: dict[str, str | None], uid: str | None = None
    ) -> dict:
        """Merges `annotations` into the pod's (None removes a key) through the pods/status
        subresource, as Multus writes network-status. A merge patch needs no resourceVersion,
        so it cannot conflict with kubelet's own status writes. With `uid`, the API server refuses
        (422, metadata.uid is immutable) to patch another incarnation of the pod: a guard in the
        same request, not a read-then-write."""
        metadata: dict = {"annotations": annotations}
        if uid:
            metadata["uid"] = uid
        return self._request(
            "PATCH", f'status of pod "{namespace}/{name}"', "/api/v1/namespaces/{namespace}/pods/{name}/status",
            body={"metadata": metadata}, content_type="application/merge-patch+json",
            namespace=namespace, name=name,
        )  # fmt: skip

    def create_event(
        self,
        namespace: str,
        pod_name: str,
        reason: str,
        message: str,
        *,
        pod_uid: str | None = None,
        event_type: str = "Normal",
        component: str = "multus",
    ) -> dict:
        """A core/v1 Event about a pod, as client-go's recorder posts it (Multus: AddedInterface)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        involved = {"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": pod_name}
        if pod_uid:
            involved["uid"] = pod_uid
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            # client-go names events <object>.<unix nanoseconds in hex>
            "metadata": {"name": f"{pod_name}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": {"component": component, "host": os.uname().nodename},
            "reportingComponent": component,
            "reportingInstance": os.uname().nodename,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        return self._request("POST", f'event {reason} for pod "{namespace}/{pod_name}"',
                             "/api/v1/namespaces/{namespace}/events", body=body, namespace=namespace)  # fmt: skip

    # -- NetworkAttachmentDefinitions

    def get_network_attachment_definition(self, namespace: str, name: str) -> dict:
        return self._request("GET", f'NetworkAttachmentDefinition "{namespace}/{name}"', _NAD_PATH + "/{name}",
                             namespace=namespace, name=name)  # fmt: skip

    def list_network_attachment_definitions(self, namespace: str) -> list[dict]:
        listing = self._request("GET", f'NetworkAttachmentDefinitions in namespace "{namespace}"', _NAD_PATH,
                                namespace=namespace)  # fmt: skip
        return listing.get("items") or []

    # -- plumbing

    def _request(
        self,
        method: str,
        what: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict | None = None,
        content_type: str = "application/json",
        **path_params: str,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException

        verb = {"GET": "get", "POST": "create", "PATCH": "patch"}[method]
        where = f"{verb} {what} on {self.server}"
        if not all(path_params.values()):
            raise KubeError(f"cannot {verb} {what}: empty namespace or name")
        timeout = self.timeout
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - time.monotonic())
            if timeout <= 0:
                raise KubeUnavailable(f"{where}: the API time budget of {self.total_timeout:g} s is used up")
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            request = self._api.param_serialize(
                method, path, path_params=path_params, query_params=query or [], header_params=headers, body=body,
                auth_settings=["BearerToken"],
            )  # fmt: skip
            response = self._api.call_api(*request, _request_timeout=timeout)
            data = response.read()
        except ApiException as error:  # TLS failures arrive as status 0
            raise KubeUnavailable(f"{where}: {' '.join(str(error.reason).split())}") from None
        except self._urllib3.exceptions.HTTPError as error:
            raise KubeUnavailable(f"{where}: {self._transport_cause(error)}") from None
        except OSError as error:
            raise KubeUnavailable(f"{where}: {error.strerror or error}") from None
        if not 200 <= response.status <= 299:
            raise self._http_error(where, response.status, response.reason, data)
        try:
            return json.loads(data)
        except ValueError:
            raise KubeError(f"{where}: the answer is not JSON: {data[:200]!r}") from None

    def _http_error(self, where: str, status: int, http_reason: str | None, body: bytes) -> KubeError:
        message, reason = _status_message(body)
        text = f"{where}: HTTP {status}: {' '.join((message or http_reason or 'no message').split())}"
        if status == 404:
            return KubeNotFound(text, status, reason)
        if status in (401, 403):
            return KubeUnauthorized(text, status, reason)
        if status == 429 or status >= 500:
            return KubeUnavailable(text, status, reason)
        return KubeError(text, status, reason)

    def _transport_cause(self, error) -> str:
        exceptions = self._urllib3.exceptions
        # urllib3 2 makes NewConnectionError a ConnectTimeoutError: test it first.
        if isinstance(error, exceptions.NewConnectionError):
            text = str(error)
            return "connection refused" if "refused" in text.lower() else f"cannot connect: {text.split(': ', 1)[-1]}"
        if isinstance(error, exceptions.TimeoutError):
            budget = f" (budget {self.total_timeout:g} s)" if self.total_timeout else ""
            return f"no answer within {self.timeout:g} s{budget}"
        if isinstance(error, exceptions.ProtocolError):
            return f"connection broken: {_first_line(error)}"
        return _first_line(error)


def _status_message(body) -> tuple[str, str]:
    """The message and reason of a Kubernetes Status object in an error body, if it is one."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body.strip():
        return "", ""
    try:
        status = json.loads(body)
    except ValueError:
        return body.strip().splitlines()[0][:200], ""
    if isinstance(status, dict) and status.get("kind") == "Status":
        return str(status.get("message") or ""), str(status.get("reason") or "")
    return "", ""


# -- informers: a daemon's local copy of this node's pods and of the NADs


POD_LIST_PATH = "/api/v1/pods"
NAD_LIST_PATH = f"/apis/{NAD_GROUP}/{NAD_VERSION}/{NAD_PLURAL}"
_KEPT_METADATA = ("name", "namespace", "uid", "annotations", "labels", "resourceVersion")


def strip_pod(obj: dict) -> dict:
    """What multipy reads of a pod (identity, annotations, labels, node): a cache of a node's pods holds
    no managedFields, containers or volumes (Multus #1203)."""
    metadata = obj.get("metadata") or {}
    kept = {"metadata": {k: metadata[k] for k in _KEPT_METADATA if k in metadata}}
    node = (obj.get("spec") or {}).get("nodeName")
    if node:
        kept["spec"] = {"nodeName": node}
    return kept


def strip_nad(obj: dict) -> dict:
    """A NAD's identity, annotations (resourceName) and spec.config."""
    metadata = obj.get("metadata") or {}
    return {"metadata": {k: metadata[k] for k in _KEPT_METADATA if k in metadata}, "spec": dict(obj.get("spec") or {})}


class Informer:
    """A list-then-watch copy of one kind of object (the Kubernetes watch API), kept by a thread.

    It relists after a watch ends with an error (410 Gone: the resourceVersion is too old) and,
    with a pause, after a watch that produced nothing (an API server that does not stream), so
    it never spins. Readers get the stripped object or None; a miss is the caller's to GET live.
    """

    WATCH_SECONDS = 60  # the API server ends each watch after this; the next one resumes from its version
    PAUSE = 5.0  # before a relist after a failure, capped exponential backoff

    def __init__(self, kube: Kube, path: str, what: str, strip, field_selector: str | None = None) -> None:
        import threading

        self.kube = kube
        self.path = path
        self.what = what
        self.strip = strip
        self.field_selector = field_selector
        self.synced = threading.Event()
        self.synced_at: float | None = None  # time.monotonic() of the last full list
        self.last_error: str = ""
        self._objects: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._response = None
        self._thread = threading.Thread(target=self._run, name=f"informer-{what}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # unblocks the watch's read
            except Exception:  # noqa: BLE001 - best effort: the thread is a daemon thread anyway
                pass
        self._thread.join(timeout)

    def get(self, namespace: str, name: str) -> dict | None:
        with self._lock:
            return self._objects.get((namespace, name))

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    # -- the thread

    def _query(self, **extra) -> list[tuple[str, str]]:
        query = [("fieldSelector", self.field_selector)] if self.field_selector else []
        return query + [(k, str(v)) for k, v in extra.items()]

    def _run(self) -> None:
        pause = 0.0
        while not self._stopping.wait(pause):
            try:
                version = self._list()
                produced = self._watch(version)
                pause = 0.0 if produced else self.PAUSE
            except KubeError as error:
                self.last_error = str(error)
                pause = min(max(pause * 2, self.PAUSE), 60.0)
            except Exception as error:  # noqa: BLE001 - a broken stream must not kill the cache
                self.last_error = f"{type(error).__name__}: {error}"
                pause = min(max(pause * 2, self.PAUSE), 60.0)

    def _list(self) -> str:
        listing = self.kube._request("GET", self.what, self.path, query=self._query())
        objects = {}
        for obj in listing.get("items") or []:
            kept = self.strip(obj)
            metadata = kept["metadata"]
            objects[(metadata.get("namespace", ""), metadata.get("name", ""))] = kept
        with self._lock:
            self._objects = objects
        self.synced_at = time.monotonic()
        self.synced.set()
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> int:
        """Applies watch events until the server ends the watch; how many there were."""
        from kubernetes.watch.watch import iter_resp_lines

        query = self._query(watch="true", allowWatchBookmarks="true", timeoutSeconds=self.WATCH_SECONDS,
                            resourceVersion=version)  # fmt: skip
        request = self.kube._api.param_serialize("GET", self.path, query_params=query,
                                                 header_params={"Accept": "application/json"},
                                                 auth_settings=["BearerToken"])  # fmt: skip
        response = self.kube._api.call_api(*request, _preload_content=False,
                                           _request_timeout=(self.kube.timeout, self.WATCH_SECONDS + 10))  # fmt: skip
        self._response = response
        events = 0
        try:
            if response.status != 200:
                raise self.kube._http_error(f"watch {self.what}", response.status, response.reason, response.read())
            for line in iter_resp_lines(response):
                if self._stopping.is_set():
                    break
                if line and self._apply(json.loads(line)):
                    events += 1
                elif line:
                    break  # an ERROR event (410 Gone) or not an event at all: relist
        finally:
            self._response = None
            response.release_conn()
        return events

    def _apply(self, event: dict) -> bool:
        kind, obj = event.get("type"), event.get("object")
        if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") or not isinstance(obj, dict):
            return False
        if kind == "BOOKMARK":
            return True
        kept = self.strip(obj)
        key = (kept["metadata"].get("namespace", ""), kept["metadata"].get("name", ""))
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = kept
        return True


def pod_informer(kube: Kube, node_name: str) -> Informer:
    """This node's pods only (spec.nodeName): a node's share of the cluster, not the cluster."""
    return Informer(kube, POD_LIST_PATH, f'pods on node "{node_name}"', strip_pod, f"spec.nodeName={node_name}")


def nad_informer(kube: Kube) -> Informer:
    return Informer(kube, NAD_LIST_PATH, "NetworkAttachmentDefinitions", strip_nad)
