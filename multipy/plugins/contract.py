"""The contract between multipy and a native (in-process) plugin.

A native plugin is what a CNI binary would be, minus the process: it gets the
per-plugin CNI_* values and the parsed config, and returns a canonical Result
or raises CNIError. It is found by `type` in the entry-point groups below, so a
third-party package plugs in exactly as the built-ins in `delegates/` do:

    [project.entry-points."multipy.delegates"]
    mybridge = "mypkg.bridge:MyBridge"

The entry point names a factory called with the `Services` of this request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from multipy.clients.pool import EtcdPool, KubePool
from multipy.cni.env import Environment

if TYPE_CHECKING:
    from multipy.clients.etcd import Etcd
    from multipy.clients.kube import Kube
    from multipy.cni.result import Result
    from multipy.net.netlink import Netlink

DELEGATE_GROUP = "multipy.delegates"
IPAM_GROUP = "multipy.ipam"
# `multipy` subcommands a plugin package offers operators (see plugins/operator.py).
CLI_GROUP = "multipy.cli"


# A plugin's CNI_* values: the same type the runtime's call is parsed into.
Invocation = Environment


class IpamRunner(Protocol):
    """Runs a main plugin's IPAM plugin, native or binary, as libcni's DelegateAdd/Del/Check do:
    the IPAM plugin gets the main plugin's whole `conf` and CNI_* values. ADD returns its Result."""

    def __call__(self, inv: Invocation, conf: dict) -> Result | None: ...


class DelegateRunner(Protocol):
    """Runs another main plugin by its `type`, native or binary, as flannel runs its bridge.
    ADD returns its Result."""

    def __call__(self, inv: Invocation, conf: dict) -> Result | None: ...


class EtcdFactory(Protocol):
    """An etcd client for multipy.clients.etcd.connect()'s arguments (a timeout of None: connect()'s
    default), raising EtcdConfigError as it does. The client may be shared with other requests:
    use it, never close it."""

    def __call__(
        self,
        endpoints: str | Iterable[str],
        *,
        cert_file: str | None = None,
        key_file: str | None = None,
        ca_file: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> Etcd: ...


class KubeFactory(Protocol):
    """A Kubernetes API client for multipy.clients.kube.from_kubeconfig()'s arguments (path None or
    "": the in-cluster service account; a timeout of None: its default), raising KubeConfigError as
    it does. The connection may be shared; the client's `timeout` and `total_timeout` budget are the
    caller's own."""

    def __call__(
        self,
        path: str | None = None,
        *,
        timeout: float | None = None,
        total_timeout: float | None = None,
        context: str | None = None,
    ) -> Kube: ...


@dataclass
class Services:
    """What a native plugin may use, handed in rather than made globally.

    Clients come only from the `etcd` and `kube` factories and belong to whoever made the
    Services: a plugin uses them and never closes them. By default each Services has pools of
    its own that connect on first use (a one-shot CNI process pays for what it uses, nothing
    else); a long-lived process passes the factories of the ClientPool it keeps, so requests
    share connections. `ipam` and `delegate` are set by the chain running the request.
    """

    netlink: Netlink | None = None
    etcd: EtcdFactory = field(default_factory=EtcdPool)
    kube: KubeFactory = field(default_factory=KubePool)
    ipam: IpamRunner | None = None
    delegate: DelegateRunner | None = None


@runtime_checkable
class Plugin(Protocol):
    """One CNI plugin, in process. `conf` is the full plugin config as a runtime builds it."""

    supported_versions: tuple[str, ...]
    # The path of a JSON schema (draft 2020-12) file for the plugin's conf; an IPAM plugin's is
    # for its `ipam` object. Optional: without it, `multipy validate` reports the conf "not
    # checked". The loader checks each conf against it once (registry.schema_for).
    config_schema: str | None

    def add(self, inv: Invocation, conf: dict) -> Result: ...

    def delete(self, inv: Invocation, conf: dict) -> None: ...

    def check(self, inv: Invocation, conf: dict) -> None: ...

    def gc(self, inv: Invocation, conf: dict) -> None: ...

    def status(self, inv: Invocation, conf: dict) -> None: ...


PluginFactory = Callable[[Services], Plugin]
