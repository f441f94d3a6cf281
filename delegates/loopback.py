"""loopback: brings the loopback link (CNI_IFNAME, normally `lo`) up in the pod namespace.

Behaves as containernetworking/plugins main/loopback.
"""

from __future__ import annotations

import os

from multipy.cni.errors import INVALID_NETNS, CNIError
from multipy.cni.result import Interface, IPConfig, Result
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.net.netlink import Link, Namespace, Netlink
from multipy.net.netns import NetnsGone
from multipy.plugins.contract import Invocation, Services


def _loopback(pod: Namespace, ifname: str) -> Link:
    found = pod.link(ifname)
    if found is None:
        raise CNIError(INVALID_NETNS, f"link {ifname!r} not found")
    return found


class Loopback:
    supported_versions = SUPPORTED_VERSIONS
    config_schema = os.path.join(os.path.dirname(__file__), "loopback.schema.json")  # the contract's

    def __init__(self, services: Services) -> None:
        self.netlink: Netlink = services.netlink or Netlink()

    def add(self, inv: Invocation, conf: dict) -> Result:
        try:
            with self.netlink.open(inv.netns) as pod:
                lo = _loopback(pod, inv.ifname)
                pod.set_up(lo.index)
                addresses = pod.addresses(lo.index)
        except NetnsGone as gone:
            raise gone.cni_error() from None
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
            with self.netlink.open(inv.netns) as pod:
                lo = pod.link(inv.ifname)
                if lo is not None:
                    pod.set_up(lo.index, up=False)
        except NetnsGone:
            pass  # the runtime already removed the namespace: nothing left to undo

    def check(self, inv: Invocation, conf: dict) -> None:
        try:
            with self.netlink.open(inv.netns) as pod:
                lo = pod.link(inv.ifname)
        except NetnsGone as gone:
            raise gone.cni_error() from None
        if lo is None or not lo.up:
            raise CNIError(INVALID_NETNS, "loopback interface is down")

    def gc(self, inv: Invocation, conf: dict) -> None:
        pass  # loopback holds no state outside the namespace

    def status(self, inv: Invocation, conf: dict) -> None:
        pass
