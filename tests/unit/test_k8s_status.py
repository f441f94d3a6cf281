"""multipy.k8s.status: network-status entries in Multus's format from results of every version,
the annotation text, and the AddedInterface message."""

import json

import pytest

from multipy.cni.result import SUPPORTED_VERSIONS, Result
from multipy.k8s.status import added_interface_message, annotation, entry

SANDBOX = "/var/run/netns/cni-1234"


def flannel_eth0(version="0.3.1"):
    """What flannel's bridge delegate returns for the seed's eth0."""
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": "cni0", "mac": "5a:11:22:33:44:01"},
            {"name": "veth1a2b3c4d", "mac": "5a:11:22:33:44:02"},
            {"name": "eth0", "mac": "5a:11:22:33:44:03", "sandbox": SANDBOX},
        ],
        "ips": [{"version": "4", "interface": 2, "address": "10.244.1.2/24", "gateway": "10.244.1.1"}],
        "routes": [{"dst": "10.244.0.0/16", "gw": "10.244.1.1"}, {"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
        "dns": {},
    }


def macvlan_net1(version="0.3.1"):
    """macvlan + kube-ipam for database-2's fixed address; the seed's default route has no gw."""
    return {
        "cniVersion": version,
        "interfaces": [{"name": "net1", "mac": "c2:b0:57:49:47:f1", "sandbox": SANDBOX}],
        "ips": [{"version": "4", "interface": 0, "address": "10.188.0.219/16", "gateway": "10.188.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    }


def test_the_seed_topology():
    entries = [
        entry("cbr0", "eth0", flannel_eth0(), default=True, mtu=1450),
        entry("db/macvlan-conf", "net1", macvlan_net1(), default=False, mtu=1500),
    ]
    assert entries == [
        {"name": "cbr0", "interface": "eth0", "ips": ["10.244.1.2"], "mac": "5a:11:22:33:44:03", "mtu": 1450,
         "default": True, "dns": {}, "gateway": ["10.244.1.1"]},
        {"name": "db/macvlan-conf", "interface": "net1", "ips": ["10.188.0.219"], "mac": "c2:b0:57:49:47:f1",
         "mtu": 1500, "dns": {}, "gateway": ["10.188.0.1"]},
    ]  # fmt: skip
    # Key order is Go's field order: name, interface, ips, mac, mtu, default, dns, gateway.
    assert list(entries[0]) == ["name", "interface", "ips", "mac", "mtu", "default", "dns", "gateway"]


def test_annotation_is_indented_as_multus_writes_it():
    entries = [entry("cbr0", "eth0", flannel_eth0(), default=True)]
    text = annotation(entries)
    assert text == json.dumps(entries, indent=4)
    assert text.startswith('[\n    {\n        "name": "cbr0",\n        "interface": "eth0",\n')
    assert json.loads(text) == entries
    assert annotation([]) == "[]"


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_every_version_with_interfaces_gives_the_same_entry(version):
    got = entry("cbr0", "eth0", flannel_eth0(version), default=True)
    assert got == {"name": "cbr0", "interface": "eth0", "ips": ["10.244.1.2"], "mac": "5a:11:22:33:44:03",
                   "default": True, "dns": {}, "gateway": ["10.244.1.1"]}  # fmt: skip


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", ""])
def test_a_020_result_has_no_interfaces_so_the_ifname_is_used(version):
    wire = {"ip4": {"ip": "10.244.1.2/24", "gateway": "10.244.1.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "ip6": {"ip": "fd00::2/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
            "dns": {"nameservers": ["10.96.0.10"]}}  # fmt: skip
    if version:
        wire["cniVersion"] = version
    got = entry("legacy", "eth0", wire, default=False, mtu=1500)
    assert got == {"name": "legacy", "interface": "eth0", "ips": ["10.244.1.2", "fd00::2"], "mtu": 1500,
                   "dns": {"nameservers": ["10.96.0.10"]}, "gateway": ["10.244.1.1", "fd00::1"]}  # fmt: skip


def test_the_interface_is_the_last_one_with_a_sandbox():
    wire = flannel_eth0("1.0.0")
    wire["interfaces"].append({"name": "eth0-second", "mac": "5a:11:22:33:44:04", "sandbox": SANDBOX})
    got = entry("n", "eth0", wire, default=False)
    assert (got["interface"], got["mac"]) == ("eth0-second", "5a:11:22:33:44:04")


def test_without_a_sandbox_interface_the_ifname_is_used_and_no_mac():
    wire = {"cniVersion": "1.0.0", "interfaces": [{"name": "cni0", "mac": "5a:11:22:33:44:01"}],
            "ips": [{"address": "10.1.0.5/24"}]}  # fmt: skip
    assert entry("n", "net3", wire, default=False) == {"name": "n", "interface": "net3", "ips": ["10.1.0.5"], "dns": {}}


def test_mtu_from_a_110_result_wins_over_the_argument():
    wire = macvlan_net1("1.1.0")
    wire["interfaces"][0]["mtu"] = 9000
    assert entry("n", "net1", wire, default=False, mtu=1500)["mtu"] == 9000
    assert entry("n", "net1", macvlan_net1("1.1.0"), default=False, mtu=1500)["mtu"] == 1500
    assert "mtu" not in entry("n", "net1", macvlan_net1("1.1.0"), default=False)
    # A 0.4.0 result has no mtu field: it is not read even if a plugin printed one.
    old = macvlan_net1("0.4.0")
    old["interfaces"][0]["mtu"] = 9000
    assert "mtu" not in entry("n", "net1", old, default=False)


def test_dns_is_always_present():
    wire = macvlan_net1("1.1.0")
    wire["dns"] = {"nameservers": ["10.96.0.10"], "domain": "cluster.local", "search": ["db.svc.cluster.local"],
                   "options": ["ndots:5"]}  # fmt: skip
    assert entry("n", "net1", wire, default=False)["dns"] == wire["dns"]
    del wire["dns"]
    assert entry("n", "net1", wire, default=False)["dns"] == {}


def test_gateways():
    wire = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "net1", "sandbox": SANDBOX}],
        "ips": [
            {"address": "10.1.0.5/24"},  # no gateway: the next v4 address with one is used
            {"address": "10.1.0.6/24", "gateway": "10.1.0.1"},
            {"address": "fd00::5/64", "gateway": "fd00::1"},
        ],
        "routes": [
            {"dst": "10.2.0.0/16", "gw": "10.1.0.254"},  # not a default route
            {"dst": "0.0.0.0/0"},
            {"dst": "0.0.0.0/0", "gw": "10.1.0.1", "priority": 200},  # the same gateway once
            {"dst": "::/0", "gw": "fd00::fe"},
        ],
    }
    assert entry("n", "net1", wire, default=False)["gateway"] == ["10.1.0.1", "fd00::fe"]


def test_no_gateway_when_nothing_says_one():
    wire = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/24"}], "routes": [{"dst": "0.0.0.0/0"}]}
    assert "gateway" not in entry("n", "net1", wire, default=False)
    wire["routes"] = [{"dst": "10.0.0.0/8", "gw": "10.1.0.1"}]
    wire["ips"][0]["gateway"] = "10.1.0.1"
    assert "gateway" not in entry("n", "net1", wire, default=False)


def test_an_l2_only_result_is_just_the_interface():
    wire = {"cniVersion": "1.1.0", "interfaces": [{"name": "net1", "mac": "c2:b0:57:49:47:f1", "sandbox": SANDBOX}]}
    assert entry("l2", "net1", wire, default=False) == {"name": "l2", "interface": "net1", "mac": "c2:b0:57:49:47:f1",
                                                         "dns": {}}  # fmt: skip


@pytest.mark.parametrize(
    "wire",
    [
        {},  # a 0.1.0 result that says nothing
        {"cniVersion": "9.9.9", "ips": []},
        {"cniVersion": 3},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.300/24"}]},
        {"cniVersion": "1.0.0", "ips": "nope"},
        {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.5/24", "interface": 4}]},
        {"cniVersion": "1.0.0", "routes": [{"dst": "default"}]},
        {"cniVersion": "0.2.0", "ip4": "10.1.0.5/24"},
        {"cniVersion": "1.0.0", "dns": []},
        None,
        [],
        "garbage",
        42,
    ],
)
def test_an_entry_never_raises(wire):
    got = entry("n", "net1", wire, default=True, mtu=1400)
    if wire == {}:
        assert got == {"name": "n", "interface": "net1", "mtu": 1400, "default": True, "dns": {}}
    else:
        assert got == {"name": "n", "interface": "net1", "dns": {}}


def test_an_entry_for_every_supported_version_of_a_converted_result():
    base = Result.from_json(flannel_eth0("1.1.0"))
    for version in SUPPORTED_VERSIONS:
        got = entry("cbr0", "eth0", base.to_json(version), default=True)
        assert got["ips"] == ["10.244.1.2"] and got["gateway"] == ["10.244.1.1"] and got["interface"] == "eth0"


# ---- AddedInterface


def test_added_interface_message_is_multus_text():
    assert (
        added_interface_message("net1", macvlan_net1(), "db/macvlan-conf")
        == "Add net1 [10.188.0.219/16] from db/macvlan-conf"
    )
    assert added_interface_message("eth0", flannel_eth0("1.1.0"), "cbr0") == "Add eth0 [10.244.1.2/24] from cbr0"


def test_added_interface_message_lists_cidrs_as_go_prints_a_slice():
    wire = {"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.2/24"}, {"address": "fd00::2/64"}]}
    assert added_interface_message("eth0", wire, "k8snet1") == "Add eth0 [10.244.1.2/24 fd00::2/64] from k8snet1"


def test_added_interface_message_without_addresses_or_name_or_a_readable_result():
    assert added_interface_message("net1", {"cniVersion": "1.1.0"}, "l2") == "Add net1 [] from l2"
    assert added_interface_message("net1", macvlan_net1(), "") == "Add net1 [10.188.0.219/16]"
    assert added_interface_message("net1", {"cniVersion": "7"}, "x") == "Add net1 [] from x"
