"""The macvlan plugin's commands, in the order containernetworking/plugins main/macvlan runs them.

ADD: link created inside the pod under a temporary name, renamed to CNI_IFNAME,
IPAM ADD, arp_notify/ndisc_notify, addresses, link up, routes. Unlike Debian's
1.1.1 (whose link cleanup is shadowed), any failure after the link exists
deletes it, and any failure after IPAM ADD was tried runs IPAM DEL: nothing leaks.
DEL never looks at the master (fixed upstream in v1.4.0), so it succeeds
without it, as without the namespace or the link.
"""

from __future__ import annotations

from dataclasses import replace

from multipy.cni.errors import INTERNAL, INVALID_NETWORK_CONFIG, CNIError
from multipy.cni.result import Interface, Result
from multipy.cni.undo import Undo, add_details
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.failpoints import failpoint
from multipy.net import sysctl
from multipy.net.ifconfig import ConfigureError, configure
from multipy.net.netlink import Link, Namespace, Netlink
from multipy.net.netns import NetnsGone
from multipy.net.verify import CheckError, interface_ips, routes
from multipy.plugins.contract import Invocation, Services

from ..ipam_runner import Ipam
from . import link
from .config import MIN_MTU, MacvlanConf, ipam_type, load


class Macvlan:
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, services: Services) -> None:
        self.netlink: Netlink = services.netlink or Netlink()
        self.ipam = Ipam("macvlan", services.ipam)

    # ---- helpers -------------------------------------------------------------

    def _master(self, host: Namespace, cfg: MacvlanConf) -> Link:
        parent = link.master(host, cfg.master or link.default_route_interface(host))
        if cfg.mtu > parent.mtu:
            raise CNIError(
                INVALID_NETWORK_CONFIG,
                f"invalid mtu {cfg.mtu}: must be 0 or in [{MIN_MTU}, {parent.mtu}], {parent.mtu} being the MTU of master {parent.name!r}",
            )
        # The kernel would only refuse this when the link comes up, after IPAM ran; passthru takes the master's MAC anyway.
        if cfg.mac and cfg.mode != "passthru" and cfg.mac == parent.mac:
            raise CNIError(INVALID_NETWORK_CONFIG, f'invalid mac "{cfg.mac}": it is the MAC of master {parent.name!r}')
        return parent

    # ---- ADD -----------------------------------------------------------------

    def add(self, inv: Invocation, conf: dict) -> Result:
        cfg = load(conf, inv.arg("MAC"))
        try:
            with self.netlink.open(inv.netns) as pod, Undo() as undo:
                temporary = link.temporary_name(inv.container_id, inv.ifname)
                link.remove(pod, temporary)  # a killed ADD's, before its rename: this attachment's own
                with self.netlink.open() as host:
                    parent = self._master(host, cfg)
                    temporary = link.create(host, inv.netns, parent, cfg.mode, cfg.mtu, cfg.mac, temporary)
                failpoint("macvlan.add.after_create")
                made = link.rename(pod, temporary, inv.ifname)
                undo.push(link.remove, pod, inv.ifname, what=f"deleting {inv.ifname!r}")
                failpoint("macvlan.add.after_rename")
                result = Result(cfg.cni_version, [Interface(inv.ifname, made.mac, sandbox=inv.netns)], dns=cfg.dns)
                if cfg.ipam_type:
                    # Registered before the call: a failed IPAM ADD is DELed too (SPEC "Delegated plugins"),
                    # it may hold a partial lease.
                    undo.push(self.ipam.release, inv, conf, what="IPAM DEL")
                    self._address(inv, conf, pod, made, result)
                else:
                    link.set_up(pod, inv.ifname)
                return result
        except NetnsGone as gone:
            raise gone.cni_error() from None

    def _address(self, inv: Invocation, conf: dict, pod: Namespace, made: Link, result: Result) -> None:
        found = self.ipam.add(inv, conf)
        failpoint("macvlan.add.after_ipam")
        result.ips = [replace(ipc, interface=0) for ipc in found.ips]
        result.routes = list(found.routes)
        self._notify(inv)
        try:
            configure(pod, inv.netns, inv.ifname, result, made)
        except ConfigureError as exc:
            raise CNIError(INTERNAL, str(exc)) from None

    @staticmethod
    def _notify(inv: Invocation) -> None:
        # Best effort, each on its own, as the reference: ndisc_notify (v1.4.0+) fails where the pod has IPv6 off.
        keys = (f"net/ipv4/conf/{inv.ifname}/arp_notify", f"net/ipv6/conf/{inv.ifname}/ndisc_notify")
        sysctl.write_each(inv.netns, dict.fromkeys(keys, "1"))

    # ---- DEL -----------------------------------------------------------------

    def delete(self, inv: Invocation, conf: dict) -> None:
        # The link goes even when IPAM DEL fails: a retried DEL still finds the lease to release.
        failure: CNIError | None = None
        try:
            if ipam_type(conf):
                self.ipam(inv, conf, "DEL")
        except CNIError as exc:
            failure = exc
        failpoint("macvlan.del.after_ipam")
        if inv.netns:
            try:
                with self.netlink.open(inv.netns) as pod:
                    link.remove(pod, inv.ifname)
                    # An ADD killed between create and rename left it under its derived temporary name.
                    link.remove(pod, link.temporary_name(inv.container_id, inv.ifname))
            except NetnsGone:
                pass  # the runtime already removed the namespace, and the link with it
            except CNIError as exc:
                if failure is None:
                    raise
                add_details(failure, exc.msg)
        if failure is not None:
            raise failure

    # ---- CHECK ---------------------------------------------------------------

    def check(self, inv: Invocation, conf: dict) -> None:
        cfg = load(conf, inv.arg("MAC"))
        if cfg.ipam_type:
            self.ipam(inv, conf, "CHECK")
        if conf.get("prevResult") is None:
            raise CNIError(INVALID_NETWORK_CONFIG, "required prevResult missing")
        prev = Result.from_json(conf["prevResult"])
        index, expected = next(
            ((n, i) for n, i in enumerate(prev.interfaces) if i.name == inv.ifname and i.sandbox == inv.netns),
            (None, None),
        )
        if expected is None:
            raise CNIError(
                INTERNAL,
                f"prevResult has no interface {inv.ifname!r} with sandbox {inv.netns!r} (the configured netns)",
            )
        with self.netlink.open() as host:
            parent = self._master(host, cfg)
        try:
            with self.netlink.open(inv.netns) as pod:
                _expect_link(inv.ifname, pod.link(inv.ifname), cfg, expected, parent)
                try:
                    interface_ips(pod, inv.ifname, [ipc for ipc in prev.ips if ipc.interface in (None, index)])
                    routes(pod, prev.routes)
                except CheckError as exc:
                    raise CNIError(INTERNAL, str(exc)) from None
        except NetnsGone as gone:
            raise gone.cni_error() from None

    # ---- GC, STATUS: the IPAM's business -------------------------------------

    def gc(self, inv: Invocation, conf: dict) -> None:
        if ipam_type(conf):
            self.ipam(inv, conf, "GC")

    def status(self, inv: Invocation, conf: dict) -> None:
        if ipam_type(conf):
            self.ipam(inv, conf, "STATUS")


def _expect_link(ifname: str, current: Link | None, cfg: MacvlanConf, expected: Interface, parent: Link) -> None:
    if current is None:
        raise CNIError(INTERNAL, f"container interface {ifname!r} of prevResult not found in the pod")
    if current.kind != "macvlan":
        raise CNIError(
            INTERNAL, f"container interface {ifname!r} is of type {current.kind or 'unknown'!r}, not macvlan"
        )
    if current.macvlan_mode != cfg.mode:
        raise CNIError(
            INTERNAL, f"container macvlan mode {current.macvlan_mode} does not match expected value: {cfg.mode}"
        )
    if expected.mac and expected.mac.lower() != current.mac:
        raise CNIError(INTERNAL, f"Interface {ifname} Mac {expected.mac} doesn't match container Mac: {current.mac}")
    if (current.link_index or 0) != parent.index:
        raise CNIError(
            INTERNAL,
            f"macvlan {ifname!r} is not on master {parent.name!r}: its lower link has index "
            f"{current.link_index or 0}, the master's is {parent.index}",
        )
