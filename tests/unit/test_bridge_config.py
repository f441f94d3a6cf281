"""The bridge's conf parsing and gateway arithmetic (pure; the kernel side is in tests/integration/test_bridge.py)."""

from __future__ import annotations

import ipaddress

import pytest

from delegates.bridge import config, gateways
from multipy.cni.env import Environment
from multipy.cni.errors import INVALID_NETWORK_CONFIG, UNSUPPORTED_FIELD, CNIError
from multipy.cni.result import IPConfig, Result, Route

ADD = Environment("ADD", "c1", "/run/netns/p", "eth0")


def test_defaults_are_the_references():
    c = config.parse({"name": "n"}, ADD)
    assert (c.bridge, c.is_gateway, c.ip_masq, c.mtu, c.layer3) == ("cni0", False, False, 0, False)


def test_default_gateway_implies_gateway():
    c = config.parse({"name": "n", "isDefaultGateway": True}, ADD)
    assert c.is_gateway and c.is_default_gateway


def test_mac_precedence_cni_args_then_args_then_runtime_config():
    conf = {"name": "n", "args": {"cni": {"mac": "0A-58-00-00-00-02"}}}
    inv = Environment("ADD", "c1", "/run/netns/p", "eth0", "IgnoreUnknown=1;MAC=0a:58:00:00:00:01")
    assert config.parse(conf, inv).mac == "0a:58:00:00:00:02"
    assert config.parse({**conf, "runtimeConfig": {"mac": "0a:58:00:00:00:03"}}, inv).mac == "0a:58:00:00:00:03"
    assert config.parse({"name": "n"}, inv).mac == "0a:58:00:00:00:01"


@pytest.mark.parametrize(("keys", "code", "words"), [
    ({"mtu": 1.5}, INVALID_NETWORK_CONFIG, "mtu: must be an integer, got 1.5"),
    ({"mtu": True}, INVALID_NETWORK_CONFIG, "mtu: must be an integer, got true"),
    ({"bridge": "a-very-long-bridge-name"}, INVALID_NETWORK_CONFIG, "is not a valid interface name"),
    ({"ipam": []}, INVALID_NETWORK_CONFIG, "ipam: must be an object, got []"),
    ({"dns": {"nameservers": "10.0.0.1"}}, INVALID_NETWORK_CONFIG, 'dns.nameservers: must be a list of strings'),
    ({"runtimeConfig": {"mac": "01:00:5e:00:00:01"}}, INVALID_NETWORK_CONFIG, "is a multicast address"),
    ({"macspoofchk": True}, UNSUPPORTED_FIELD, "macspoofchk: true is not supported"),
    ({"name": None}, INVALID_NETWORK_CONFIG, "name: the network name is missing"),
])
def test_bad_values_name_the_key(keys, code, words):
    with pytest.raises(CNIError) as caught:
        config.parse({"name": "n", **keys}, ADD)
    assert caught.value.code == code and words in caught.value.msg


def test_del_reads_only_what_it_needs():
    c = config.parse({"name": "n", "hairpinMode": True, "promiscMode": True, "mtu": "x", "ipMasq": True,
                      "runtimeConfig": {"mac": "bad"}, "ipam": {"type": "host-local"}}, Environment("DEL", "c1"))
    assert c.ip_masq and c.layer3


def _result(*pairs) -> Result:
    return Result("1.0.0", ips=[IPConfig(ipaddress.ip_interface(a), ipaddress.ip_address(g) if g else None)
                                for a, g in pairs])


def test_gateways_default_to_network_plus_one_and_one_default_route_per_family():
    result = _result(("10.1.2.5/24", None), ("10.1.3.5/24", None), ("fd00::5/64", "fd00::9"))
    addresses = gateways.apply(result, is_gateway=True, is_default_gateway=True)
    assert [str(a) for a in addresses] == ["10.1.2.1/24", "10.1.3.1/24", "fd00::9/64"]
    assert [ip.interface for ip in result.ips] == [2, 2, 2]
    assert [(str(r.dst), str(r.gw)) for r in result.routes] == [("0.0.0.0/0", "10.1.2.1"), ("::/0", "fd00::9")]


def test_ipam_default_route_with_gateway_is_kept():
    result = _result(("10.1.2.5/24", "10.1.2.1"))
    result.routes = [Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.1.2.254"))]
    gateways.apply(result, is_gateway=True, is_default_gateway=True)
    assert len(result.routes) == 1


def test_without_gateway_nothing_goes_on_the_bridge():
    result = _result(("10.1.2.5/24", None))
    assert gateways.apply(result, is_gateway=False, is_default_gateway=False) == []
    assert result.ips[0].gateway is None and result.routes == []
