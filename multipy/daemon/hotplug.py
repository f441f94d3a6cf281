"""POST /delegate's wiring: one network (a NAD selection element) into or out of a running pod.

The conf is loaded and the orchestrator built exactly as for a CNI request (entry.build); the
network is resolved as an element of the pod's networks annotation would be (k8s.resolve), and
orchestrator/hotplug.py adds it to, or removes it from, the pod's attachment record.
"""

from __future__ import annotations

import json

from multipy import entry
from multipy.cni import env as cni_env
from multipy.cni import skel
from multipy.cni.errors import INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG, CNIError
from multipy.cni.result import Result
from multipy.cni.version import LATEST, require_supported
from multipy.k8s import pod, selection
from multipy.log import Log
from multipy.orchestrator import hotplug

COMMANDS = ("ADD", "DEL")


def environment(environ: dict) -> cni_env.Environment:
    """The request's CNI_* values, checked as the runtime's are; no CNI_IFNAME: the network says its own."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CNIError(INVALID_ENVIRONMENT, f"env.CNI_COMMAND {command!r}: /delegate takes ADD or DEL")
    for key in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_ARGS"):
        if not environ.get(key):
            raise CNIError(INVALID_ENVIRONMENT, f"env.{key} is missing: /delegate needs the pod's container, "
                           "namespace and K8S_POD_* args")  # fmt: skip
    cni_env.validate_container_id(environ["CNI_CONTAINERID"])
    cni_env.parse_args(environ["CNI_ARGS"])
    return cni_env.Environment(command=command, container_id=environ["CNI_CONTAINERID"], netns=environ["CNI_NETNS"],
                               ifname="", args=environ["CNI_ARGS"],
                               path=tuple(p for p in environ.get("CNI_PATH", "").split(":") if p))  # fmt: skip


def run(environ: dict, raw: bytes, element, log: Log, **wiring) -> Result | None:
    """Hot-plug (ADD: the network's result) or hot-unplug (DEL) `element`; `wiring` goes to entry.build."""
    env = environment(environ)
    config = skel.decode_config(raw)
    version = require_supported(str(config.get("cniVersion") or "0.1.0"))
    ref = pod.identify(env.arg)
    if ref is None:
        raise CNIError(INVALID_ENVIRONMENT, f"env.CNI_ARGS {env.args!r} does not name the pod "
                       "(K8S_POD_NAMESPACE and K8S_POD_NAME)")  # fmt: skip
    if not isinstance(element, dict):
        raise CNIError(INVALID_NETWORK_CONFIG, f"network {element!r}: expected a JSON object, as an element of "
                       f"the {selection.NETWORKS_ANNOTATION} annotation")  # fmt: skip
    chosen = selection.parse_networks(json.dumps([element]), ref.namespace, annotation="network")[0]
    handler = entry.build(skel.Request(env, raw, config, version or LATEST), log, **wiring)
    orchestrator = handler.orchestrator
    if env.command == "DEL":
        hotplug.unplug(orchestrator, env.container_id, env.netns, chosen.ref, chosen.interface)
        return None
    resolver = orchestrator.pods
    if resolver is None:
        raise CNIError(INVALID_NETWORK_CONFIG, f"network {chosen.ref}: hot-plug resolves NetworkAttachmentDefinitions, "
                       "which needs the Kubernetes API, and the conf has no kubeconfig")  # fmt: skip
    wanted = resolver.hotplugged(ref, chosen)
    return hotplug.plug(orchestrator, env.container_id, env.netns, wanted, version)
