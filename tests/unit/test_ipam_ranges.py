"""multipy.ipam.ranges: host-local's range rules, defaults and error messages."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.ipam.ranges import Range, RangeSet, parse_ip, parse_range, parse_range_set, parse_subnet, range_sets


def _error(fn, *args) -> str:
    with pytest.raises(CNIError) as info:
        fn(*args)
    assert info.value.code == INVALID_NETWORK_CONFIG
    return info.value.msg


# ---- addresses and subnets ------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10.1.2.3", "10.1.2.3"),
        ("fd00::1", "fd00::1"),
        ("FD00:0:0::1", "fd00::1"),
        ("::ffff:10.1.2.3", "10.1.2.3"),  # Go's canonicalizeIP makes v4-mapped IPv4
    ],
)
def test_parse_ip_reads_what_go_reads(text, expected):
    assert parse_ip(text, "x") == ip_address(expected)


@pytest.mark.parametrize(
    "value", ["10.1.2", "10.1.2.3/24", "fe80::1%eth0", "010.1.2.3", " 10.1.2.3", 167837955, None, ""]
)
def test_parse_ip_refuses_what_go_refuses(value):
    assert "is not an IP address" in _error(parse_ip, value, "ipam.gateway")


@pytest.mark.parametrize(
    "value, problem",
    [
        (None, 'ipam.subnet: missing (a subnet such as "10.1.2.0/24")'),
        ("10.1.2.0", 'ipam.subnet: "10.1.2.0" is not a subnet in CIDR notation'),
        ("10.1.2.0/255.255.255.0", "is not a subnet in CIDR notation"),
        ("10.1.2.0/33", "is not a subnet in CIDR notation"),
        ("fd00::%eth0/64", "is not a subnet in CIDR notation"),
        (24, "ipam.subnet: 24 is not a subnet in CIDR notation"),
        ("10.1.2.0/31", 'ipam.subnet: "10.1.2.0/31" is too small to allocate from: use a /30 or shorter prefix'),
        ("10.1.2.1/32", "is too small to allocate from"),
        ("fd00::/127", "is too small to allocate from: use a /126"),
        ("fd00::/128", "is too small to allocate from"),
        (
            "10.1.2.5/24",
            'ipam.subnet: "10.1.2.5/24" has host bits set: for a subnet mask of length 24 the network address is 10.1.2.0',
        ),
        ("fd00::1/64", "the network address is fd00::"),
    ],
)
def test_parse_subnet_errors(value, problem):
    assert problem in _error(parse_subnet, value, "ipam.subnet")


@pytest.mark.parametrize("text", ["10.1.2.0/30", "10.0.0.0/8", "0.0.0.0/0", "fd00::/126", "fd00::/64"])
def test_parse_subnet_accepts_networks_with_room(text):
    assert parse_subnet(text, "x") == ip_network(text)


# ---- one range ------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj, start, end, gateway",
    [
        ({"subnet": "10.1.2.0/24"}, "10.1.2.1", "10.1.2.254", "10.1.2.1"),
        ({"subnet": "10.1.2.0/30"}, "10.1.2.1", "10.1.2.2", "10.1.2.1"),
        ({"subnet": "fd00::/64"}, "fd00::1", "fd00::ffff:ffff:ffff:ffff", "fd00::1"),  # no broadcast in IPv6
        ({"subnet": "fd00::/126"}, "fd00::1", "fd00::3", "fd00::1"),
        (
            {"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10", "rangeEnd": "10.1.2.20", "gateway": "10.1.2.254"},
            "10.1.2.10",
            "10.1.2.20",
            "10.1.2.254",
        ),
        ({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.1"}, "10.1.2.1", "10.1.2.254", "10.1.2.1"),
        (
            {"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.7", "rangeEnd": "10.1.2.7"},
            "10.1.2.7",
            "10.1.2.7",
            "10.1.2.1",
        ),
        # Go decodes "" into a nil IP: the default applies.
        (
            {"subnet": "10.1.2.0/24", "rangeStart": "", "rangeEnd": "", "gateway": ""},
            "10.1.2.1",
            "10.1.2.254",
            "10.1.2.1",
        ),
        ({"subnet": "fd00::/64", "rangeEnd": "fd00::"}, None, None, None),  # rangeEnd before default start: error below
        (
            {"subnet": "10.1.2.0/24", "fixedStart": "10.1.2.100"},
            "10.1.2.1",
            "10.1.2.254",
            "10.1.2.1",
        ),  # unknown keys pass
    ],
)
def test_range_defaults(obj, start, end, gateway):
    if start is None:
        assert 'rangeEnd: "fd00::" is before the default rangeStart fd00::1' in _error(parse_range, obj, "r")
        return
    r = parse_range(obj, "r")
    assert (r.start, r.end, r.gateway) == (ip_address(start), ip_address(end), ip_address(gateway))
    assert r.subnet == ip_network(obj["subnet"])


@pytest.mark.parametrize(
    "obj, message",
    [
        ("10.1.2.0/24", 'ipam.ranges[0][1]: "10.1.2.0/24" is not a range: expected an object'),
        ({}, "ipam.ranges[0][1].subnet: missing"),
        (
            {"subnet": "10.1.2.0/24", "rangeStart": "10.1.9.1"},
            'ipam.ranges[0][1].rangeStart: "10.1.9.1" is not in subnet 10.1.2.0/24',
        ),
        (
            {"subnet": "10.1.2.0/24", "rangeEnd": "10.1.9.1"},
            'ipam.ranges[0][1].rangeEnd: "10.1.9.1" is not in subnet 10.1.2.0/24',
        ),
        ({"subnet": "10.1.2.0/24", "rangeStart": "fd00::1"}, '.rangeStart: "fd00::1" is not in subnet 10.1.2.0/24'),
        ({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.x"}, '.rangeStart: "10.1.2.x" is not an IP address'),
        (
            {"subnet": "10.1.2.0/24", "gateway": "10.1.9.1"},
            'ipam.ranges[0][1].gateway: "10.1.9.1" is not in subnet 10.1.2.0/24',
        ),
        ({"subnet": "10.1.2.0/24", "gateway": 1}, ".gateway: 1 is not an IP address"),
        (
            {"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.50", "rangeEnd": "10.1.2.40"},
            '.rangeStart: "10.1.2.50" is after rangeEnd 10.1.2.40',
        ),
        (
            {"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.0"},
            '.rangeStart: "10.1.2.0" is the network address of 10.1.2.0/24',
        ),
        (
            {"subnet": "10.1.2.0/24", "rangeEnd": "10.1.2.255"},
            '.rangeEnd: "10.1.2.255" is the broadcast address of 10.1.2.0/24',
        ),
        ({"subnet": "10.1.2.0/31"}, 'ipam.ranges[0][1].subnet: "10.1.2.0/31" is too small'),
    ],
)
def test_range_errors_name_path_and_value(obj, message):
    assert message in _error(parse_range, obj, "ipam.ranges[0][1]")


def test_range_contains_overlaps_and_prints_like_go():
    a = parse_range({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10", "rangeEnd": "10.1.2.20"}, "a")
    b = parse_range({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.20", "rangeEnd": "10.1.2.30"}, "b")
    c = parse_range({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.21", "rangeEnd": "10.1.2.30"}, "c")
    v6 = parse_range({"subnet": "fd00::/64"}, "v6")
    assert str(a) == "10.1.2.10-10.1.2.20"
    assert a.contains(ip_address("10.1.2.10")) and a.contains(ip_address("10.1.2.20"))
    assert not a.contains(ip_address("10.1.2.9")) and not a.contains(ip_address("10.1.2.21"))
    assert not a.contains(ip_address("fd00::10"))
    assert a.in_subnet(ip_address("10.1.2.200")) and not a.in_subnet(ip_address("10.1.3.1"))
    assert a.overlaps(b) and b.overlaps(a) and not a.overlaps(c) and not a.overlaps(v6)
    assert str(a.interface(ip_address("10.1.2.15"))) == "10.1.2.15/24"
    assert a.family == 4 and v6.family == 6


# ---- range sets -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value, message",
    [
        ({"subnet": "10.1.2.0/24"}, 'ipam.ranges[0]: {"subnet": "10.1.2.0/24"} is not a range set: expected a list'),
        ([], "ipam.ranges[0]: empty range set"),
        (
            [{"subnet": "10.1.2.0/24"}, {"subnet": "fd00::/64"}],
            "ipam.ranges[0][1]: mixed address families: fd00::/64 is IPv6 but ipam.ranges[0][0] (10.1.2.0/24) is IPv4",
        ),
        (
            [{"subnet": "10.1.2.0/24"}, {"subnet": "10.1.2.0/25"}],
            "ipam.ranges[0][1]: subnets 10.1.2.1-10.1.2.254 and 10.1.2.1-10.1.2.126 overlap",
        ),
        (
            [
                {"subnet": "10.1.3.0/24"},
                {"subnet": "10.1.2.0/24", "rangeEnd": "10.1.2.9"},
                {"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9"},
            ],
            "ipam.ranges[0][2]: subnets 10.1.2.1-10.1.2.9 and 10.1.2.9-10.1.2.254 overlap (ipam.ranges[0][1] and ipam.ranges[0][2])",
        ),
    ],
)
def test_range_set_errors(value, message):
    assert message in _error(parse_range_set, value, "ipam.ranges[0]")


def test_range_set_of_disjoint_ranges_in_one_subnet():
    rs = parse_range_set(
        [
            {"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10", "rangeEnd": "10.1.2.19"},
            {"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.30", "rangeEnd": "10.1.2.39"},
            {"subnet": "10.9.0.0/16"},
        ],
        "ipam.ranges[0]",
    )
    assert len(rs) == 3 and rs.family == 4 and rs.source == "ipam.ranges[0]"
    assert str(rs) == "10.1.2.10-10.1.2.19,10.1.2.30-10.1.2.39,10.9.0.1-10.9.255.254"
    assert rs.range_for(ip_address("10.1.2.35")) is rs.ranges[1]
    assert rs.range_for(ip_address("10.1.2.25")) is None
    assert rs.contains(ip_address("10.9.3.3")) and not rs.contains(ip_address("fd00::1"))
    assert [r.subnet for r in rs] == [ip_network("10.1.2.0/24"), ip_network("10.1.2.0/24"), ip_network("10.9.0.0/16")]


# ---- host-local's assembly: ipRanges, the legacy range, ranges ---------------------


def _sources(sets: list[RangeSet]) -> list[str]:
    return [s.source for s in sets]


def test_range_sets_order_is_runtime_then_legacy_then_ranges():
    ipam = {
        "subnet": "10.1.1.0/24",
        "rangeStart": "10.1.1.5",
        "ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00::/64"}]],
    }
    runtime = {"ipRanges": [[{"subnet": "10.1.0.0/24"}]]}
    sets = range_sets(ipam, runtime, "1.0.0")
    assert _sources(sets) == ["runtimeConfig.ipRanges[0]", "ipam.subnet", "ipam.ranges[0]", "ipam.ranges[1]"]
    assert sets[1].ranges[0] == Range(
        ip_network("10.1.1.0/24"), ip_address("10.1.1.5"), ip_address("10.1.1.254"), ip_address("10.1.1.1")
    )


def test_legacy_range_errors_name_ipam_keys():
    assert 'ipam.rangeStart: "10.1.9.1" is not in subnet 10.1.2.0/24' in _error(
        range_sets, {"subnet": "10.1.2.0/24", "rangeStart": "10.1.9.1"}, None, "1.0.0"
    )
    assert "ipam.gateway is set but ipam.subnet is missing" in _error(
        range_sets, {"gateway": "10.1.2.1", "ranges": [[{"subnet": "10.1.2.0/24"}]]}, None, "1.0.0"
    )


@pytest.mark.parametrize(
    "ipam, runtime, version, message",
    [
        ({}, None, "1.0.0", "no IP ranges specified: set ipam.ranges (or ipam.subnet)"),
        ({"ranges": []}, {"ipRanges": []}, "1.0.0", "no IP ranges specified"),
        (
            {"ranges": {"subnet": "10.1.2.0/24"}},
            None,
            "1.0.0",
            'ipam.ranges: {"subnet": "10.1.2.0/24"} is not a list of range sets',
        ),
        (
            {"ranges": [[{"subnet": "10.1.2.0/24"}]]},
            {"ipRanges": "x"},
            "1.0.0",
            'runtimeConfig.ipRanges: "x" is not a list',
        ),
        (
            {"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.2.0/25"}]]},
            None,
            "1.0.0",
            "range set 0 overlaps with 1: ipam.ranges[1] (10.1.2.1-10.1.2.126) overlaps ipam.ranges[0] (10.1.2.1-10.1.2.254)",
        ),
        (
            {"subnet": "10.1.2.0/24", "ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.200"}]]},
            None,
            "1.0.0",
            "range set 0 overlaps with 1: ipam.ranges[0]",
        ),
        (
            {"ranges": [[{"subnet": "10.1.2.0/24"}]]},
            {"ipRanges": [[{"subnet": "10.1.2.0/26"}]]},
            "1.0.0",
            "runtimeConfig.ipRanges[0] (10.1.2.1-10.1.2.62)",
        ),
        (
            {"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.3.0/24"}]]},
            None,
            "0.2.0",
            "CNI version 0.2.0 does not support more than 1 address per family: ipam.ranges[0], ipam.ranges[1] are all IPv4",
        ),
        (
            {"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.3.0/24"}]]},
            None,
            "",
            "CNI version 0.1.0 does not support",
        ),
        (
            {"ranges": [[{"subnet": "10.1.2.0/24"}], [{"rangeStart": "10.1.3.0"}]]},
            None,
            "1.0.0",
            "ipam.ranges[1][0].subnet: missing",
        ),
    ],
)
def test_range_sets_errors(ipam, runtime, version, message):
    assert message in _error(range_sets, ipam, runtime, version)


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_old_versions_take_one_set_per_family(version):
    sets = range_sets({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00::/64"}]]}, None, version)
    assert [s.family for s in sets] == [4, 6]


def test_range_sets_equal_by_value_not_source():
    a = parse_range_set([{"subnet": "10.1.2.0/24"}], "a")
    b = parse_range_set([{"subnet": "10.1.2.0/24"}], "b")
    assert a == b and a.source != b.source
