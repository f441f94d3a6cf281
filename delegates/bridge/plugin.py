"""bridge: a veth from the pod into a Linux bridge on the node, as containernetworking/plugins main/bridge.

ADD follows the reference (1.1.1) step by step: bridge, veth pair, IPAM, the
container's sysctls and addressing, the gateway on the bridge, forwarding,
masquerading, the port's oper state, then MACs re-read for the result
`[bridge, host veth, container veth]`. Unlike the reference, a failure at any
step undoes the earlier ones (IPAM released, rules removed, veth deleted), and
DEL removes the masquerade rules even when the pod namespace is already gone.
Deliberate differences from 1.1.1, all fixed upstream since: the veths keep the
kernel's txqueuelen (1.1.1 gives them 0), and IPAM's DNS is kept when the conf
has none.
"""

from __future__ import annotations

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.cni.result import Interface, Result
from multipy.cni.undo import Undo
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.failpoints import failpoint
from multipy.net import netns
from multipy.net.netlink import Namespace, Netlink
from multipy.net.netns import NetnsGone
from multipy.plugins.contract import Invocation, Services

from ..ipam_runner import Ipam
from . import config, gateways, link


class Bridge:
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, services: Services) -> None:
        self.netlink: Netlink = services.netlink or Netlink()
        self.ipam = Ipam("bridge", services.ipam)

    # ------------------------------------------------------------ ADD

    def add(self, inv: Invocation, conf: dict) -> Result:
        c = config.parse(conf, inv)
        version = conf.get("cniVersion") or "0.1.0"
        try:
            # The pod's namespace first: a missing one fails the ADD before the bridge is made.
            with self.netlink.open(inv.netns) as pod, self.netlink.open() as host, Undo() as undo:
                bridge = link.ensure_bridge(host, c.bridge, c.mtu, c.promisc)
                failpoint("bridge.add.after_bridge")
                host_veth = link.create_veth(host, inv.netns, inv.ifname, c.mtu, c.mac)
                failpoint("bridge.add.after_veth")
                undo.push(link.delete, host, host_veth, what=f"deleting {host_veth}")
                link.attach_port(host, host_veth, bridge, c.hairpin)
                result = Result(version, interfaces=[
                    Interface(c.bridge), Interface(host_veth), Interface(inv.ifname, sandbox=inv.netns)])
                if c.layer3:
                    # Registered before the call: a failed IPAM ADD is DELed too (spec: delegated plugins).
                    undo.push(self.ipam.release, inv, conf, what="IPAM DEL")
                    self._address(inv, conf, c, host, pod, bridge, result, undo)
                else:
                    result.interfaces[2].mac = link.container_up(pod, inv.ifname)
                result.interfaces[1].mac = link.wait_port_up(host, host_veth).mac
                # The bridge's MAC may have changed with the new port or the gateway address.
                result.interfaces[0].mac = host.link(c.bridge).mac
                if c.dns is not None:
                    result.dns = c.dns
                return result
        except NetnsGone as gone:
            raise gone.cni_error() from None

    def _address(self, inv, conf, c: config.BridgeConf, host: Namespace, pod: Namespace, bridge, result: Result,
                 undo: Undo) -> None:  # fmt: skip
        ipam = self.ipam.add(inv, conf)
        failpoint("bridge.add.after_ipam")
        result.ips, result.routes, result.dns = ipam.ips, ipam.routes, ipam.dns
        bridge_addresses = gateways.apply(result, c.is_gateway, c.is_default_gateway)
        result.interfaces[2].mac = link.configure_container(pod, inv.netns, inv.ifname, result, c.enable_dad)
        failpoint("bridge.add.after_container_config")
        for address in bridge_addresses:
            link.ensure_gateway(host, bridge, address, c.force_address)
        for version in sorted({a.version for a in bridge_addresses}):
            link.enable_forwarding(version)
        if c.ip_masq:
            from multipy.net import masquerade  # ~7 ms of imports (hashlib, shutil) only where it is used

            undo.push(masquerade.teardown, c.name, inv.container_id, what="removing the masquerade rules")
            for ipc in result.ips:
                masquerade.setup(ipc.address, c.name, inv.container_id)

    # ------------------------------------------------------------ DEL

    def delete(self, inv: Invocation, conf: dict) -> None:
        c = config.parse(conf, inv)
        # No namespace given: nothing says where the link is (the reference skips it too). A namespace the
        # runtime already removed took the veth pair with it.
        if inv.netns:
            try:
                with self.netlink.open(inv.netns) as pod:
                    link.delete(pod, inv.ifname)
                failpoint("bridge.del.after_link")
            except NetnsGone:
                pass
        if not c.layer3:
            return
        failures: list[CNIError] = []
        # Each step runs even if the one before failed: DEL is best effort.
        steps: list = [(self.ipam, (inv, conf, "DEL"))]
        if c.ip_masq:
            from multipy.net import masquerade

            steps.append((masquerade.teardown, (c.name, inv.container_id)))
        for step, args in steps:
            try:
                step(*args)
            except CNIError as err:
                failures.append(err)
        if failures:
            first, *rest = failures
            raise CNIError(first.code, first.msg, "; ".join(filter(None, [first.details, *(e.msg for e in rest)])))

    # ------------------------------------------------------------ CHECK, GC, STATUS

    def check(self, inv: Invocation, conf: dict) -> None:
        from . import check  # CHECK is rare: its imports stay off the ADD/DEL path

        c = config.parse(conf, inv)
        if not netns.exists(inv.netns):  # a daemon may hold it as a passed fd only
            raise NetnsGone(inv.netns).cni_error()
        if c.layer3:
            self.ipam(inv, conf, "CHECK")
        prev = conf.get("prevResult")
        if not prev:
            raise CNIError(INVALID_NETWORK_CONFIG, "Required prevResult missing")
        result = Result.from_json(prev)
        try:
            check.verify_attachment(self.netlink, inv, c, result)
        except NetnsGone as gone:
            raise gone.cni_error() from None

    def gc(self, inv: Invocation, conf: dict) -> None:
        # The masquerade chains are named by a hash, so only IPAM can tell stale attachments apart.
        if config.parse(conf, inv).layer3:
            self.ipam(inv, conf, "GC")

    def status(self, inv: Invocation, conf: dict) -> None:
        if config.parse(conf, inv).layer3:
            self.ipam(inv, conf, "STATUS")
