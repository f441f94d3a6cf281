"""Kubernetes API failures as CNI errors, one mapping for every caller.

- 11 (try again later): unreachable, timed out, 5xx or 429: kubelet's retry can succeed;
- 7 (invalid config): no usable kubeconfig, or its credentials refused (401/403): the node needs fixing;
- 3 (unknown container): the object is gone (a GET is a quorum read: gone, not late).
"""

from __future__ import annotations

from multipy.clients.kube import KubeConfigError, KubeError, KubeNotFound, KubeUnauthorized, KubeUnavailable
from multipy.cni.errors import INTERNAL, INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, UNKNOWN_CONTAINER, CNIError


def cni_error(error: KubeError, doing: str, source: str = "") -> CNIError:
    """`doing` says what failed ("cannot read pod default/web-1"); `source` names the kubeconfig."""
    via = f" (credentials from {source})" if source else ""
    if isinstance(error, KubeNotFound):
        return CNIError(UNKNOWN_CONTAINER, f"{doing}: not found in the Kubernetes API: {error}")
    if isinstance(error, KubeUnavailable):
        return CNIError(TRY_AGAIN_LATER, f"{doing}: {error}")
    if isinstance(error, KubeUnauthorized):
        return CNIError(INVALID_NETWORK_CONFIG, f"{doing}: the API server refused the credentials{via}: {error}")
    if isinstance(error, KubeConfigError):
        return CNIError(INVALID_NETWORK_CONFIG, f"{doing}: {error}")
    return CNIError(INTERNAL, f"{doing}: {error}")
