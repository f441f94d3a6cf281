"""multipy.ipam.routes and .resolv: the routes and DNS an IPAM result carries."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.cni.result import DNS, Route
from multipy.ipam.resolv import parse_resolv_conf
from multipy.ipam.routes import parse_routes


def test_routes_parse_dst_gw_and_the_1_1_fields():
    routes = parse_routes(
        [
            {"dst": "0.0.0.0/0"},
            {"dst": "10.2.0.0/16", "gw": "10.1.2.254"},
            {"dst": "10.3.0.5/16", "gw": ""},  # host bits kept by libcni, masked here: the kernel masks them
            {"dst": "fd01::/64", "gw": "fd00::1", "mtu": 1400, "advmss": 1360, "priority": 10, "table": 0, "scope": 0},
        ],
        "ipam.routes",
    )
    assert routes == [
        Route(ip_network("0.0.0.0/0")),
        Route(ip_network("10.2.0.0/16"), ip_address("10.1.2.254")),
        Route(ip_network("10.3.0.0/16")),
        Route(ip_network("fd01::/64"), ip_address("fd00::1"), mtu=1400, advmss=1360, priority=10, table=0, scope=0),
    ]
    assert parse_routes(None, "ipam.routes") == []


@pytest.mark.parametrize(
    "value, message",
    [
        ({"dst": "0.0.0.0/0"}, 'ipam.routes: {"dst": "0.0.0.0/0"} is not a list of routes'),
        (["0.0.0.0/0"], 'ipam.routes[0]: "0.0.0.0/0" is not a route'),
        ([{"gw": "10.1.2.1"}], "ipam.routes[0].dst: missing"),
        ([{"dst": "10.0.0.0"}], 'ipam.routes[0].dst: "10.0.0.0" is not a destination in CIDR notation'),
        ([{"dst": "10.0.0.0/255.0.0.0"}], "is not a destination in CIDR notation"),
        ([{"dst": 5}], "ipam.routes[0].dst: 5 is not a destination"),
        ([{"dst": "0.0.0.0/0"}, {"dst": "0.0.0.0/0", "gw": "x"}], 'ipam.routes[1].gw: "x" is not an IP address'),
        (
            [{"dst": "0.0.0.0/0", "gw": "fd00::1"}],
            'ipam.routes[0].gw: "fd00::1" is not of the same family as dst 0.0.0.0/0',
        ),
        ([{"dst": "0.0.0.0/0", "mtu": "1400"}], 'ipam.routes[0].mtu: "1400" is not a non-negative integer'),
        ([{"dst": "0.0.0.0/0", "table": True}], "ipam.routes[0].table: true is not a non-negative integer"),
        ([{"dst": "0.0.0.0/0", "priority": -1}], "ipam.routes[0].priority: -1 is not a non-negative integer"),
    ],
)
def test_route_errors(value, message):
    with pytest.raises(CNIError) as info:
        parse_routes(value, "ipam.routes")
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert message in info.value.msg


def test_resolv_conf_as_host_local_reads_it():
    text = """# generated
; also a comment
nameserver 10.0.0.53
nameserver   fd00::53  # trailing words are ignored
nameserver
domain example.com
domain cluster.local
search a.example b.example
search c.example
options ndots:5 timeout:1
options rotate
sortlist 10.0.0.0
"""
    assert parse_resolv_conf(text) == DNS(
        nameservers=["10.0.0.53", "fd00::53"],
        domain="cluster.local",
        search=["a.example", "b.example", "c.example"],
        options=["ndots:5", "timeout:1", "rotate"],
    )
    assert parse_resolv_conf("").is_empty()
