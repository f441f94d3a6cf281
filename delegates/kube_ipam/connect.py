"""The etcd and Kubernetes clients kube-ipam uses, always from the factories of the Services it was
given (a daemon's pool, or the request's own), in kube-ipam's terms: its config keys in, CNI errors
that name the key or endpoint out. The clients belong to the Services: nothing here closes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from multipy.clients.etcd import EtcdConfigError, EtcdUnavailable
from multipy.clients.kube import KubeConfigError
from multipy.cni.errors import INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, CNIError

if TYPE_CHECKING:
    from multipy.clients.etcd import Etcd
    from multipy.clients.kube import Kube
    from multipy.plugins.contract import EtcdFactory, KubeFactory, Services

    from .config import EtcdConfig

# kube-ipam dials for 5 s; a call (failover across the endpoints included) gets as long.
ETCD_TIMEOUT = 5.0
ETCD_CONNECT_TIMEOUT = 2.0
KUBE_TIMEOUT = 10.0

# connect()'s argument names, as the etcdConfig keys an operator wrote.
ETCD_KEYS = {"endpoints": "etcdURL", "cert_file": "etcdCertFile", "key_file": "etcdKeyFile",
             "ca_file": "etcdTrustedCAFileFile", "timeout": "etcdURL"}  # fmt: skip


def etcd_config_error(error: EtcdConfigError) -> CNIError:
    """An unusable etcdConfig as code 7 naming the key: `ipam.etcdConfig.etcdCertFile: ...`."""
    return CNIError(INVALID_NETWORK_CONFIG, f"ipam.etcdConfig.{ETCD_KEYS.get(error.field, error.field)}: {error.reason}")


def open_etcd(
    factory: EtcdFactory, where: EtcdConfig, timeout: float = ETCD_TIMEOUT, connect_timeout: float = ETCD_CONNECT_TIMEOUT
) -> Etcd:
    """The client for an `ipam.etcdConfig`."""
    try:
        return factory(where.url, cert_file=where.cert_file or None, key_file=where.key_file or None,
                       ca_file=where.ca_file or None, timeout=timeout, connect_timeout=connect_timeout)  # fmt: skip
    except EtcdConfigError as error:
        raise etcd_config_error(error) from None


def open_kube(factory: KubeFactory, kubeconfig: str, timeout: float = KUBE_TIMEOUT) -> Kube:
    """The client for `ipam.kubeConfig`."""
    try:
        return factory(kubeconfig, timeout=timeout)
    except KubeConfigError as error:
        raise CNIError(INVALID_NETWORK_CONFIG, f"ipam.kubeConfig: {error}") from None


class Clients:
    """The clients of one request, from its Services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def etcd(self, where: EtcdConfig) -> Etcd:
        return open_etcd(self.services.etcd, where)

    def kube(self, kubeconfig: str) -> Kube:
        return open_kube(self.services.kube, kubeconfig)


@contextmanager
def etcd_errors(what: str, code: int = TRY_AGAIN_LATER) -> Iterator[None]:
    """etcd being unreachable (or without quorum) as a CNI error: by default 11, a retry can succeed."""
    try:
        yield
    except EtcdUnavailable as error:
        raise CNIError(code, f"kube-ipam {what}: {error}") from None
