"""The node's kubeconfig, made from the service account of the pod that runs `multipy install`.

multipy runs on the node, where there is no service account: network-status, events and
NetworkAttachmentDefinitions need a kubeconfig there (the conf's `kubeconfig`). It holds the
pod's token, which expires and is rotated by kubelet in the pod's volume (Multus R12): the
DaemonSet's main container re-runs the install (`--every`) so that the node's copy follows.

The CA goes into a file next to the kubeconfig, named there by path: inlined as
`certificate-authority-data`, the Python client would write it to a temporary file in every
CNI call. The token is never printed, nor put in an error message.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CONTEXT = "multipy"


class KubeconfigError(Exception):
    pass


@dataclass(frozen=True)
class ServiceAccount:
    token: str = field(repr=False)
    ca: bytes = field(repr=False)
    namespace: str | None


def ca_path(kubeconfig: str) -> str:
    """Where the CA goes, next to the kubeconfig."""
    return f"{kubeconfig}.ca.crt"


def read_service_account(directory: str) -> ServiceAccount:
    token = _read(directory, "token").decode("utf-8", "replace").strip()
    if not token:
        raise KubeconfigError(f"--serviceaccount-dir {directory}: the token file is empty")
    if any(c.isspace() for c in token):
        raise KubeconfigError(f"--serviceaccount-dir {directory}: the token file holds more than one token")
    ca = _read(directory, "ca.crt")
    if b"-----BEGIN CERTIFICATE-----" not in ca:
        raise KubeconfigError(f"--serviceaccount-dir {directory}: ca.crt holds no PEM certificate")
    try:
        namespace = _read(directory, "namespace").decode().strip() or None
    except KubeconfigError:
        namespace = None  # only the context's default namespace: multipy always names one
    return ServiceAccount(token, ca, namespace)


def api_server(url: str | None, environ=os.environ) -> str:
    """`url`, checked; without it the in-cluster address, as client-go's InClusterConfig makes it."""
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/"):
            raise KubeconfigError(f"--api-server {url!r} is not a URL such as https://10.96.0.1:443")
        return url.rstrip("/")
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeconfigError(
            "--kubeconfig needs the API server's address: KUBERNETES_SERVICE_HOST and "
            "KUBERNETES_SERVICE_PORT are not set (not in a pod?); give --api-server URL"
        )
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a name
    return f"https://{host}:{port}"


def render(server: str, ca_file: str, account: ServiceAccount) -> bytes:
    """The kubeconfig (JSON, which every kubeconfig reader takes as YAML)."""
    context = {"cluster": CONTEXT, "user": CONTEXT}
    if account.namespace:
        context["namespace"] = account.namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server, "certificate-authority": ca_file}}],
        "users": [{"name": CONTEXT, "user": {"token": account.token}}],
        "contexts": [{"name": CONTEXT, "context": context}],
        "current-context": CONTEXT,
    }
    return (json.dumps(config, indent=2) + "\n").encode()


def _read(directory: str, name: str) -> bytes:
    path = os.path.join(directory, name)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise KubeconfigError(f"--serviceaccount-dir: cannot read {path}: {error.strerror}") from None
