"""multipy.ipam.requests: requested addresses from CNI_ARGS, args and runtimeConfig."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from multipy.cni.errors import INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG, CNIError
from multipy.ipam.requests import Requested, parse_requested, requested_ips


def _r(ip, source):
    return Requested(ip_address(ip), source)


@pytest.mark.parametrize(
    "conf, env_ip, expected",
    [
        ({}, "", []),
        ({}, "10.1.2.3", [_r("10.1.2.3", "CNI_ARGS IP item 0")]),
        ({}, "10.1.2.3/24", [_r("10.1.2.3", "CNI_ARGS IP item 0")]),  # the prefix is ignored, as Go's ip.IP
        ({}, "10.1.2.3, fd00::3", [_r("10.1.2.3", "CNI_ARGS IP item 0"), _r("fd00::3", "CNI_ARGS IP item 1")]),
        (
            {"args": {"cni": {"ips": ["10.1.2.4", "fd00::4/64"]}}},
            "",
            [_r("10.1.2.4", "args.cni.ips[0]"), _r("fd00::4", "args.cni.ips[1]")],
        ),
        ({"runtimeConfig": {"ips": ["10.1.2.5/24"]}}, "", [_r("10.1.2.5", "runtimeConfig.ips[0]")]),
        # All three, in the reference's order; a repeat counts once, where it was first asked.
        (
            {"args": {"cni": {"ips": ["10.1.2.4", "10.1.2.3"]}}, "runtimeConfig": {"ips": ["10.1.2.5", "10.1.2.4"]}},
            "10.1.2.3",
            [
                _r("10.1.2.3", "CNI_ARGS IP item 0"),
                _r("10.1.2.4", "args.cni.ips[0]"),
                _r("10.1.2.5", "runtimeConfig.ips[0]"),
            ],
        ),
        ({}, "::ffff:10.1.2.6", [_r("10.1.2.6", "CNI_ARGS IP item 0")]),
        ({"args": {"cni": {}}, "runtimeConfig": {"ipRanges": []}}, "", []),
        ({"args": {"cni": {"ips": None}}, "runtimeConfig": {"ips": None}}, "", []),
        ({"args": {"other": 1}}, "", []),
    ],
)
def test_requested_ips(conf, env_ip, expected):
    assert requested_ips(conf, env_ip) == expected


@pytest.mark.parametrize(
    "conf, env_ip, code, message",
    [
        ({}, "bogus", INVALID_ENVIRONMENT, 'CNI_ARGS IP item 0: "bogus" is not an IP address'),
        ({}, "10.1.2.3,", INVALID_ENVIRONMENT, 'CNI_ARGS IP item 1: "" is not an IP address'),
        (
            {},
            "10.1.2.3/33",
            INVALID_ENVIRONMENT,
            'CNI_ARGS IP item 0: "10.1.2.3/33" is not an IP address or address/prefix',
        ),
        (
            {},
            "10.1.2.3/x",
            INVALID_ENVIRONMENT,
            'CNI_ARGS IP item 0: "10.1.2.3/x" is not an IP address or address/prefix',
        ),
        (
            {"args": {"cni": {"ips": ["10.1.3.20", "bad"]}}},
            "",
            INVALID_NETWORK_CONFIG,
            'args.cni.ips[1]: "bad" is not an IP address',
        ),
        (
            {"args": {"cni": {"ips": "10.1.3.20"}}},
            "",
            INVALID_NETWORK_CONFIG,
            'args.cni.ips: "10.1.3.20" is not a list of IP addresses',
        ),
        ({"args": {"cni": {"ips": [3]}}}, "", INVALID_NETWORK_CONFIG, "args.cni.ips[0]: 3 is not an IP address"),
        ({"args": "x"}, "", INVALID_NETWORK_CONFIG, 'args: "x" is not an object'),
        ({"args": {"cni": []}}, "", INVALID_NETWORK_CONFIG, "args.cni: [] is not an object"),
        (
            {"runtimeConfig": {"ips": ["fe80::1%eth0"]}},
            "",
            INVALID_NETWORK_CONFIG,
            'runtimeConfig.ips[0]: "fe80::1%eth0" is not an IP address',
        ),
        ({"runtimeConfig": 5}, "", INVALID_NETWORK_CONFIG, "runtimeConfig: 5 is not an object"),
    ],
)
def test_requested_ip_errors(conf, env_ip, code, message):
    with pytest.raises(CNIError) as info:
        requested_ips(conf, env_ip)
    assert (info.value.code, info.value.msg) == (code, message)


def test_parse_requested_keeps_the_callers_code():
    with pytest.raises(CNIError) as info:
        parse_requested("nope", "annotation", code=INVALID_ENVIRONMENT)
    assert info.value.code == INVALID_ENVIRONMENT
    assert parse_requested("fd00::1/64", "x") == ip_address("fd00::1")
