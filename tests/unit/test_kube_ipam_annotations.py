"""kube-ipam.ip / .netmask / .gateway: what a pod may write, and the errors that name the annotation."""

from __future__ import annotations

import ipaddress

import pytest

from delegates.kube_ipam import annotations
from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.ipam.requests import Requested

ip = ipaddress.ip_address


def parse(**values):
    return annotations.parse({f"kube-ipam.{k}": v for k, v in values.items()})


def error_of(**values) -> CNIError:
    with pytest.raises(CNIError) as info:
        parse(**values)
    assert info.value.code == INVALID_NETWORK_CONFIG
    return info.value


def test_the_seed_annotations():
    request = parse(ip="10.188.0.218", netmask="255.255.0.0", gateway="10.188.0.1")
    assert [(w.ip, w.prefixlen) for w in request.wanted] == [(ip("10.188.0.218"), 16)]
    assert request.wanted[0].source == "annotation kube-ipam.ip"
    assert "kube-ipam.netmask" in request.wanted[0].prefix_source
    assert request.gateway == ip("10.188.0.1")


@pytest.mark.parametrize("given", [None, {}, {"other": "x"}, {"kube-ipam.ip": "  "},
                                   {"kube-ipam.netmask": "255.255.0.0", "kube-ipam.gateway": "10.0.0.1"}])
def test_no_ip_asks_for_nothing(given):
    assert annotations.parse(given) is None


def test_address_prefix_and_comma_lists():
    request = parse(ip=" 10.188.0.218/16 , 10.188.0.220")
    assert [(w.ip, w.prefixlen) for w in request.wanted] == [(ip("10.188.0.218"), 16), (ip("10.188.0.220"), None)]
    assert request.gateway is None


def test_a_netmask_applies_to_every_address_and_must_agree_with_a_prefix():
    request = parse(ip="10.188.0.218,10.188.0.219", netmask="255.255.0.0")
    assert {w.prefixlen for w in request.wanted} == {16}
    assert "contradicts" in error_of(ip="10.188.0.218/24", netmask="255.255.0.0").msg


def test_ipv6_is_supported_with_a_prefix():
    request = parse(ip="fd00::10/64", gateway="fd00::1")
    assert [(w.ip, w.prefixlen) for w in request.wanted] == [(ip("fd00::10"), 64)]
    err = error_of(ip="fd00::10", netmask="255.255.0.0")
    assert "IPv4 netmask but fd00::10 is IPv6" in err.msg


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"ip": "10.188.0.300"}, 'annotation kube-ipam.ip: "10.188.0.300" is not an IP address'),
        ({"ip": "database"}, "annotation kube-ipam.ip"),
        ({"ip": "10.188.0.218,"}, "has an empty item"),
        ({"ip": "10.188.0.218/40"}, "is not an address/prefix"),
        ({"ip": "10.188.0.218/x"}, "is not an address/prefix"),
        ({"ip": "10.188.0.218,10.188.0.218"}, "names 10.188.0.218 twice"),
        ({"ip": "10.188.0.218", "netmask": "255.255.0"}, 'annotation kube-ipam.netmask: "255.255.0" is not a dotted-quad'),
        ({"ip": "10.188.0.218", "netmask": "16"}, "is not a dotted-quad netmask"),
        ({"ip": "10.188.0.218", "netmask": "255.0.255.0"}, "one bits must be contiguous"),
        ({"ip": "10.188.0.218", "netmask": "0.0.255.255"}, "one bits must be contiguous"),
        ({"ip": "10.188.0.218", "netmask": "255.255.0.256"}, "is not a dotted-quad netmask"),
        ({"ip": "10.188.0.218", "gateway": "gw"}, 'annotation kube-ipam.gateway: "gw" is not an IP address'),
    ],
)
def test_malformed_values_name_the_annotation_and_value(values, fragment):
    assert fragment in error_of(**values).msg


def test_non_string_values_are_refused():
    with pytest.raises(CNIError, match="kube-ipam.ip"):
        annotations.parse({"kube-ipam.ip": 5})


def test_runtime_requests_become_a_fixed_request():
    assert annotations.from_requested([]) is None
    request = annotations.from_requested([Requested(ip("10.188.0.30"), "CNI_ARGS IP item 0")])
    assert [(w.ip, w.source) for w in request.wanted] == [(ip("10.188.0.30"), "CNI_ARGS IP item 0")]
