"""What `multipy status` checks for a kube-ipam network (KubeIpam.status_checks): that its etcd
serves, and the Kubernetes API it would read the pod's annotations through.

Each etcd is checked once per run, however many networks use it; each kubeconfig once too (the
conf's own is checked by multipy). A network whose runtime hands over the annotations (it declares
the `io.kubernetes.cri.pod-annotations` capability) and names no kubeConfig needs no API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multipy.clients.etcd import EtcdUnavailable
from multipy.cni.errors import CNIError
from multipy.plugins.operator import Check

from . import config
from .connect import open_etcd
from .pods import ANNOTATIONS_CAPABILITY

if TYPE_CHECKING:
    from multipy.plugins.operator import StatusProbe


def kubeconfig(conf: dict) -> str | None:
    """The kubeconfig kube-ipam reads pods through for this plugin `conf`: ipam.kubeConfig, else
    kube-ipam's default; None when the runtime hands the annotations over and none is named."""
    ipam = conf.get("ipam") if isinstance(conf.get("ipam"), dict) else {}
    path = ipam.get("kubeConfig")
    if isinstance(path, str) and path.strip():
        return path.strip()
    capabilities = conf.get("capabilities") if isinstance(conf.get("capabilities"), dict) else {}
    return None if capabilities.get(ANNOTATIONS_CAPABILITY) is True else config.DEFAULT_KUBECONFIG


def _etcd(where: config.EtcdConfig, subject: str, probe: StatusProbe) -> Check:
    try:
        client = open_etcd(probe.etcd, where, timeout=probe.timeout, connect_timeout=probe.timeout)
        status = client.status()
    except CNIError as error:
        return Check("etcd", subject, False, error.msg)
    except EtcdUnavailable as error:
        return Check("etcd", subject, False, str(error))
    return Check("etcd", subject, True, f"etcd {status.version} at {status.endpoint} serves (revision {status.revision})")


def status_checks(conf: dict, probe: StatusProbe) -> list[Check]:
    name = conf.get("name", "")
    checks = []
    try:
        where = config.location(conf).etcd
    except CNIError as error:
        checks.append(Check("etcd", f"{name}: kube-ipam", False, error.msg))
    else:
        if probe.first(("kube-ipam etcd", where)):
            checks.append(_etcd(where, f"{name}: {where.url}", probe))
    path = kubeconfig(conf)
    if path is not None and (api := probe.api(path, f"{name}: ipam.kubeConfig")) is not None:
        checks.append(api)
    return checks
