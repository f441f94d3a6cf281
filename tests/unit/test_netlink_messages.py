"""multipy.net.netlink builds, for every verb that changes the kernel, the very message pyroute2's IPRoute
builds for the same call (its IPBatch compiles IPRoute's requests to bytes without sending them): the same
type, flags, fields and attributes, byte for byte but for the sequence number and port id. No root, no
kernel. (Dumps differ on purpose: they ask the kernel to filter by link or table; tests/integration/test_net.py
reads them back from real namespaces.)"""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from pyroute2.iproute.linux import IPBatch

from multipy.net import netlink
from multipy.net.netlink import KernelRoute

FD = 77  # the namespace fd both sides put in IFLA_NET_NS_FD


class Capture:
    """A Conversation that keeps what would be sent and answers nothing."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def next_seq(self) -> int:
        return 1

    def exchange(self, request: bytes, seq: int, dump: bool) -> list:
        self.sent.append(request)
        return []


def _canonical(data: bytes) -> bytes:
    """Without the sequence number and port id (header bytes 8-16), which differ by design."""
    return data[:8] + bytes(8) + data[16:]


@pytest.fixture
def ours(monkeypatch):
    @contextlib.contextmanager
    def fixed_fd(path):
        yield FD

    monkeypatch.setattr(netlink._netns, "fd", fixed_fd)
    capture = Capture()
    with netlink._pyroute2_lock:
        netlink._pyroute2 = netlink._pyroute2 or netlink._import_pyroute2()
    return capture, netlink.Namespace(capture, netlink._pyroute2)


V4 = ipaddress.ip_interface("10.244.1.4/24")
V4_31 = ipaddress.ip_interface("10.9.0.1/31")
V6 = ipaddress.ip_interface("fd00::4/64")
NET = ipaddress.ip_network
GW = ipaddress.ip_address

CASES = {
    "link get by name": (lambda ns: ns.link("eth0"), lambda b: b.link("get", ifname="eth0")),
    "link get by index": (lambda ns: ns.link(index=3), lambda b: b.link("get", index=3)),
    "create bridge": (lambda ns: ns.create_link("docker0", "bridge", 1400),
                      lambda b: b.link("add", ifname="docker0", kind="bridge", mtu=1400)),
    "create dummy, no mtu": (lambda ns: ns.create_link("d0", "dummy"), lambda b: b.link("add", ifname="d0", kind="dummy")),
    "create veth": (lambda ns: ns.create_veth("vethX", "eth0", "/x", mtu=1400, peer_mac="0a:58:00:00:00:01"),
                    lambda b: b.link("add", ifname="vethX", kind="veth", mtu=1400,
                                     peer={"ifname": "eth0", "net_ns_fd": FD, "mtu": 1400, "address": "0a:58:00:00:00:01"})),
    "create veth, kernel's mtu and mac": (lambda ns: ns.create_veth("vethY", "eth1", "/x"),
                                          lambda b: b.link("add", ifname="vethY", kind="veth",
                                                           peer={"ifname": "eth1", "net_ns_fd": FD})),
    "create macvlan": (lambda ns: ns.create_macvlan("mvtmp1", 3, "bridge", "/x", mtu=1400, mac="0a:58:00:00:00:02"),
                       lambda b: b.link("add", ifname="mvtmp1", kind="macvlan", link=3, macvlan_mode="bridge",
                                        net_ns_fd=FD, mtu=1400, address="0a:58:00:00:00:02")),
    "create macvlan passthru": (lambda ns: ns.create_macvlan("mvtmp2", 3, "passthru", "/x"),
                                lambda b: b.link("add", ifname="mvtmp2", kind="macvlan", link=3,
                                                 macvlan_mode="passthru", net_ns_fd=FD)),
    "delete": (lambda ns: ns.delete_link(7), lambda b: b.link("del", index=7)),
    "up": (lambda ns: ns.set_up(7), lambda b: b.link("set", index=7, state="up")),
    "down": (lambda ns: ns.set_up(7, False), lambda b: b.link("set", index=7, state="down")),
    "mtu": (lambda ns: ns.set_mtu(7, 1300), lambda b: b.link("set", index=7, mtu=1300)),
    "mac": (lambda ns: ns.set_mac(7, "0a:58:00:00:00:03"), lambda b: b.link("set", index=7, address="0a:58:00:00:00:03")),
    "master": (lambda ns: ns.set_master(7, 4), lambda b: b.link("set", index=7, master=4)),
    "master and up": (lambda ns: ns.set_master(7, 4, up=True), lambda b: b.link("set", index=7, master=4, state="up")),
    "rename": (lambda ns: ns.rename(7, "net1"), lambda b: b.link("set", index=7, ifname="net1")),
    "promisc on": (lambda ns: ns.set_promisc(7), lambda b: b.link("set", index=7, flags=0x100, change=0x100)),
    "promisc off": (lambda ns: ns.set_promisc(7, False), lambda b: b.link("set", index=7, flags=0, change=0x100)),
    "hairpin on": (lambda ns: ns.set_hairpin(7, True), lambda b: b.brport("set", index=7, mode=1)),
    "hairpin off": (lambda ns: ns.set_hairpin(7, False), lambda b: b.brport("set", index=7, mode=0)),
    "add v4": (lambda ns: ns.add_address(2, V4),
               lambda b: b.addr("add", index=2, address="10.244.1.4", prefixlen=24, broadcast="10.244.1.255")),
    "add v4 /31": (lambda ns: ns.add_address(2, V4_31), lambda b: b.addr("add", index=2, address="10.9.0.1", prefixlen=31)),
    "add v6": (lambda ns: ns.add_address(2, V6), lambda b: b.addr("add", index=2, address="fd00::4", prefixlen=64)),
    "del v4": (lambda ns: ns.del_address(2, V4), lambda b: b.addr("del", index=2, address="10.244.1.4", prefixlen=24)),
    "del v6": (lambda ns: ns.del_address(2, V6), lambda b: b.addr("del", index=2, address="fd00::4", prefixlen=64)),
}


def _route_spec(route: KernelRoute) -> dict:
    """What multipy gave IPRoute.route() for a KernelRoute before it built messages itself."""
    spec: dict = {"dst": str(route.dst), "proto": route.proto}
    if route.oif is not None:
        spec["oif"] = route.oif
    if route.gateway is not None:
        spec["gateway"] = str(route.gateway)
    return {**spec, **{k: v for k, v in {"priority": route.priority, "table": route.table, "scope": route.scope}.items()
                       if v}}  # fmt: skip


def _route_del_spec(route: KernelRoute) -> dict:
    spec = {"family": 2 if route.dst.version == 4 else 10, "dst_len": route.dst.prefixlen, "table": route.table,
            "oif": route.oif, "gateway": str(route.gateway) if route.gateway is not None else None,
            "priority": route.priority or None}  # fmt: skip
    if route.dst.prefixlen:
        spec["dst"] = str(route.dst.network_address)
    return spec


ROUTES = [
    KernelRoute(NET("10.244.0.0/16"), oif=2, gateway=GW("10.244.1.1")),
    KernelRoute(NET("0.0.0.0/0"), oif=2, gateway=GW("10.244.1.1")),
    KernelRoute(NET("10.9.0.0/16"), oif=2, table=0),  # ifconfig's "no table": main
    KernelRoute(NET("10.9.0.0/16"), oif=2, table=100, priority=5, scope=253, proto=4),
    KernelRoute(NET("10.9.0.0/16"), oif=2, table=255),
    KernelRoute(NET("10.9.0.0/16"), oif=2, table=1000, gateway=GW("10.9.0.1")),
    KernelRoute(NET("fd00::/64"), oif=2, gateway=GW("fd00::1"), proto=4),
    KernelRoute(NET("::/0"), oif=3, gateway=GW("fe80::1"), priority=1024),
]
for n, r in enumerate(ROUTES):
    CASES[f"append {n}: {r}"] = (lambda ns, r=r: ns.append_route(r), lambda b, r=r: b.route("append", **_route_spec(r)))
    CASES[f"replace {n}: {r}"] = (lambda ns, r=r: ns.replace_route(r), lambda b, r=r: b.route("replace", **_route_spec(r)))
    if r.table:
        CASES[f"del {n}: {r}"] = (lambda ns, r=r: ns.del_route(r), lambda b, r=r: b.route("del", **_route_del_spec(r)))


@pytest.mark.parametrize("case", list(CASES))
def test_the_message_is_pyroute2s(case, ours):
    capture, namespace = ours
    call, reference = CASES[case]
    call(namespace)
    batch = IPBatch()
    try:
        reference(batch)
        theirs = bytes(batch.batch)
    finally:
        batch.close()
    assert [_canonical(m) for m in capture.sent] == [_canonical(theirs)]
