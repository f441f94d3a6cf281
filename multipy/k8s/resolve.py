"""The networks of one pod, as Multus picks them: the cluster network (or the pod's
`v1.multus-cni.io/default-network`), then defaultNetworks (not in systemNamespaces), then the
networks of its `k8s.v1.cni.cncf.io/networks` annotation, each a NetworkAttachmentDefinition.

Runs on ADD only. DEL and CHECK work from the attachment record, never from the API.
PodNetworks is the orchestrator's PodNetworks port (multipy.orchestrator.ports): this layer
sits above the orchestrator and speaks its types; the orchestrator never imports it.
"""

from __future__ import annotations

from collections.abc import Callable

from multipy.clients.kube import KubeError, KubeNotFound
from multipy.cni.env import cni_arg
from multipy.cni.errors import INVALID_NETWORK_CONFIG, UNKNOWN_CONTAINER, CNIError
from multipy.config.multus import Delegate, MultusConf
from multipy.config.network import Network
from multipy.orchestrator.plan import Wanted, from_conf
from multipy.orchestrator.ports import PodSelection

from . import nads, pod, selection
from .errors import cni_error


class PodNetworks:
    """Resolves through `kube()`, a client made on first use (its import costs ~250 ms)."""

    def __init__(self, conf: MultusConf, kube: Callable[[], object]) -> None:
        self.conf = conf
        self._kube = kube

    def select(self, cni_args: str) -> PodSelection | None:
        """The pod kubelet names in CNI_ARGS (K8S_POD_*) and its networks; None when none is named."""
        ref = pod.identify(lambda key: cni_arg(cni_args, key))
        if ref is None:
            return None
        obj = self.read_pod(ref)
        return PodSelection(pod.ApiPod(ref, pod.metadata(obj).get("uid") or ""), self.wanted(ref, obj))

    def read_pod(self, ref: pod.PodRef) -> dict:
        try:
            obj = self._kube().get_pod(ref.namespace, ref.name)
        except KubeNotFound:
            raise CNIError(UNKNOWN_CONTAINER, f"pod {ref.ref} does not exist in the Kubernetes API: not wiring a deleted pod") from None
        except KubeError as error:
            raise cni_error(error, f"cannot read pod {ref.ref}") from None
        pod.check_uid(ref, obj)
        return obj

    def wanted(self, ref: pod.PodRef, obj: dict) -> list[Wanted]:
        annotations = pod.annotations(obj)
        override = annotations.get(selection.DEFAULT_NETWORK_ANNOTATION, "").strip()
        wanted: list[Wanted] = []
        for delegate in self.conf.delegates:
            if delegate.master and override:
                chosen = selection.parse_default_network(override, ref.namespace)
                wanted.append(self._selected(ref, chosen, master=True, annotation=selection.DEFAULT_NETWORK_ANNOTATION))
            elif delegate.master or delegate.ref is None or ref.namespace not in self.conf.system_namespaces:
                wanted.append(self._configured(delegate))
        value = annotations.get(selection.NETWORKS_ANNOTATION, "")
        for chosen in selection.parse_networks(value, ref.namespace):
            wanted.append(self._selected(ref, chosen, master=False, annotation=selection.NETWORKS_ANNOTATION))
        return wanted

    def hotplugged(self, ref: pod.PodRef, chosen: selection.Selection) -> Wanted:
        """One network of a hot-plug request (the daemon's POST /delegate), checked as an annotation's is."""
        return self._selected(ref, chosen, master=False, annotation="of the hot-plug request")

    def _configured(self, delegate: Delegate) -> Wanted:
        """A conf delegate; a clusterNetwork/defaultNetworks name is a NAD in multusNamespace first."""
        if delegate.ref is None:
            return from_conf_delegate(delegate)
        namespace = self.conf.multus_namespace
        try:
            obj = self._kube().get_network_attachment_definition(namespace, delegate.ref)
        except KubeNotFound:
            if delegate.network is None:
                raise CNIError(INVALID_NETWORK_CONFIG, f"network {delegate.ref!r} is neither a "
                               f"NetworkAttachmentDefinition in namespace {namespace} nor a conf in confDir "
                               f"{self.conf.conf_dir}") from None  # fmt: skip
            return from_conf_delegate(delegate)
        except KubeError as error:
            raise cni_error(error, f"cannot read NetworkAttachmentDefinition {namespace}/{delegate.ref}") from None
        source = f"{namespace}/{delegate.ref}"
        net = nads.to_network(obj, source, self.conf.conf_dir, self.conf.cni_version)
        return Wanted(net, master=delegate.master, source=source)

    def _selected(self, ref: pod.PodRef, chosen: selection.Selection, master: bool, annotation: str) -> Wanted:
        self._check_isolation(ref, chosen, annotation)
        try:
            obj = self._kube().get_network_attachment_definition(chosen.namespace, chosen.name)
        except KubeNotFound:
            raise CNIError(INVALID_NETWORK_CONFIG, f"pod {ref.ref} asks for network {chosen.ref} in its annotation "
                           f"{annotation}, but NetworkAttachmentDefinition {chosen.ref} does not exist") from None
        except KubeError as error:
            raise cni_error(error, f"cannot read NetworkAttachmentDefinition {chosen.ref}") from None
        net = nads.to_network(obj, chosen.ref, self.conf.conf_dir, self.conf.cni_version)
        _check_capabilities(net, chosen, annotation)
        return Wanted(net, master=master, interface=chosen.interface, source=chosen.ref,
                      runtime_config=dict(chosen.runtime_config), cni_args=dict(chosen.cni_args),
                      default_route=tuple(chosen.default_route))  # fmt: skip

    def _check_isolation(self, ref: pod.PodRef, chosen: selection.Selection, annotation: str) -> None:
        conf = self.conf
        if not conf.namespace_isolation or chosen.namespace == ref.namespace:
            return
        if chosen.namespace in conf.global_namespaces:
            return
        raise CNIError(INVALID_NETWORK_CONFIG, f"namespaceIsolation: pod {ref.ref} may not use network {chosen.ref} "
                       f"(annotation {annotation}): only its own namespace {ref.namespace} and the global "
                       f"namespaces ({', '.join(conf.global_namespaces) or 'none'}) are allowed")  # fmt: skip


def _check_capabilities(net: Network, chosen: selection.Selection, annotation: str) -> None:
    """A request no plugin of the network accepts would be dropped silently (libcni passes only
    declared capabilities), leaving the pod without the address it asked for."""
    declared = {cap for plugin in net.plugins for cap, on in (plugin.get("capabilities") or {}).items() if on is True}
    for capability in chosen.runtime_config:
        if capability not in declared:
            raise CNIError(INVALID_NETWORK_CONFIG, f"annotation {annotation} asks network {chosen.ref} for "
                           f"{capability!r}, but no plugin of its config declares the capability "
                           f'"capabilities": {{"{capability}": true}}')  # fmt: skip


def from_conf_delegate(delegate: Delegate) -> Wanted:
    return from_conf([delegate])[0]
