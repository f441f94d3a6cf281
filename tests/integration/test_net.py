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
