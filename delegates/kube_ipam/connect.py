"""The etcd and Kubernetes clients kube-ipam uses: taken from Services when a daemon hands them
in, else made here. Their failures become CNI errors that name the config key or endpoint.

Services.etcd and Services.kube are factories: `services.etcd(etcd_config)` with the
kube-ipam `etcdConfig` dict, `services.kube(kubeconfig_path)`. A daemon wraps
`open_etcd` and `open_kube` in a cache keyed by those arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from multipy.clients import etcd as etcd_client
from multipy.clients import kube as kube_client
from multipy.cni.errors import INVALID_NETWORK_CONFIG, TRY_AGAIN_LATER, CNIError
from multipy.plugins.contract import Services

from .config import EtcdConfig

# kube-ipam dials for 5 s; a call (failover across the endpoints included) gets as long.
ETCD_TIMEOUT = 5.0
ETCD_CONNECT_TIMEOUT = 2.0
KUBE_TIMEOUT = 10.0

# connect()'s argument names, as the etcdConfig keys an operator wrote.
_ETCD_KEYS = {"endpoints": "etcdURL", "cert_file": "etcdCertFile", "key_file": "etcdKeyFile",
              "ca_file": "etcdTrustedCAFileFile", "timeout": "etcdURL"}  # fmt: skip


def open_etcd(etcd_config: dict) -> etcd_client.Etcd:
    """A client for a kube-ipam `etcdConfig` (the default Services.etcd factory)."""
    try:
        return etcd_client.connect(
            etcd_config.get("etcdURL", ""),
            cert_file=etcd_config.get("etcdCertFile") or None,
            key_file=etcd_config.get("etcdKeyFile") or None,
            ca_file=etcd_config.get("etcdTrustedCAFileFile") or None,
            timeout=ETCD_TIMEOUT,
            connect_timeout=ETCD_CONNECT_TIMEOUT,
        )
    except etcd_client.EtcdConfigError as error:
        key = _ETCD_KEYS.get(error.field, error.field)
        raise CNIError(INVALID_NETWORK_CONFIG, f"ipam.etcdConfig.{key}: {error.reason}") from None


def open_kube(kubeconfig: str) -> kube_client.Kube:
    """A client for ipam.kubeConfig (the default Services.kube factory)."""
    try:
        return kube_client.from_kubeconfig(kubeconfig, timeout=KUBE_TIMEOUT)
    except kube_client.KubeConfigError as error:
        raise CNIError(INVALID_NETWORK_CONFIG, f"ipam.kubeConfig: {error}") from None


class Clients:
    """The clients of one request; what this object made itself it also closes."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._made: list = []

    def etcd(self, config: EtcdConfig):
        if self.services.etcd is not None:
            try:
                return self.services.etcd(config.as_dict())
            except etcd_client.EtcdConfigError as error:
                key = _ETCD_KEYS.get(error.field, error.field)
                raise CNIError(INVALID_NETWORK_CONFIG, f"ipam.etcdConfig.{key}: {error.reason}") from None
        client = open_etcd(config.as_dict())
        self._made.append(client)
        return client

    def kube(self, kubeconfig: str):
        if self.services.kube is not None:
            return self.services.kube(kubeconfig)
        client = open_kube(kubeconfig)
        self._made.append(client)
        return client

    def close(self) -> None:
        made, self._made = self._made, []
        for client in made:
            client.close()


@contextmanager
def etcd_errors(what: str, code: int = TRY_AGAIN_LATER) -> Iterator[None]:
    """etcd being unreachable (or without quorum) as a CNI error: by default 11, a retry can succeed."""
    try:
        yield
    except etcd_client.EtcdUnavailable as error:
        raise CNIError(code, f"kube-ipam {what}: {error}") from None
