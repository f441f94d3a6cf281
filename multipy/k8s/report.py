"""What ADD tells the cluster: the pod's network-status annotation and AddedInterface events.

Reporter is the orchestrator's Reporter port (multipy.orchestrator.ports); `pod` is the
ApiPod that PodNetworks.select handed the orchestrator.
"""

from __future__ import annotations

from collections.abc import Callable

from multipy.clients.kube import KubeError
from multipy.cni.errors import UNKNOWN_CONTAINER, CNIError
from multipy.log import Log
from multipy.net import ifinfo
from multipy.orchestrator.record import Record

from . import status
from .errors import cni_error
from .pod import ApiPod
from .selection import STATUS_ANNOTATION


class Reporter:
    def __init__(self, kube: Callable[[], object], log: Log) -> None:
        self._kube = kube
        self.log = log

    def network_status(self, pod: ApiPod, record: Record, netns: str) -> str:
        """Writes the annotation through pods/status; the value written is returned.

        Guarded by the pod's UID: the status of a recreated pod of the same name is never touched.
        """
        ref, uid = pod.ref, pod.uid
        entries = []
        for attachment in record.attachments:
            result = attachment.result or {}
            mtu = None if _has_mtu(result, attachment.ifname) else ifinfo.mtu(netns, attachment.ifname)
            entries.append(status.entry(attachment.status_name, attachment.ifname, result, attachment.master, mtu))
        value = status.annotation(entries)
        try:
            self._kube().patch_pod_status(ref.namespace, ref.name, {STATUS_ANNOTATION: value}, uid=uid or None)
        except KubeError as error:
            doing = f"cannot write the {STATUS_ANNOTATION} annotation of pod {ref.ref}"
            if error.status == 422 and "metadata.uid" in str(error):
                raise CNIError(UNKNOWN_CONTAINER, f"{doing}: the pod was deleted and recreated during this ADD "
                               f"(its UID is no longer {uid})") from None  # fmt: skip
            raise cni_error(error, doing) from None
        return value

    def added_interfaces(self, pod: ApiPod, record: Record) -> None:
        """One AddedInterface event per attachment, as Multus posts them. Best effort: the pod is
        wired and its status written, so a lost event is logged, never an error."""
        ref, uid = pod.ref, pod.uid
        for attachment in record.attachments:
            message = status.added_interface_message(attachment.ifname, attachment.result or {}, attachment.status_name)
            try:
                self._kube().create_event(ref.namespace, ref.name, "AddedInterface", message, pod_uid=uid or None)
            except (KubeError, CNIError) as error:
                self.log.warning("AddedInterface event for %s not posted: %s", attachment.ifname, error)
                return  # the API is struggling: do not spend the budget on the rest


def _has_mtu(result: dict, ifname: str) -> bool:
    interfaces = result.get("interfaces") if isinstance(result, dict) else None
    return any(isinstance(i, dict) and i.get("name") == ifname and i.get("mtu") for i in interfaces or [])
