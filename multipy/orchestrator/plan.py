"""Which delegate gets which interface, in which order."""

from __future__ import annotations

from dataclasses import dataclass, field

from multipy.cni.env import validate_ifname
from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.config.multus import MultusConf
from multipy.config.network import Network

from .record import Attachment


@dataclass(frozen=True)
class Wanted:
    """One network a pod gets, before it has an interface name."""

    network: Network
    master: bool = False
    interface: str | None = None  # asked for by the conf or the pod's annotation
    source: str = ""  # a NetworkAttachmentDefinition's namespace/name; empty for a conf delegate
    runtime_config: dict = field(default_factory=dict)  # per-attachment capability args (ips, mac, ...)
    cni_args: dict = field(default_factory=dict)  # merged into the delegate conf's args.cni
    default_route: tuple[str, ...] = ()  # gateways this attachment takes the default route(s) through


def from_conf(delegates) -> list[Wanted]:
    """The conf's own delegates (no API): a clusterNetwork known only as a NAD cannot be used."""
    wanted = []
    for delegate in delegates:
        if delegate.network is None:
            raise CNIError(INVALID_NETWORK_CONFIG, f"network {delegate.ref!r} is not in confDir and can only be a "
                           "NetworkAttachmentDefinition, which needs the pod (K8S_POD_NAMESPACE/K8S_POD_NAME) and "
                           "a kubeconfig")  # fmt: skip
        wanted.append(Wanted(delegate.network, delegate.master, delegate.interface))
    return wanted


def attachments(conf_or_wanted: MultusConf | list[Wanted], runtime_ifname: str) -> list[Attachment]:
    """The master first on the runtime's ifname, then the others in order, each on the name it
    asks for or on `net<position>`, as Multus names them (`a@foo, b` gives foo and net2).

    Running the master first is what legacy (v1/v2) Multus did with `masterplugin`, and a pod
    is useless without its primary interface anyway. Every name is checked here, before
    anything is created.
    """
    wanted = from_conf(conf_or_wanted.delegates) if isinstance(conf_or_wanted, MultusConf) else conf_or_wanted
    ordered = [w for w in wanted if w.master] + [w for w in wanted if not w.master]
    if len([w for w in wanted if w.master]) != 1:
        raise CNIError(INVALID_NETWORK_CONFIG, "exactly one delegate must be the master")
    planned: list[Attachment] = []
    seen: dict[str, str] = {}
    defaults: dict[int, str] = {}
    for position, item in enumerate(ordered):
        ifname = runtime_ifname if item.master else (item.interface or f"net{position}")
        label = item.source or item.network.name
        if item.interface and not item.master:
            validate_ifname(item.interface, f"interface of network {label!r}")
        if ifname in seen:
            raise CNIError(INVALID_NETWORK_CONFIG, f"interface name {ifname!r} of network {label!r} is already "
                           f"used by network {seen[ifname]!r}: give one of them another interface name")  # fmt: skip
        seen[ifname] = label
        for gateway in item.default_route:
            family = 6 if ":" in gateway else 4
            if family in defaults:
                raise CNIError(INVALID_NETWORK_CONFIG, f"networks {defaults[family]!r} and {label!r} both ask for "
                               f"the IPv{family} default route: at most one may")  # fmt: skip
            defaults[family] = label
        planned.append(Attachment(dict(item.network.source), ifname, item.master, source=item.source,
                                  runtime_config=dict(item.runtime_config), cni_args=dict(item.cni_args),
                                  default_route=list(item.default_route)))  # fmt: skip
    return planned

