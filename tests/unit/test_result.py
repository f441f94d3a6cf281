"""multipy.cni.result: wire formats per version and libcni's conversion rules."""

import ipaddress
import json

import pytest

from multipy.cni.errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, CNIError
from multipy.cni.result import DNS, SUPPORTED_VERSIONS, Interface, IPConfig, Result, Route

V020 = ("0.1.0", "0.2.0")
V040 = ("0.3.0", "0.3.1", "0.4.0")
V100 = ("1.0.0", "1.1.0")
ABOVE_020 = V040 + V100


def ip(text):
    return ipaddress.ip_interface(text)


def addr(text):
    return ipaddress.ip_address(text)


def net(text):
    return ipaddress.ip_network(text)


def same_wire(got, expected):
    # Compare as text so key order (what Go prints) is checked too.
    assert json.dumps(got, indent=4) == json.dumps(expected, indent=4)


# ---- golden: a typical bridge result -------------------------------------------


def bridge_result():
    return Result(
        "1.1.0",
        interfaces=[
            Interface("cni0", mac="b6:3e:1a:2c:5d:01"),
            Interface("veth3f2a9c1b", mac="ea:51:7c:09:aa:02"),
            Interface("eth0", mac="0a:58:0a:16:00:05", sandbox="/var/run/netns/cni-1234"),
        ],
        ips=[IPConfig(ip("10.22.0.5/16"), addr("10.22.0.1"), interface=2)],
        routes=[Route(net("0.0.0.0/0"))],
        dns=DNS(nameservers=["10.22.0.1"]),
    )


def golden_bridge(version):
    if version in V020:
        return {
            "cniVersion": version,
            "ip4": {"ip": "10.22.0.5/16", "gateway": "10.22.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "dns": {"nameservers": ["10.22.0.1"]},
        }
    if version in V040:
        return {
            "cniVersion": version,
            "interfaces": [
                {"name": "cni0", "mac": "b6:3e:1a:2c:5d:01"},
                {"name": "veth3f2a9c1b", "mac": "ea:51:7c:09:aa:02"},
                {"name": "eth0", "mac": "0a:58:0a:16:00:05", "sandbox": "/var/run/netns/cni-1234"},
            ],
            "ips": [{"version": "4", "interface": 2, "address": "10.22.0.5/16", "gateway": "10.22.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.22.0.1"]},
        }
    # 1.x goes through a Go map, so every level is sorted by key.
    return {
        "cniVersion": version,
        "dns": {"nameservers": ["10.22.0.1"]},
        "interfaces": [
            {"mac": "b6:3e:1a:2c:5d:01", "name": "cni0"},
            {"mac": "ea:51:7c:09:aa:02", "name": "veth3f2a9c1b"},
            {"mac": "0a:58:0a:16:00:05", "name": "eth0", "sandbox": "/var/run/netns/cni-1234"},
        ],
        "ips": [{"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_golden_bridge_result_on_the_wire(version):
    same_wire(bridge_result().to_json(version), golden_bridge(version))


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_golden_bridge_result_parses_back(version):
    parsed = Result.from_json(golden_bridge(version))
    assert parsed.cni_version == version
    same_wire(parsed.to_json(version), golden_bridge(version))


# ---- round trips per version ---------------------------------------------------


def rich_wire(version):
    """Everything each version can carry, in the order Go prints it."""
    if version in V020:
        return {
            "cniVersion": version,
            "ip4": {
                "ip": "192.168.1.10/24",
                "gateway": "192.168.1.1",
                # types020 routes are types.Route, so the extras survive here.
                "routes": [{"dst": "0.0.0.0/0", "gw": "192.168.1.1", "mtu": 1400}, {"dst": "10.0.0.0/8"}],
            },
            "ip6": {"ip": "fd00:1::10/64", "routes": [{"dst": "::/0", "gw": "fd00:1::1"}]},
            "dns": {
                "nameservers": ["192.168.1.1"],
                "domain": "example.org",
                "search": ["a.example.org"],
                "options": ["ndots:2"],
            },
        }
    if version in V040:
        return {
            "cniVersion": version,
            "interfaces": [
                {"name": "eth0", "mac": "0a:58:c0:a8:01:0a", "sandbox": "/proc/42/ns/net"},
                {"name": "net1"},
            ],
            "ips": [
                {"version": "4", "interface": 0, "address": "192.168.1.10/24", "gateway": "192.168.1.1"},
                {"version": "6", "interface": 1, "address": "fd00:1::10/64"},
                {"version": "4", "address": "192.168.2.10/24"},
            ],
            "routes": [
                {
                    "dst": "0.0.0.0/0",
                    "gw": "192.168.1.1",
                    "mtu": 1400,
                    "advmss": 1360,
                    "priority": 5,
                    "table": 0,
                    "scope": 0,
                },
                {"dst": "::/0"},
            ],
            "dns": {
                "nameservers": ["192.168.1.1"],
                "domain": "example.org",
                "search": ["a.example.org"],
                "options": ["ndots:2"],
            },
        }
    return {
        "cniVersion": version,
        "dns": {
            "domain": "example.org",
            "nameservers": ["192.168.1.1"],
            "options": ["ndots:2"],
            "search": ["a.example.org"],
        },
        "interfaces": [
            {"mac": "0a:58:c0:a8:01:0a", "mtu": 9000, "name": "eth0", "sandbox": "/proc/42/ns/net"},
            {"name": "net1", "pciID": "0000:3b:02.1", "socketPath": "/run/vhost/net1.sock"},
        ],
        "ips": [
            {"address": "192.168.1.10/24", "gateway": "192.168.1.1", "interface": 0},
            {"address": "fd00:1::10/64", "interface": 1},
            {"address": "192.168.2.10/24"},
        ],
        "routes": [
            {
                "advmss": 1360,
                "dst": "0.0.0.0/0",
                "gw": "192.168.1.1",
                "mtu": 1400,
                "priority": 5,
                "scope": 0,
                "table": 0,
            },
            {"dst": "::/0"},
        ],
    }


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_round_trip_same_version(version):
    same_wire(Result.from_json(rich_wire(version)).to_json(version), rich_wire(version))


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_from_bytes_round_trip(version):
    raw = json.dumps(rich_wire(version), indent=4).encode()
    same_wire(Result.from_bytes(raw).to_json(version), rich_wire(version))


@pytest.mark.parametrize("source", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("target", SUPPORTED_VERSIONS)
def test_every_supported_pair_has_a_converter(source, target):
    converted = Result.from_json(golden_bridge(source)).convert(target)
    assert converted.cni_version == target
    assert converted.to_json(target)["cniVersion"] == target


# ---- versions ------------------------------------------------------------------


@pytest.mark.parametrize("data", [{}, {"cniVersion": ""}, {"cniVersion": None}])
def test_missing_cni_version_means_010(data):
    data = dict(data, ip4={"ip": "10.0.0.2/24"})
    result = Result.from_json(data)
    assert result.cni_version == "0.1.0"
    assert result.ips == [IPConfig(ip("10.0.0.2/24"))]


@pytest.mark.parametrize("version", ["0.5.0", "1.2.0", "2.0.0", "1.0", "v1.0.0"])
def test_unsupported_version_is_incompatible(version):
    with pytest.raises(CNIError) as exc:
        Result.from_json({"cniVersion": version})
    assert exc.value.code == INCOMPATIBLE_VERSION
    assert exc.value.msg == f'unsupported CNI result version "{version}"'


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("method", ["convert", "to_json"])
def test_unknown_target_has_no_converter(version, method):
    result = Result.from_json(golden_bridge(version))
    with pytest.raises(CNIError) as exc:
        getattr(result, method)("0.5.0")
    assert exc.value.code == INCOMPATIBLE_VERSION
    assert exc.value.msg == f"no converter for CNI result version {version} to 0.5.0"


def test_unknown_source_has_no_converter():
    with pytest.raises(CNIError) as exc:
        Result("9.9.9").to_json("1.0.0")
    assert exc.value.code == INCOMPATIBLE_VERSION
    assert exc.value.msg == "no converter for CNI result version 9.9.9 to 1.0.0"


@pytest.mark.parametrize("source,target", [("0.1.0", "0.2.0"), ("0.2.0", "0.1.0")])
def test_010_and_020_convert_into_each_other_unchanged(source, target):
    wire = rich_wire(source)
    same_wire(Result.from_json(wire).to_json(target), dict(wire, cniVersion=target))


# ---- down to 0.1.0 / 0.2.0 -------------------------------------------------------


def many_ips(version):
    return Result(
        version,
        interfaces=[Interface("eth0", mac="0a:58:0a:00:00:02", mtu=1500, sandbox="/run/netns/a")],
        ips=[
            IPConfig(ip("fd00::2/64"), addr("fd00::1"), interface=0),
            IPConfig(ip("10.0.0.2/24"), addr("10.0.0.1"), interface=0),
            IPConfig(ip("10.0.1.2/24"), addr("10.0.1.1"), interface=0),
            IPConfig(ip("fd01::2/64"), interface=0),
        ],
        routes=[
            Route(net("::/0"), addr("fd00::1"), mtu=1400),
            Route(net("0.0.0.0/0"), addr("10.0.0.1"), mtu=1400, advmss=1360, priority=3, table=100, scope=0),
            Route(net("10.10.0.0/16")),
        ],
        dns=DNS(nameservers=["10.0.0.1"]),
    )


@pytest.mark.parametrize("source", ABOVE_020)
@pytest.mark.parametrize("target", V020)
def test_down_to_020_keeps_first_address_of_each_family(source, target):
    wire = many_ips(source).to_json(target)
    same_wire(
        wire,
        {
            "cniVersion": target,
            # v4 routes first, v6 after, and only dst/gw: libcni's 0.2 converter
            # rebuilds each route from those two fields.
            "ip4": {
                "ip": "10.0.0.2/24",
                "gateway": "10.0.0.1",
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}, {"dst": "10.10.0.0/16"}],
            },
            "ip6": {"ip": "fd00::2/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
            "dns": {"nameservers": ["10.0.0.1"]},
        },
    )


@pytest.mark.parametrize("source", ABOVE_020)
@pytest.mark.parametrize("target", V020)
def test_down_to_020_drops_routes_of_a_family_without_address(source, target):
    result = Result(
        source,
        ips=[IPConfig(ip("fd00::2/64"))],
        routes=[Route(net("0.0.0.0/0")), Route(net("::/0"))],
    )
    converted = result.convert(target)
    assert converted.routes == [Route(net("::/0"))]
    assert "ip4" not in converted.to_json(target)


@pytest.mark.parametrize("source", ABOVE_020)
@pytest.mark.parametrize("target", V020)
def test_down_to_020_really_drops_what_020_cannot_hold(source, target):
    converted = many_ips(source).convert(target)
    assert converted.cni_version == target
    assert converted.interfaces == []
    assert [i.interface for i in converted.ips] == [None, None]
    assert [str(i.address) for i in converted.ips] == ["10.0.0.2/24", "fd00::2/64"]
    assert all((r.mtu, r.advmss, r.priority, r.table, r.scope) == (0, 0, 0, None, None) for r in converted.routes)


@pytest.mark.parametrize("source", ABOVE_020)
@pytest.mark.parametrize("target", V020)
def test_down_to_020_without_addresses_fails(source, target):
    l2_only = Result(source, interfaces=[Interface("net1", sandbox="/run/netns/a")], dns=DNS(nameservers=["1.1.1.1"]))
    for method in (l2_only.convert, l2_only.to_json):
        with pytest.raises(CNIError) as exc:
            method(target)
        assert exc.value.code == INCOMPATIBLE_VERSION
        assert exc.value.msg == "cannot convert: no valid IP addresses"


@pytest.mark.parametrize("version", V020)
def test_020_result_without_addresses_is_fine_in_its_own_group(version):
    # The "no valid IP addresses" check lives in the 0.4 -> 0.2 converter only.
    result = Result.from_json({"cniVersion": version, "dns": {"domain": "example.org"}})
    for target in V020:
        same_wire(result.to_json(target), {"cniVersion": target, "dns": {"domain": "example.org"}})


# ---- up from 0.1.0 / 0.2.0 ---------------------------------------------------------


@pytest.mark.parametrize("source", V020)
@pytest.mark.parametrize("target", ABOVE_020)
def test_up_from_020_builds_ips_and_merges_routes(source, target):
    result = Result.from_json(rich_wire(source)).convert(target)
    assert result.interfaces == []
    assert result.ips == [
        IPConfig(ip("192.168.1.10/24"), addr("192.168.1.1")),
        IPConfig(ip("fd00:1::10/64")),
    ]
    # ip4's routes then ip6's, whole: types.Route.Copy keeps mtu and friends.
    assert result.routes == [
        Route(net("0.0.0.0/0"), addr("192.168.1.1"), mtu=1400),
        Route(net("10.0.0.0/8")),
        Route(net("::/0"), addr("fd00:1::1")),
    ]
    wire = result.to_json(target)
    assert "interfaces" not in wire
    assert all("interface" not in i for i in wire["ips"])
    versions = [i.get("version") for i in wire["ips"]]
    assert versions == (["4", "6"] if target in V040 else [None, None])


# ---- 0.3.x / 0.4.0 <-> 1.x -----------------------------------------------------------


@pytest.mark.parametrize("source", V040)
@pytest.mark.parametrize("target", V100)
def test_1x_drops_ip_version(source, target):
    wire = Result.from_json(rich_wire(source)).to_json(target)
    assert [sorted(i) for i in wire["ips"]] == [
        ["address", "gateway", "interface"],
        ["address", "interface"],
        ["address"],
    ]


@pytest.mark.parametrize("source", V100)
@pytest.mark.parametrize("target", V040)
def test_ip_version_recomputed_from_family_going_down(source, target):
    wire = Result.from_json(rich_wire(source)).to_json(target)
    assert [(i["version"], i["address"]) for i in wire["ips"]] == [
        ("4", "192.168.1.10/24"),
        ("6", "fd00:1::10/64"),
        ("4", "192.168.2.10/24"),
    ]


@pytest.mark.parametrize("version", V040)
def test_wrong_ip_version_on_input_is_recomputed(version):
    data = {"cniVersion": version, "ips": [{"version": "6", "address": "10.0.0.2/24"}, {"address": "fd00::2/64"}]}
    wire = Result.from_json(data).to_json(version)
    assert [i["version"] for i in wire["ips"]] == ["4", "6"]
    assert Result.from_json(data).to_json("0.2.0")["ip4"] == {"ip": "10.0.0.2/24"}


@pytest.mark.parametrize("source", V100)
@pytest.mark.parametrize("target", V040)
def test_1x_to_040_drops_interface_extras_but_keeps_route_extras(source, target):
    converted = Result.from_json(rich_wire(source)).convert(target)
    assert converted.interfaces == [
        Interface("eth0", mac="0a:58:c0:a8:01:0a", sandbox="/proc/42/ns/net"),
        Interface("net1"),
    ]
    wire = converted.to_json(target)
    assert wire["interfaces"] == [
        {"name": "eth0", "mac": "0a:58:c0:a8:01:0a", "sandbox": "/proc/42/ns/net"},
        {"name": "net1"},
    ]
    # types040 and types100 share types.Route, whose Copy keeps every field.
    assert wire["routes"][0] == {
        "dst": "0.0.0.0/0",
        "gw": "192.168.1.1",
        "mtu": 1400,
        "advmss": 1360,
        "priority": 5,
        "table": 0,
        "scope": 0,
    }


@pytest.mark.parametrize("source,target", [("1.1.0", "1.0.0"), ("1.0.0", "1.1.0")])
def test_within_1x_everything_is_kept(source, target):
    # convertFrom100 only changes the version, 1.1-only fields included.
    same_wire(Result.from_json(rich_wire(source)).to_json(target), dict(rich_wire(source), cniVersion=target))


@pytest.mark.parametrize("version", V040)
def test_040_input_ignores_1x_interface_fields(version):
    data = {
        "cniVersion": version,
        "interfaces": [{"name": "eth0", "mtu": 9000, "socketPath": "/s", "pciID": "0000:00:01.0"}],
    }
    assert Result.from_json(data).interfaces == [Interface("eth0")]


# ---- output details ------------------------------------------------------------------


@pytest.mark.parametrize("version", ABOVE_020)
def test_interface_index_omitted_when_none_kept_when_zero(version):
    result = Result(
        version,
        interfaces=[Interface("eth0")],
        ips=[IPConfig(ip("10.0.0.2/24"), interface=0), IPConfig(ip("10.0.0.3/24"))],
    )
    assert [i.get("interface") for i in result.to_json(version)["ips"]] == [0, None]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_empty_result_output(version):
    # Only types100 got the MarshalJSON that drops an empty dns (cni #1039).
    expected = {"cniVersion": version} if version in V100 else {"cniVersion": version, "dns": {}}
    same_wire(Result(version).to_json(version), expected)


@pytest.mark.parametrize("version", ABOVE_020)
def test_empty_lists_and_zero_fields_omitted(version):
    result = Result(version, ips=[IPConfig(ip("10.0.0.2/24"))], dns=DNS(domain="example.org"))
    wire = result.to_json(version)
    assert set(wire) == {"cniVersion", "ips", "dns"}
    assert wire["dns"] == {"domain": "example.org"}


def test_1x_keys_sorted_at_every_depth():
    def check(value):
        if isinstance(value, dict):
            assert list(value) == sorted(value)
            for v in value.values():
                check(v)
        elif isinstance(value, list):
            for v in value:
                check(v)

    check(Result.from_json(rich_wire("1.1.0")).to_json("1.1.0"))


def test_route_dst_host_bits_are_masked():
    result = Result.from_json({"cniVersion": "1.0.0", "routes": [{"dst": "10.1.2.3/8"}]})
    assert result.routes == [Route(net("10.0.0.0/8"))]


@pytest.mark.parametrize("gateway", ["", None])
def test_empty_gateway_is_no_gateway(gateway):
    data = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "gateway": gateway}]}
    assert Result.from_json(data).ips == [IPConfig(ip("10.0.0.2/24"))]


def test_ipv6_only_bridge_down_to_020():
    result = Result("1.0.0", ips=[IPConfig(ip("fd00::5/64"), addr("fd00::1"))], routes=[Route(net("::/0"))])
    same_wire(
        result.to_json("0.2.0"),
        {
            "cniVersion": "0.2.0",
            "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
            "dns": {},
        },
    )


@pytest.mark.parametrize("target", SUPPORTED_VERSIONS)
def test_convert_never_aliases(target):
    original = many_ips("1.1.0")
    snapshot = original.to_json("1.1.0")
    converted = original.convert(target)
    for part in (converted.interfaces, converted.ips, converted.routes):
        for item in part:
            if hasattr(item, "mtu"):
                item.mtu = 1
            if hasattr(item, "interface"):
                item.interface = None
    converted.dns.nameservers.append("9.9.9.9")
    assert original.to_json("1.1.0") == snapshot


# ---- decode errors -------------------------------------------------------------------

BAD_INPUTS = [
    ({"cniVersion": 1}, "cniVersion: expected a string, got 1"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.300/24"}]}, 'ips[0].address: invalid CIDR "10.1.2.300/24"'),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3"}]}, 'ips[0].address: invalid CIDR "10.1.2.3"'),
    (
        {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/255.255.255.0"}]},
        'ips[0].address: invalid CIDR "10.1.2.3/255.255.255.0"',
    ),
    (
        {"cniVersion": "1.0.0", "ips": [{"address": "fe80::1%eth0/64"}]},
        'ips[0].address: invalid CIDR "fe80::1%eth0/64"',
    ),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/33"}]}, 'ips[0].address: invalid CIDR "10.0.0.1/33"'),
    ({"cniVersion": "1.0.0", "ips": [{"address": 42}]}, "ips[0].address: invalid CIDR 42"),
    ({"cniVersion": "1.0.0", "ips": [{"gateway": "10.0.0.1"}]}, "ips[0].address: missing"),
    (
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "gateway": "nope"}]},
        'ips[0].gateway: invalid IP address "nope"',
    ),
    (
        {"cniVersion": "1.0.0", "interfaces": [{"name": "a"}], "ips": [{"address": "10.0.0.2/24", "interface": 1}]},
        "ips[0].interface: index 1 out of range for 1 interfaces",
    ),
    (
        {"cniVersion": "0.4.0", "interfaces": [{"name": "a"}], "ips": [{"address": "10.0.0.2/24", "interface": -1}]},
        "ips[0].interface: index -1 out of range for 1 interfaces",
    ),
    (
        {"cniVersion": "0.3.1", "ips": [{"address": "10.0.0.2/24", "interface": 0}]},
        "ips[0].interface: index 0 out of range for 0 interfaces",
    ),
    (
        {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24", "interface": "0"}]},
        'ips[0].interface: expected an integer, got "0"',
    ),
    (
        {"cniVersion": "0.4.0", "ips": [{"version": 4, "address": "10.0.0.2/24"}]},
        "ips[0].version: expected a string, got 4",
    ),
    (
        {"cniVersion": "1.0.0", "ips": {"address": "10.0.0.2/24"}},
        'ips: expected a list, got {"address": "10.0.0.2/24"}',
    ),
    ({"cniVersion": "1.0.0", "ips": ["10.0.0.2/24"]}, 'ips[0]: expected an object, got "10.0.0.2/24"'),
    ({"cniVersion": "1.0.0", "interfaces": {}}, "interfaces: expected a list, got {}"),
    ({"cniVersion": "1.0.0", "interfaces": [{"name": "a"}, None]}, "interfaces[1]: expected an object, got null"),
    ({"cniVersion": "1.0.0", "interfaces": [{"name": 5}]}, "interfaces[0].name: expected a string, got 5"),
    (
        {"cniVersion": "1.1.0", "interfaces": [{"name": "a", "mtu": "1500"}]},
        'interfaces[0].mtu: expected an integer, got "1500"',
    ),
    (
        {"cniVersion": "1.1.0", "interfaces": [{"name": "a", "mtu": 1500.0}]},
        "interfaces[0].mtu: expected an integer, got 1500.0",
    ),
    ({"cniVersion": "1.0.0", "routes": [{"gw": "10.0.0.1"}]}, "routes[0].dst: missing"),
    ({"cniVersion": "1.0.0", "routes": [{"dst": "default"}]}, 'routes[0].dst: invalid CIDR "default"'),
    (
        {"cniVersion": "1.0.0", "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.256"}]},
        'routes[0].gw: invalid IP address "10.0.0.256"',
    ),
    (
        {"cniVersion": "1.1.0", "routes": [{"dst": "0.0.0.0/0", "mtu": True}]},
        "routes[0].mtu: expected an integer, got true",
    ),
    (
        {"cniVersion": "1.1.0", "routes": [{"dst": "0.0.0.0/0", "table": "main"}]},
        'routes[0].table: expected an integer, got "main"',
    ),
    ({"cniVersion": "1.0.0", "dns": []}, "dns: expected an object, got []"),
    ({"cniVersion": "1.0.0", "dns": {"nameservers": ["1.1.1.1", 8]}}, "dns.nameservers[1]: expected a string, got 8"),
    ({"cniVersion": "1.0.0", "dns": {"search": "example.org"}}, 'dns.search: expected a list, got "example.org"'),
    ({"cniVersion": "1.0.0", "dns": {"domain": ["example.org"]}}, 'dns.domain: expected a string, got ["example.org"]'),
    ({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2"}}, 'ip4.ip: invalid CIDR "10.0.0.2"'),
    ({"cniVersion": "0.2.0", "ip4": {"gateway": "10.0.0.1"}}, "ip4.ip: missing"),
    ({"cniVersion": "0.2.0", "ip6": "fd00::2/64"}, 'ip6: expected an object, got "fd00::2/64"'),
    (
        {"cniVersion": "0.1.0", "ip4": {"ip": "10.0.0.2/24", "routes": [{"dst": "x"}]}},
        'ip4.routes[0].dst: invalid CIDR "x"',
    ),
    ({"ip4": {"ip": "10.0.0.2/24", "routes": {}}}, "ip4.routes: expected a list, got {}"),
]


@pytest.mark.parametrize("data,message", BAD_INPUTS, ids=[m.split(":")[0] for _, m in BAD_INPUTS])
def test_malformed_result_is_a_decode_failure(data, message):
    with pytest.raises(CNIError) as exc:
        Result.from_json(data)
    assert exc.value.code == DECODE_FAILURE
    assert exc.value.msg == f"invalid CNI result: {message}"


@pytest.mark.parametrize("data", [[], "1.0.0", None])
def test_result_must_be_an_object(data):
    with pytest.raises(CNIError) as exc:
        Result.from_json(data)
    assert exc.value.code == DECODE_FAILURE
    assert exc.value.msg == f"invalid CNI result: result: expected a JSON object, got {json.dumps(data)}"


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"cniVersion": "1.0.0"', b"\xff\xfe\x00garbage"])
def test_from_bytes_bad_json_is_a_decode_failure(raw):
    with pytest.raises(CNIError) as exc:
        Result.from_bytes(raw)
    assert exc.value.code == DECODE_FAILURE
    assert exc.value.msg.startswith("invalid CNI result JSON: ")


def test_from_bytes_checks_shape_and_version():
    with pytest.raises(CNIError) as exc:
        Result.from_bytes(b"[1]")
    assert (exc.value.code, exc.value.msg) == (
        DECODE_FAILURE,
        "invalid CNI result: result: expected a JSON object, got [1]",
    )
    with pytest.raises(CNIError) as exc:
        Result.from_bytes(b'{"cniVersion": "3.0.0"}')
    assert (exc.value.code, exc.value.msg) == (INCOMPATIBLE_VERSION, 'unsupported CNI result version "3.0.0"')
