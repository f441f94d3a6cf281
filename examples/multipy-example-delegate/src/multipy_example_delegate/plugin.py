"""`example-dummy`: a Linux dummy link named CNI_IFNAME in the pod, holding the conf's `address`.

    {"name": "example", "type": "example-dummy", "address": "192.0.2.10/24"}

ADD creates the link, puts the address on it and brings it up; DEL removes it; CHECK compares
the kernel with ADD's result. Everything goes through the `Netlink` multipy hands in with the
request's Services, so a long-lived multipy process can share its netlink plumbing with us.
"""

from __future__ import annotations

import errno

from multipy.cni.errors import INTERNAL, CNIError
from multipy.cni.result import Interface, IPConfig, Result
from multipy.cni.undo import Undo
from multipy.net import ifconfig, verify
from multipy.net.netlink import LinkError, Namespace, Netlink
from multipy.net.netns import NetnsGone
from multipy.plugins.contract import Invocation, Services

from . import config

# The dummy driver where the kernel has it. Some minimal kernels (microVM kernels, such as the
# machines multipy's CI runs on) are built without it; ifb has the same shape there: a standalone
# link with no peer and no lower device, which carries an address like any other.
KINDS = ("dummy", "ifb")


class ExampleDummy:
    # Results with interfaces exist from 0.3.0 on; multipy refuses other versions with code 1.
    supported_versions = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

    def __init__(self, services: Services) -> None:
        self.netlink: Netlink = services.netlink or Netlink()

    def add(self, inv: Invocation, conf: dict) -> Result:
        settings = config.load(conf)  # before the kernel is touched: a bad conf leaves nothing behind
        result = Result(
            cni_version=conf["cniVersion"],
            interfaces=[Interface(name=inv.ifname, sandbox=inv.netns)],
            ips=[IPConfig(address=settings.address, interface=0)],
        )
        try:
            # A failed ADD undoes its own work (the spec asks it of every plugin; not every caller DELs).
            with self.netlink.open(inv.netns) as pod, Undo() as undo:
                self._create(pod, inv.ifname)
                undo.push(self._remove, pod, inv.ifname, what=f"deleting {inv.ifname!r}")
                try:
                    ifconfig.configure(pod, inv.netns, inv.ifname, result)
                except ifconfig.ConfigureError as exc:
                    raise CNIError(INTERNAL, f"example-dummy: {exc}") from None
                result.interfaces[0].mac = pod.link(inv.ifname).mac
        except NetnsGone as gone:
            raise gone.cni_error() from None
        return result

    def delete(self, inv: Invocation, conf: dict) -> None:
        # DEL must succeed when there is nothing left to undo: no namespace, or no link.
        if not inv.netns:
            return
        try:
            with self.netlink.open(inv.netns) as pod:
                self._remove(pod, inv.ifname)
        except NetnsGone:
            pass

    def check(self, inv: Invocation, conf: dict) -> None:
        prev = config.prev_result(conf)
        expected = [ip for ip in prev.ips if ip.interface == 0]
        try:
            with self.netlink.open(inv.netns) as pod:
                link = pod.link(inv.ifname)
                if link is None or link.kind not in KINDS:
                    found = "no link" if link is None else f"a {link.kind or 'plain'} link"
                    raise CNIError(INTERNAL, f"example-dummy: expected a dummy link {inv.ifname!r}, found {found}")
                if not link.up:
                    raise CNIError(INTERNAL, f"example-dummy: {inv.ifname!r} is down")
                if prev.interfaces and prev.interfaces[0].mac and prev.interfaces[0].mac != link.mac:
                    raise CNIError(
                        INTERNAL, f"example-dummy: {inv.ifname!r} has MAC {link.mac}, ADD gave it {prev.interfaces[0].mac}"
                    )
                try:
                    verify.interface_ips(pod, inv.ifname, expected)
                except verify.CheckError as exc:
                    raise CNIError(INTERNAL, f"example-dummy: {exc}") from None
        except NetnsGone as gone:
            raise gone.cni_error() from None

    def gc(self, inv: Invocation, conf: dict) -> None:
        pass  # all its state lives in the pod's namespace, which goes with the pod

    def status(self, inv: Invocation, conf: dict) -> None:
        pass  # needs nothing outside the pod to be ready

    @staticmethod
    def _create(pod: Namespace, ifname: str) -> None:
        for kind in KINDS:
            try:
                pod.create_link(ifname, kind)
                return
            except LinkError as exc:
                if exc.errno == errno.EOPNOTSUPP and kind != KINDS[-1]:
                    continue  # this kernel lacks the driver: the next kind
                raise CNIError(INTERNAL, f"example-dummy: failed to create {ifname!r}: {exc.strerror}") from None

    @staticmethod
    def _remove(pod: Namespace, ifname: str) -> None:
        link = pod.link(ifname)
        # Only what this plugin could have made: a link of another kind under that name is not ours.
        if link is None or link.kind not in KINDS:
            return
        try:
            pod.delete_link(link.index)  # gone meanwhile is what we wanted
        except LinkError as exc:
            raise CNIError(INTERNAL, f"example-dummy: failed to delete {ifname!r}: {exc.strerror}") from None
