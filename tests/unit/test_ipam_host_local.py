"""delegates.host_local in process: ADD/DEL/CHECK/GC/STATUS over a tmp dataDir."""

from __future__ import annotations

import os

import pytest

from delegates.host_local import HostLocal
from multipy.cni.env import Environment
from multipy.cni.errors import (
    INTERNAL,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    STATUS_UNAVAILABLE,
    TRY_AGAIN_LATER,
    CNIError,
)
from multipy.plugins.contract import Services


@pytest.fixture
def plugin():
    return HostLocal(Services())


@pytest.fixture
def conf(tmp_path):
    def make(version="1.0.0", **ipam):
        ipam.setdefault("ranges", [[{"subnet": "10.1.2.0/29"}]])
        return {
            "cniVersion": version,
            "name": "net",
            "type": "bridge",
            "ipam": {"type": "host-local", "dataDir": str(tmp_path), **ipam},
        }

    return make


def _inv(command, cid="c1", ifname="eth0", args=""):
    return Environment(command=command, container_id=cid, netns="/run/netns/x", ifname=ifname, args=args)


def _files(tmp_path) -> dict[str, bytes]:
    d = tmp_path / "net"
    return {n: (d / n).read_bytes() for n in sorted(os.listdir(d))} if d.exists() else {}


def _error(fn, *args) -> CNIError:
    with pytest.raises(CNIError) as info:
        fn(*args)
    return info.value


def test_add_result_and_files(plugin, conf, tmp_path):
    c = conf(
        ranges=[[{"subnet": "10.1.2.0/29"}], [{"subnet": "fd00::/64"}]],
        routes=[{"dst": "0.0.0.0/0"}, {"dst": "fd01::/64", "gw": "fd00::9"}],
    )
    result = plugin.add(_inv("ADD"), c)
    assert result.to_json("1.0.0") == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.1.2.2/29", "gateway": "10.1.2.1"}, {"address": "fd00::2/64", "gateway": "fd00::1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "fd01::/64", "gw": "fd00::9"}],
    }
    assert _files(tmp_path) == {
        "10.1.2.2": b"c1\r\neth0",
        "fd00::2": b"c1\r\neth0",
        "last_reserved_ip.0": b"10.1.2.2",
        "last_reserved_ip.1": b"fd00::2",
        "lock": b"",
    }


def test_round_robin_continues_and_wraps(plugin, conf, tmp_path):
    c = conf()  # .2-.6
    got = [str(plugin.add(_inv("ADD", f"c{n}"), c).ips[0].address.ip) for n in range(5)]
    assert got == ["10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"]
    err = _error(plugin.add, _inv("ADD", "c9"), c)
    assert (err.code, err.msg) == (
        TRY_AGAIN_LATER,
        "failed to allocate for range 0 (ipam.ranges[0]): no IP addresses available in range set: 10.1.2.1-10.1.2.6",
    )
    plugin.delete(_inv("DEL", "c1"), c)
    plugin.delete(_inv("DEL", "c3"), c)
    # c1 held .3 and c3 .5: after .6 the search wraps to .2 (taken), then .3
    assert str(plugin.add(_inv("ADD", "c10"), c).ips[0].address.ip) == "10.1.2.3"
    assert str(plugin.add(_inv("ADD", "c11"), c).ips[0].address.ip) == "10.1.2.5"


def test_requested_ips_from_each_source(plugin, conf, tmp_path):
    c = conf(ranges=[[{"subnet": "10.1.2.0/29"}], [{"subnet": "fd00::/64"}]])
    r = plugin.add(_inv("ADD", "c1", args="IP=10.1.2.5"), c)
    assert [str(i.address) for i in r.ips] == ["10.1.2.5/29", "fd00::2/64"]
    r = plugin.add(_inv("ADD", "c2"), {**c, "args": {"cni": {"ips": ["fd00::7"]}}})
    assert [str(i.address) for i in r.ips] == ["10.1.2.6/29", "fd00::7/64"]
    r = plugin.add(_inv("ADD", "c3"), {**c, "runtimeConfig": {"ips": ["10.1.2.3/29", "fd00::8/64"]}})
    assert [str(i.address) for i in r.ips] == ["10.1.2.3/29", "fd00::8/64"]
    assert _files(tmp_path)["last_reserved_ip.1"] == b"fd00::8"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (
            "IP=10.1.2.1",
            INVALID_NETWORK_CONFIG,
            "failed to allocate for range 0 (ipam.ranges[0]): requested ip 10.1.2.1 is subnet's gateway",
        ),
        (
            "IP=10.1.3.1",
            INVALID_NETWORK_CONFIG,
            "failed to allocate all requested IPs: 10.1.3.1: 10.1.3.1 from CNI_ARGS IP",
        ),
        ("IP=10.1.2.7", INVALID_NETWORK_CONFIG, "not in any range set (10.1.2.1-10.1.2.6)"),  # the broadcast
        ("IP=nope", 4, 'CNI_ARGS IP item 0: "nope" is not an IP address'),
    ],
)
def test_requested_ip_errors_leave_no_files(plugin, conf, tmp_path, args, code, message):
    err = _error(plugin.add, _inv("ADD", args=args), conf())
    assert err.code == code and message in err.msg
    assert [n for n in _files(tmp_path) if n[0].isdigit()] == []


def test_a_taken_requested_ip_names_its_holder_and_rolls_back_earlier_sets(plugin, conf, tmp_path):
    c = conf(ranges=[[{"subnet": "fd00::/64"}], [{"subnet": "10.1.2.0/29"}]])
    plugin.add(_inv("ADD", "c1", args="IP=10.1.2.4"), c)
    err = _error(plugin.add, _inv("ADD", "c2", args="IP=10.1.2.4"), c)
    assert (err.code, err.msg) == (
        TRY_AGAIN_LATER,
        "failed to allocate for range 1 (ipam.ranges[1]): requested IP address 10.1.2.4 is not available "
        "in range set 10.1.2.1-10.1.2.6 (held by c1/eth0)",
    )
    # c2's fd00:: address from set 0 was released again
    assert sorted(n for n in _files(tmp_path) if ":" in n or n[0].isdigit()) == ["10.1.2.4", "fd00::2"]


def test_duplicate_add_is_refused_with_go_text(plugin, conf, tmp_path):
    c = conf()
    plugin.add(_inv("ADD"), c)
    for args in ("", "IP=10.1.2.5"):
        err = _error(plugin.add, _inv("ADD", args=args), c)
        assert err.code == INTERNAL
        assert "10.1.2.2 has been allocated to c1, duplicate allocation is not allowed" in err.msg
    # another ifname of the same container is another attachment
    assert str(plugin.add(_inv("ADD", ifname="net1"), c).ips[0].address) == "10.1.2.3/29"


def test_delete_is_by_container_and_ifname_and_idempotent(plugin, conf, tmp_path):
    c = conf()
    plugin.add(_inv("ADD", "c1", "eth0"), c)
    plugin.add(_inv("ADD", "c1", "net1"), c)
    plugin.delete(_inv("DEL", "c1", "eth0"), c)
    plugin.delete(_inv("DEL", "c1", "eth0"), c)
    assert {n: v for n, v in _files(tmp_path).items() if n[0].isdigit() and "." in n and "_" not in n} == {
        "10.1.2.3": b"c1\r\nnet1"
    }


def test_delete_falls_back_to_legacy_files_and_needs_only_the_location(plugin, conf, tmp_path):
    c = conf()
    plugin.add(_inv("ADD", "c1"), c)
    (tmp_path / "net" / "10.1.2.6").write_bytes(b"c1")
    plugin.delete(_inv("DEL", "c1", "net1"), c)  # no exact match on net1: the legacy file goes
    assert "10.1.2.6" not in _files(tmp_path) and "10.1.2.2" in _files(tmp_path)
    broken = conf(ranges=[[{"subnet": "10.1.2.5/24"}]])
    plugin.delete(_inv("DEL", "c1"), broken)  # ranges broken since ADD: still released
    assert "10.1.2.2" not in _files(tmp_path)


def test_delete_of_a_network_never_used_creates_nothing(plugin, conf, tmp_path):
    plugin.delete(_inv("DEL"), conf())
    assert not (tmp_path / "net").exists()


def test_check(plugin, conf, tmp_path):
    c = conf(version="0.4.0")
    plugin.add(_inv("ADD"), c)
    plugin.check(_inv("CHECK"), c)
    err = _error(plugin.check, _inv("CHECK", "c2"), c)
    assert err.code == INTERNAL and err.msg.startswith("host-local: Failed to find address added by container c2")
    (tmp_path / "net" / "10.1.2.6").write_bytes(b"c3")
    plugin.check(_inv("CHECK", "c3"), c)  # a legacy file counts, as in Go


def test_gc_releases_what_is_not_valid(plugin, conf, tmp_path):
    c = conf(version="1.1.0", ranges=[[{"subnet": "10.1.0.0/24"}]])
    for cid, ifname in [("keep", "eth0"), ("keep", "net1"), ("gone", "eth0"), ("half", "eth0"), ("half", "net1")]:
        plugin.add(_inv("ADD", cid, ifname), c)
    d = tmp_path / "net"
    (d / "10.1.0.100").write_bytes(b"legacy-keep")
    (d / "10.1.0.101").write_bytes(b"legacy-gone")
    (d / "10.1.0.102").write_bytes(b"")  # Go's #498 empty file: nobody's
    valid = [{"containerID": "keep", "ifname": "eth0"}, {"containerID": "keep", "ifname": "net1"}]
    valid += [{"containerID": "half", "ifname": "eth0"}, {"containerID": "legacy-keep", "ifname": "eth0"}]
    plugin.gc(_inv("GC", "", ""), {**c, "cni.dev/valid-attachments": valid})
    left = {n: v for n, v in _files(tmp_path).items() if n[0].isdigit() and "_" not in n}
    assert left == {
        "10.1.0.2": b"keep\r\neth0",
        "10.1.0.3": b"keep\r\nnet1",
        "10.1.0.5": b"half\r\neth0",
        "10.1.0.100": b"legacy-keep",
    }
    assert {"lock", "last_reserved_ip.0"} <= set(_files(tmp_path))


def test_gc_also_reads_libcni_heads_key_and_refuses_without_a_list(plugin, conf, tmp_path):
    c = conf(version="1.1.0")
    plugin.add(_inv("ADD", "a"), c)
    plugin.gc(_inv("GC", "", ""), {**c, "cni.dev/attachments": [{"containerID": "a", "ifname": "eth0"}]})
    assert "10.1.2.2" in _files(tmp_path)
    err = _error(plugin.gc, _inv("GC", "", ""), c)
    assert err.code == INVALID_NETWORK_CONFIG and "refusing to guess" in err.msg
    err = _error(plugin.gc, _inv("GC", "", ""), {**c, "cni.dev/valid-attachments": [{"containerID": "a"}]})
    assert err.msg.startswith('cni.dev/valid-attachments[0]: {"containerID": "a"} is not an attachment')
    assert "10.1.2.2" in _files(tmp_path)


def test_gc_reports_unreadable_reservations_after_releasing_the_rest(plugin, conf, tmp_path):
    c = conf(version="1.1.0")
    plugin.add(_inv("ADD", "a"), c)
    (tmp_path / "net" / "10.1.2.6").mkdir()
    err = _error(plugin.gc, _inv("GC", "", ""), {**c, "cni.dev/valid-attachments": []})
    assert err.code == IO_FAILURE and "could not read 10.1.2.6" in err.msg
    assert not (tmp_path / "net" / "10.1.2.2").exists()


def test_status(plugin, conf, tmp_path):
    plugin.status(_inv("STATUS", "", ""), conf(version="1.1.0"))
    (tmp_path / "file").write_text("")
    bad = conf(version="1.1.0")
    bad["ipam"]["dataDir"] = str(tmp_path / "file" / "sub")
    err = _error(plugin.status, _inv("STATUS", "", ""), bad)
    assert err.code == STATUS_UNAVAILABLE and f"{tmp_path / 'file'} is not a writable directory" in err.msg


@pytest.mark.parametrize(
    "change, message",
    [
        ({"ipam": None}, "IPAM config missing 'ipam' key"),
        ({"ipam": []}, "ipam: [] is not an object"),
        ({"name": "../etc"}, 'name: "../etc" cannot name host-local\'s directory under dataDir'),
        ({"name": ""}, 'name: "" cannot name'),
        ({"ipam": {"dataDir": "relative"}}, 'ipam.dataDir: "relative" is not an absolute path'),
        ({"ipam": {"dataDir": 5}}, "ipam.dataDir: 5 is not a string"),
        (
            {"ipam": {"ranges": [[{"subnet": "10.1.2.0/24"}]], "resolvConf": "/nonexistent/resolv.conf"}},
            'ipam.resolvConf: "/nonexistent/resolv.conf" cannot be read: No such file or directory',
        ),
        ({"runtimeConfig": []}, "runtimeConfig: [] is not an object"),
    ],
)
def test_config_errors(plugin, conf, tmp_path, change, message):
    c = conf()
    for key, value in change.items():
        if key == "ipam" and isinstance(value, dict):
            c["ipam"] = {"dataDir": str(tmp_path), **value}
        elif value is None:
            c.pop(key)
        else:
            c[key] = value
    err = _error(plugin.add, _inv("ADD"), c)
    assert err.code == INVALID_NETWORK_CONFIG and message in err.msg


def test_dns_from_resolv_conf(plugin, conf, tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 10.0.0.53\nsearch svc.cluster.local\noptions ndots:5\n")
    result = plugin.add(_inv("ADD"), conf(resolvConf=str(path)))
    assert result.to_json("0.3.1")["dns"] == {
        "nameservers": ["10.0.0.53"],
        "search": ["svc.cluster.local"],
        "options": ["ndots:5"],
    }


def test_legacy_range_and_ip_ranges_are_prepended(plugin, conf, tmp_path):
    c = conf(subnet="10.1.1.0/29", ranges=[[{"subnet": "fd00::/64"}]])
    c["runtimeConfig"] = {"ipRanges": [[{"subnet": "10.1.0.0/29"}]]}
    c["cniVersion"] = "0.3.1"
    result = plugin.add(_inv("ADD"), c)
    assert [str(i.address) for i in result.ips] == ["10.1.0.2/29", "10.1.1.2/29", "fd00::2/64"]
    assert {n for n in _files(tmp_path) if n.startswith("last")} == {f"last_reserved_ip.{n}" for n in range(3)}
