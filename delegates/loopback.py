"""loopback: brings the loopback link (CNI_IFNAME, normally `lo`) up in the pod namespace.

Behaves as containernetworking/plugins main/loopback.
"""

from __future__ import annotations

from multipy.cni.errors import INVALID_NETNS, CNIError
from multipy.cni.result import Interface, IPConfig, Result
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.net.netlink import Netlink, NetnsGone
from multipy.plugins.contract import Invocation, Services


class Loopback:
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, services: Services) -> None:
        self.netlink: Netlink = services.netlink or Netlink()

    def _route(self, inv: Invocation):
        return self.netlink.route(inv.netns)

    def add(self, inv: Invocation, conf: dict) -> Result:
        try:
            with self._route(inv) as ipr:
                self.netlink.set_up(ipr, inv.ifname)
                addresses = self.netlink.addresses(ipr, inv.ifname)
        except NetnsGone:
            raise CNIError(INVALID_NETNS, f"failed to open netns {inv.netns!r}: no such namespace") from None
        # Like the reference: the addresses the kernel gives lo once it is up.
        return Result(
            cni_version=conf["cniVersion"],
            interfaces=[Interface(name=inv.ifname, mac="00:00:00:00:00:00", sandbox=inv.netns)],
            ips=[IPConfig(address=a, interface=0) for a in addresses],
        )

    def delete(self, inv: Invocation, conf: dict) -> None:
        if not inv.netns:
            return
        try:
            with self._route(inv) as ipr:
                if self.netlink.index(ipr, inv.ifname) is not None:
                    self.netlink.set_up(ipr, inv.ifname, up=False)
        except NetnsGone:
            pass  # the runtime already removed the namespace: nothing left to undo

    def check(self, inv: Invocation, conf: dict) -> None:
        try:
            with self._route(inv) as ipr:
                up = self.netlink.is_up(ipr, inv.ifname)
        except NetnsGone:
            raise CNIError(INVALID_NETNS, f"failed to open netns {inv.netns!r}: no such namespace") from None
        if not up:
            raise CNIError(INVALID_NETNS, "loopback interface is down")

    def gc(self, inv: Invocation, conf: dict) -> None:
        pass  # loopback holds no state outside the namespace

    def status(self, inv: Invocation, conf: dict) -> None:
        pass
