"""Which pod an ADD is for, and its annotations: from the runtime when it hands them over,
else from the Kubernetes API.

containerd and CRI-O pass a pod's annotations in runtimeConfig under the
`io.kubernetes.cri.pod-annotations` capability when the network declares it;
then no API call is made. Otherwise the pod named by K8S_POD_NAMESPACE and
K8S_POD_NAME in CNI_ARGS is read through ipam.kubeConfig.

Fail closed: when the pod cannot be read, the ADD fails. It never falls back to
a dynamic address, since the pod may have asked for a fixed one. Codes:
- 11: the API server is unreachable, timed out or failed (5xx, 429): a retry can succeed;
- 7: the kubeconfig cannot be loaded, or its credentials are refused (401/403):
  the node's configuration needs fixing first;
- 3: the pod does not exist (a GET is a quorum read, so it is gone, not late),
  or exists under another UID than K8S_POD_UID (this sandbox is an older incarnation's).
"""

from __future__ import annotations

from collections.abc import Callable

from multipy.clients.kube import KubeConfigError, KubeError, KubeNotFound, KubeUnauthorized
from multipy.cni.env import Environment
from multipy.cni.errors import INVALID_NETWORK_CONFIG, UNKNOWN_CONTAINER, CNIError
from multipy.ipam.ranges import invalid
from multipy.k8s import pod as pods
from multipy.k8s.errors import cni_error

ANNOTATIONS_CAPABILITY = "io.kubernetes.cri.pod-annotations"

Pod = pods.PodRef


def identify(inv: Environment) -> Pod | None:
    """The pod of CNI_ARGS; None unless both namespace and name are given (podman passes only a name)."""
    return pods.identify(inv.arg)


def from_runtime(conf: dict) -> dict[str, str] | None:
    """The annotations the runtime handed over, or None when it did not."""
    runtime_config = conf.get("runtimeConfig")
    if not isinstance(runtime_config, dict) or ANNOTATIONS_CAPABILITY not in runtime_config:
        return None
    value = runtime_config[ANNOTATIONS_CAPABILITY]
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise invalid(f"runtimeConfig.{ANNOTATIONS_CAPABILITY}", value, "is not an object of strings")
    return value


def from_api(pod: Pod, kube: Callable[[], object], kubeconfig: str) -> dict[str, str]:
    """The pod's annotations as the API server has them now."""
    doing = f"cannot read pod {pod.ref}'s annotations"
    try:
        obj = kube().get_pod(pod.namespace, pod.name)
    except KubeNotFound:
        raise CNIError(UNKNOWN_CONTAINER, f"pod {pod.ref} does not exist in the Kubernetes API "
                                          f"(read through {kubeconfig}): its annotations cannot be read") from None
    except KubeUnauthorized as error:
        raise CNIError(INVALID_NETWORK_CONFIG, f"{doing}: the credentials of ipam.kubeConfig {kubeconfig} "
                                               f"were refused: {error}") from None
    except KubeConfigError as error:
        raise CNIError(INVALID_NETWORK_CONFIG, f"ipam.kubeConfig: {error}") from None
    except KubeError as error:
        raise cni_error(error, doing) from None
    pods.check_uid(pod, obj)
    return pods.annotations(obj)
