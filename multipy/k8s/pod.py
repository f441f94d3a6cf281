"""Which pod a CNI request is for (kubelet's K8S_POD_* CNI_ARGS) and whether the API's pod is that one."""

from __future__ import annotations

from dataclasses import dataclass

from multipy.cni.errors import UNKNOWN_CONTAINER, CNIError

# kubelet names a static pod's API object (its mirror pod) with this annotation, whose value is
# the UID the kubelet uses locally and passes as K8S_POD_UID; the mirror pod's own UID differs.
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str = ""
    sandbox: str = ""  # K8S_POD_INFRA_CONTAINER_ID

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ApiPod:
    """The pod as the API served it on ADD: the handle the network-status and events are written to."""

    ref: PodRef
    uid: str  # its UID in the API (a static pod's mirror has its own): the guard of every write


def identify(arg) -> PodRef | None:
    """The pod named by CNI_ARGS (`arg` looks a key up); None unless namespace and name are both given."""
    namespace, name = arg("K8S_POD_NAMESPACE"), arg("K8S_POD_NAME")
    if not (namespace and name):
        return None
    return PodRef(namespace, name, arg("K8S_POD_UID") or "", arg("K8S_POD_INFRA_CONTAINER_ID") or "")


def metadata(pod: dict) -> dict:
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    return meta if isinstance(meta, dict) else {}


def annotations(pod: dict) -> dict[str, str]:
    found = metadata(pod).get("annotations")
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


def check_uid(ref: PodRef, pod: dict) -> None:
    """Refuse to wire a sandbox of a deleted incarnation of the pod into the new one's networks.

    A StatefulSet pod deleted and recreated keeps its name: kubelet may still be setting up the old
    sandbox while the API already serves the new pod. Static pods are the exception (their API
    object is a mirror with its own UID), as in Multus (#773, PR #763).
    """
    uid = metadata(pod).get("uid") or ""
    if not ref.uid or not uid or uid == ref.uid:
        return
    if annotations(pod).get(MIRROR_ANNOTATION) == ref.uid:
        return
    raise CNIError(
        UNKNOWN_CONTAINER,
        f"pod {ref.ref} in the API has UID {uid}, but this sandbox is for UID {ref.uid}: "
        "it belongs to a deleted incarnation of the pod, so it gets none of the pod's networks",
    )
