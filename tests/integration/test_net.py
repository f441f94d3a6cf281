"""multipy.net's one way into a namespace: netlink and sysctls reach the pod from a thread, never a fork,
and a namespace that is not there is NetnsGone whichever step notices."""

from __future__ import annotations

import errno
import ipaddress
import os

import pytest

from multipy.net import sysctl
from multipy.net.netlink import KernelRoute, LinkError, Netlink
from multipy.net.netns import NetnsGone, run_in
from multipy.testing import kernel

GONE = "/run/netns/mp-no-such-namespace"


def _own_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_a_namespace_is_reached_from_the_callers_thread(netns):
    pod = netns("pod")
    path = f"/run/netns/{pod}"
    before = _own_netns()
    with Netlink().open(path) as ns:
        assert [ns.link("lo").name] == ["lo"] and ns.link("eth0") is None
        ns.create_veth("mpa", "mpb", path, mtu=1400, peer_mac="02:00:00:00:00:0b")
        a, b = ns.link("mpa"), ns.link("mpb")
        assert (a.kind, a.mtu, b.mac, a.link_index, b.link_index) == ("veth", 1400, "02:00:00:00:00:0b", b.index, a.index)
        ns.set_up(a.index)
        ns.set_up(b.index)
        ns.add_address(a.index, ipaddress.ip_interface("192.0.2.2/24"))
        ns.append_route(KernelRoute(ipaddress.ip_network("0.0.0.0/0"), oif=a.index,
                                    gateway=ipaddress.ip_address("192.0.2.1")))  # fmt: skip
        with pytest.raises(LinkError) as refused:
            ns.create_link("mpa", "bridge")
        assert refused.value.errno == errno.EEXIST
        assert [r.gateway for r in ns.default_routes(4)] == [ipaddress.ip_address("192.0.2.1")]
        assert _own_netns() == before  # the socket is the pod's; this thread never left home
    assert kernel.addresses(pod, "mpa") == {"mpa": ["192.0.2.2/24"]}
    assert kernel.links(pod)["mpa"]["operstate"] == "UP"
    assert "mpa" not in kernel.links(None)


def test_dumps_read_back_what_was_set_per_link_and_per_table(netns):
    """addresses() and routes() ask the kernel to filter (by link, by table): each returns exactly its own,
    whatever else the namespace holds; every verb's effect is read back from the kernel."""
    pod = netns("dumps")
    ip = ipaddress.ip_interface
    net = ipaddress.ip_network
    with Netlink().open(f"/run/netns/{pod}") as ns:
        ns.create_link("mpd0", "bridge", 1400)
        ns.create_link("mpd1", "bridge")
        d0, d1 = ns.link("mpd0"), ns.link("mpd1")
        assert (d0.kind, d0.mtu, d0.up) == ("bridge", 1400, False)
        for index in (d0.index, d1.index):
            ns.set_up(index)
        ns.add_address(d0.index, ip("198.51.100.2/24"))
        ns.add_address(d0.index, ip("2001:db8::2/64"))
        ns.add_address(d1.index, ip("203.0.113.2/24"))
        assert {a for a in ns.addresses(d0.index) if not a.ip.is_link_local} == {ip("198.51.100.2/24"),
                                                                                   ip("2001:db8::2/64")}  # fmt: skip
        assert [a for a in ns.addresses(d1.index) if not a.ip.is_link_local] == [ip("203.0.113.2/24")]
        ns.del_address(d1.index, ip("203.0.113.2/24"))
        assert [a for a in ns.addresses(d1.index) if not a.ip.is_link_local] == []
        gw = ipaddress.ip_address("198.51.100.1")
        for table in (254, 100, 1000):
            ns.append_route(KernelRoute(net("10.10.0.0/16"), oif=d0.index, gateway=gw, table=table))
        ns.append_route(KernelRoute(net("0.0.0.0/0"), oif=d0.index, gateway=gw, table=1000, priority=7))
        ns.replace_route(KernelRoute(net("2001:db8:1::/48"), oif=d0.index, table=100))
        assert {(r.dst, r.table) for r in ns.routes(4) if r.gateway} == {(net("10.10.0.0/16"), 254)}
        assert {str(r.dst) for r in ns.routes(4, 1000)} == {"10.10.0.0/16", "0.0.0.0/0"}
        assert [(r.priority, r.gateway) for r in ns.default_routes(4, 1000)] == [(7, gw)]
        assert ns.default_routes(4) == []
        assert [str(r.dst) for r in ns.routes(6, 100)] == ["2001:db8:1::/48"]
        every = {(str(r.dst), r.table) for r in ns.routes(4, None) if r.gateway}
        assert every >= {("10.10.0.0/16", 254), ("10.10.0.0/16", 100), ("10.10.0.0/16", 1000), ("0.0.0.0/0", 1000)}
        for route in ns.routes(4, 1000):
            ns.del_route(route)
        assert ns.routes(4, 1000) == []
        ns.set_mtu(d1.index, 1300)
        ns.set_mac(d1.index, "02:00:00:00:00:d1")
        ns.set_promisc(d1.index)
        ns.rename(d1.index, "mpd9")
        renamed = ns.link(index=d1.index)
        assert (renamed.name, renamed.mtu, renamed.mac, renamed.promisc) == ("mpd9", 1300, "02:00:00:00:00:d1", True)
        assert ns.delete_link(d1.index) and not ns.delete_link(d1.index) and ns.link("mpd9") is None
    assert "198.51.100.2/24" in kernel.addresses(pod, "mpd0")["mpd0"]


def test_sysctls_are_the_namespaces(netns):
    pod = netns("pod")
    path = f"/run/netns/{pod}"
    sysctl.write(path, {"net/ipv4/conf/lo/arp_notify": "1"})
    assert sysctl.read(path, "net/ipv4/conf/lo/arp_notify") == "1"
    assert sysctl.write_each(path, {"net/ipv4/conf/nosuch/arp_notify": "1"}).keys() == {
        "net/ipv4/conf/nosuch/arp_notify"
    }


@pytest.mark.parametrize("step", ["run_in", "open", "sysctl", "create_veth", "create_macvlan"])
def test_a_missing_namespace_is_netns_gone_everywhere(step):
    with pytest.raises(NetnsGone) as gone:
        if step == "run_in":
            run_in(GONE, os.getpid)
        elif step == "open":
            with Netlink().open(GONE):
                pass
        elif step == "sysctl":
            sysctl.read(GONE, "net/ipv4/ip_forward")
        else:
            with Netlink().open(None) as host:
                if step == "create_veth":
                    host.create_veth("mpgone0", "eth0", GONE)
                else:
                    host.create_macvlan("mpgone0", 1, "bridge", GONE)
    assert gone.value.errno == errno.ENOENT and gone.value.filename == GONE
    assert gone.value.cni_error().code == 8
    assert not os.path.exists(GONE)
