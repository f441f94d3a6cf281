"""The native macvlan (delegates/macvlan) side by side with Debian's Go macvlan 1.1.1.

Each side gets its own host namespace (a veth `uplink0` as the master) and its
own pod namespace, the same conf and the same Go host-local as IPAM (each with
its own dataDir), so only macvlan differs. Results and kernel state are
normalised (MACs, veth names, sandbox paths) and must be equal, except for the
1.1.1 behaviours upstream has since fixed, which are asserted where they show.
"""

from __future__ import annotations

import copy
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from delegates.macvlan.mac import parse_mac
from multipy.testing import kernel, snapshot
from multipy.testing.runtime import Outcome, invoke, native

from .conftest import GO_PLUGINS

SUBNET = "10.9.0.0/24"
VERSIONS = ("0.3.1", "0.4.0", "1.0.0")
MODES = ("bridge", "private", "vepa", "passthru")
OURS = native("macvlan", binaries=("host-local",))
GO = f"{GO_PLUGINS}/macvlan"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _conf(version: str = "1.0.0", mode: str = "bridge", ipam: bool = True, **extra) -> dict:
    conf = {
        "cniVersion": version,
        "name": "mvnet",
        "type": "macvlan",
        "master": "uplink0",
        "mode": mode,
        "mtu": 1400,
        "dns": {"nameservers": ["10.9.0.53"], "search": ["svc.example"]},
        "ipam": {"type": "host-local", "subnet": SUBNET, "routes": [{"dst": "10.10.0.0/16", "gw": "10.9.0.254"}]}
        if ipam
        else {},
    }
    conf.update(extra)
    return conf


@dataclass(eq=False)
class Side:
    """One implementation with its own host (master uplink0) and pod namespaces."""

    argv: str | list[str]
    host: str
    pod: str
    data_dir: Path

    @property
    def netns(self) -> str:
        return f"/run/netns/{self.pod}"

    def __call__(self, command: str, conf: dict, netns: str | None = None, **kwargs) -> Outcome:
        conf = copy.deepcopy(conf)
        ipam = conf.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type"):
            ipam.setdefault("dataDir", str(self.data_dir))
        kwargs.setdefault("container_id", "c1")
        kwargs.setdefault("ifname", "net1")
        kwargs.setdefault("cni_path", GO_PLUGINS)
        return invoke(
            self.argv,
            command,
            conf,
            netns=self.netns if netns is None else netns,
            host_netns=self.host,
            **kwargs,
        )

    def reservations(self) -> list[str]:
        directory = self.data_dir / "mvnet"
        return sorted(n for n in os.listdir(directory) if n[0].isdigit()) if directory.exists() else []

    def pod_links(self) -> list[str]:
        return sorted(kernel.links(self.pod))

    def snapshots(self) -> tuple[dict, dict]:
        return snapshot.take(self.host), snapshot.take(self.pod)


@pytest.fixture
def make_side(netns, tmp_path):
    def make(argv, label: str) -> Side:
        host, pod = netns("mvh"), netns("mvp")
        _ip("-n", host, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p")
        _ip("-n", host, "link", "set", "uplink0", "up")
        _ip("-n", host, "link", "set", "uplink0p", "up")
        return Side(argv, host, pod, tmp_path / label)

    return make


@pytest.fixture
def ours(make_side) -> Side:
    return make_side(OURS, "ours")


@pytest.fixture
def go(make_side) -> Side:
    return make_side(GO, "go")


def _result(doc: dict, side: Side) -> dict:
    doc = copy.deepcopy(doc)
    for iface in doc.get("interfaces", []):
        assert iface.pop("sandbox") == side.netns
    if doc.get("dns") == {}:
        doc.pop("dns")  # libcni 1.1.2 prints an empty dns for 1.0.0 too
    return snapshot.normalise(doc)


def _same_state(ours_state: dict, go_state: dict) -> None:
    assert snapshot.normalise(ours_state) == snapshot.normalise(go_state)


def _txqlen_quirk(ours_pod: dict, go_pod: dict, ifname: str = "net1") -> None:
    """Debian 1.1.1 creates the macvlan with txqueuelen 0 (fixed upstream in v1.6.0, 3a49cff1).

    Ours leaves the kernel's default, as current upstream does. Asserted, then dropped from both.
    """
    # `ip -j` leaves out a zero qlen.
    assert (ours_pod["links"][ifname].pop("txqlen", 0), go_pod["links"][ifname].pop("txqlen", 0)) == (1000, 0)


def _sysctl(pod: str, key: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", pod, "cat", f"/proc/sys/{key}"], capture_output=True, text=True
    ).stdout.strip()


def _with_prev(conf: dict, outcome: Outcome) -> dict:
    return {**conf, "prevResult": outcome.json}


# ---- the differential matrix -----------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("mode", MODES)
def test_add_check_del_match_the_go_macvlan(mode, version, ours, go):
    conf = _conf(version, mode)
    before = {side: side.snapshots() for side in (ours, go)}

    mine, theirs = ours("ADD", conf), go("ADD", conf)
    assert mine.ok and theirs.ok, mine.stdout + theirs.stdout
    assert _result(mine.json, ours) == _result(theirs.json, go)
    assert mine.json["ips"][0]["address"] == "10.9.0.2/24" and mine.json["ips"][0]["interface"] == 0

    (host_a, pod_a), (host_b, pod_b) = ours.snapshots(), go.snapshots()
    _txqlen_quirk(pod_a, pod_b)
    _same_state(pod_a, pod_b)
    _same_state(host_a, host_b)
    assert pod_a["links"]["net1"]["mode"] == mode and pod_a["links"]["net1"]["mtu"] == 1400
    assert pod_a["sysctls"]["net/ipv4/conf/net1/arp_notify"] == "1"
    # ndisc_notify as upstream v1.4.0+ sets it; 1.1.1 does not.
    assert (
        _sysctl(ours.pod, "net/ipv6/conf/net1/ndisc_notify"),
        _sysctl(go.pod, "net/ipv6/conf/net1/ndisc_notify"),
    ) == ("1", "0")
    if mode == "passthru":
        # The kernel raises the master's promiscuity for a passthru macvlan; neither plugin sets it.
        assert host_a["links"]["uplink0"]["promiscuity"] == 1

    if version != "0.3.1":
        assert ours("CHECK", _with_prev(conf, mine)).ok
        assert go("CHECK", _with_prev(conf, theirs)).ok
    # libcni sends the cached result to DEL from 0.4.0 on.
    deleted = [
        side("DEL", _with_prev(conf, out) if version != "0.3.1" else conf) for side, out in ((ours, mine), (go, theirs))
    ]
    assert all(d.ok for d in deleted), [d.stdout for d in deleted]
    for side in (ours, go):
        host, pod = side.snapshots()
        assert (host, pod) == before[side], side.argv  # passthru promiscuity is back to 0
        assert side.reservations() == []


def test_dual_stack_matches(ours, go):
    conf = _conf()
    conf["ipam"] = {
        "type": "host-local",
        "ranges": [[{"subnet": SUBNET}], [{"subnet": "fd00:9::/64"}]],
        "routes": [{"dst": "10.10.0.0/16", "gw": "10.9.0.254"}, {"dst": "fd00:10::/64", "gw": "fd00:9::fe"}],
    }
    mine, theirs = ours("ADD", conf), go("ADD", conf)
    assert mine.ok and theirs.ok, mine.stdout + theirs.stdout
    assert _result(mine.json, ours) == _result(theirs.json, go)
    assert [ip["address"] for ip in mine.json["ips"]] == ["10.9.0.2/24", "fd00:9::2/64"]
    pod_a, pod_b = snapshot.take(ours.pod), snapshot.take(go.pod)
    _txqlen_quirk(pod_a, pod_b)
    _same_state(pod_a, pod_b)
    assert any(r["dst"] == "fd00:10::/64" and r.get("gateway") == "fd00:9::fe" for r in pod_a["routes"])
    for side, added in ((ours, mine), (go, theirs)):
        assert side("CHECK", _with_prev(conf, added)).ok
        assert side("DEL", _with_prev(conf, added)).ok
        assert side.pod_links() == ["lo"] and side.reservations() == []


@pytest.mark.parametrize(("source", "version"), [("conf", "0.3.1"), ("CNI_ARGS", "0.4.0"), ("runtimeConfig", "1.0.0")])
def test_explicit_mac_on_an_l2_only_macvlan(source, version, ours, go):
    """`"ipam": {}`: the link only comes up. The MAC comes from conf < CNI_ARGS MAC < runtimeConfig.mac."""
    wanted = "02:42:0a:09:00:07"
    conf = _conf(version, ipam=False)
    cni_args = ""
    if source == "conf":
        conf["mac"] = wanted
    elif source == "CNI_ARGS":
        conf["mac"] = "02:42:0a:09:00:01"  # loses to CNI_ARGS
        cni_args = f"MAC={wanted}"
    else:
        conf["mac"] = "02:42:0a:09:00:01"
        cni_args = "MAC=02:42:0a:09:00:02"  # both lose to runtimeConfig
        conf["runtimeConfig"] = {"mac": wanted}

    mine, theirs = ours("ADD", conf, cni_args=cni_args), go("ADD", conf, cni_args=cni_args)
    assert mine.ok and theirs.ok, mine.stdout + theirs.stdout
    assert mine.json["interfaces"][0]["mac"] == theirs.json["interfaces"][0]["mac"] == wanted
    assert "ips" not in mine.json
    assert _result(mine.json, ours) == _result(theirs.json, go)
    pod_a, pod_b = snapshot.take(ours.pod), snapshot.take(go.pod)
    assert pod_a["links"]["net1"]["address"] == pod_b["links"]["net1"]["address"] == wanted
    assert "UP" in pod_a["links"]["net1"]["flags"]
    _txqlen_quirk(pod_a, pod_b)
    _same_state(pod_a, pod_b)  # no sysctls either: the reference sets them only with an IPAM
    assert pod_a["sysctls"]["net/ipv4/conf/net1/arp_notify"] == "0"

    assert ours("DEL", conf, cni_args=cni_args).ok and go("DEL", conf, cni_args=cni_args).ok
    assert ours.pod_links() == go.pod_links() == ["lo"]


def _master_index(side: Side, ifname: str = "net1") -> tuple[int, int]:
    """(the pod link's lower index, uplink0's index in the host)."""
    return kernel.links(side.pod)[ifname]["link_index"], kernel.links(side.host)["uplink0"]["ifindex"]


def test_default_master_is_the_default_route_interface(ours, go):
    conf = _conf()
    del conf["master"]
    mine, theirs = ours("ADD", conf), go("ADD", conf)
    assert mine.json["code"] == 7 and "master is not set" in mine.json["msg"] and "no default route" in mine.json["msg"]
    assert theirs.json == {"code": 999, "msg": "no default route interface found"}
    for side in (ours, go):
        assert side.pod_links() == ["lo"] and side.reservations() == []
        _ip("-n", side.host, "addr", "add", "192.0.2.1/24", "dev", "uplink0")
        _ip("-n", side.host, "route", "add", "default", "via", "192.0.2.254")

    mine, theirs = ours("ADD", conf), go("ADD", conf)
    assert mine.ok and theirs.ok, mine.stdout + theirs.stdout
    assert _result(mine.json, ours) == _result(theirs.json, go)
    index, uplink = _master_index(ours)
    assert index == uplink
    assert ours("DEL", _with_prev(conf, mine)).ok and go("DEL", _with_prev(conf, theirs)).ok

    # A multipath default route: ours takes the first hop's device; 1.1.1 looks up link index 0 and fails.
    for side in (ours, go):
        _ip("-n", side.host, "link", "add", "uplink1", "type", "veth", "peer", "name", "uplink1p")
        _ip("-n", side.host, "link", "set", "uplink1", "up")
        _ip("-n", side.host, "addr", "add", "198.51.100.1/24", "dev", "uplink1")
        _ip("-n", side.host, *"route replace default nexthop via 192.0.2.254 nexthop via 198.51.100.254".split())
    mine, theirs = ours("ADD", conf), go("ADD", conf)
    assert mine.ok, mine.stdout
    assert theirs.json == {"code": 999, "msg": "invalid argument"}
    assert _master_index(ours) == (uplink, uplink)
    assert ours("DEL", _with_prev(conf, mine)).ok


def test_native_host_local_gives_the_same_result(make_side, go):
    ours = make_side(native("macvlan"), "ours")
    conf = _conf("1.0.0")
    mine, theirs = ours("ADD", conf), go("ADD", conf)
    assert mine.ok and theirs.ok, mine.stdout + theirs.stdout
    assert _result(mine.json, ours) == _result(theirs.json, go)
    pod_a, pod_b = snapshot.take(ours.pod), snapshot.take(go.pod)
    _txqlen_quirk(pod_a, pod_b)
    _same_state(pod_a, pod_b)
    assert ours("DEL", _with_prev(conf, mine)).ok and go("DEL", _with_prev(conf, theirs)).ok
    assert ours.pod_links() == ["lo"] and ours.reservations() == []


def test_mac_spellings():
    assert parse_mac("02-42-AC-11-00-02") == parse_mac("0242.ac11.0002") == "02:42:ac:11:00:02"
    for bad in ("02:42:ac:11:00", "zz:42:ac:11:00:02", "01:00:5e:00:00:01", "00:00:00:00:00:00", ""):
        with pytest.raises(ValueError):
            parse_mac(bad)


# ---- bad config --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "cni_args", "code", "message", "go_message"),
    [
        (
            {"mode": "fast"},
            "",
            7,
            'unknown macvlan mode "fast": mode must be one of bridge, private, vepa, passthru',
            'unknown macvlan mode: "fast"',
        ),
        (
            {"mtu": 9000},
            "",
            7,
            "invalid mtu 9000: must be 0 or in [68, 1500], 1500 being the MTU of master 'uplink0'",
            "invalid MTU 9000, must be [0, master MTU(1500)]",
        ),
        (
            {"mtu": -1},
            "",
            7,
            "invalid mtu -1: must be 0 (the master's MTU) or in [68, the master's MTU]",
            "invalid MTU -1, must be [0, master MTU(1500)]",
        ),
        ({"mtu": 10}, "", 7, "invalid mtu 10: must be 0", "failed to create macvlan: invalid argument"),
        ({"mtu": "1400"}, "", 7, 'invalid mtu "1400": expected an integer', "failed to load netconf"),
        (
            {"mac": "02:42:zz:00:00:01"},
            "",
            7,
            'invalid mac "02:42:zz:00:00:01": expected 6 hex octets',
            "invalid args 02:42:zz:00:00:01 for MAC addr",
        ),
        (
            {"mac": "01:00:5e:00:00:01"},
            "",
            7,
            'invalid mac "01:00:5e:00:00:01": is a multicast address',
            "failed to create macvlan: cannot assign requested address",
        ),
        ({}, "MAC=02:42", 4, 'invalid CNI_ARGS MAC "02:42": expected 6 hex octets', "invalid args 02:42 for MAC addr"),
        (
            {"runtimeConfig": {"mac": 7}},
            "",
            7,
            "invalid runtimeConfig.mac 7: expected a string",
            "failed to load netconf",
        ),
        ({"master": "nope0"}, "", 7, 'failed to lookup master "nope0": Link not found', "Link not found"),
        ({"ipam": "host-local"}, "", 7, 'invalid ipam "host-local": expected an object', "failed to load netconf"),
        (
            {"dns": {"nameservers": "10.9.0.53"}},
            "",
            7,
            'invalid dns {"nameservers": "10.9.0.53"}: dns.nameservers: expected a list',
            "failed to load netconf",
        ),
    ],
)
def test_bad_config_is_refused_before_anything_is_made(change, cni_args, code, message, go_message, ours, go):
    conf = {**_conf(), **change}
    mine, theirs = ours("ADD", conf, cni_args=cni_args), go("ADD", conf, cni_args=cni_args)
    assert (mine.returncode, theirs.returncode) == (1, 1)
    assert mine.json["code"] == code and message in mine.json["msg"], mine.json
    assert theirs.json["code"] == 999 and go_message in theirs.json["msg"], theirs.json
    for side in (ours, go):
        assert side.pod_links() == ["lo"] and side.reservations() == []


def test_refusals_of_ours_alone(ours):
    """Keys Debian 1.1.1 does not know (it ignores them) and a result no version can hold."""
    cases = [
        ({"linkInContainer": True}, 2, "unsupported field linkInContainer true"),
        ({"bcqueuelen": 100}, 2, "unsupported field bcqueuelen 100"),
        (_conf("0.2.0", ipam=False), 7, 'a macvlan without ipam has no result in cniVersion "0.2.0"'),
    ]
    for change, code, message in cases:
        added = ours("ADD", {**_conf(), **change})
        assert added.json["code"] == code and message in added.json["msg"], added.json
        assert ours.pod_links() == ["lo"] and ours.reservations() == []


def test_conflicts_on_the_node(ours, netns):
    """What only the kernel knows: MACs in use on the master, passthru's claim on the whole master."""
    master_mac = kernel.links(ours.host)["uplink0"]["address"]
    l2 = _conf(ipam=False)
    other = netns("mvp")
    second = f"/run/netns/{other}"

    refused = ours("ADD", {**l2, "mac": master_mac}).json
    assert refused["code"] == 7 and refused["msg"] == f"invalid mac \"{master_mac}\": it is the MAC of master 'uplink0'"
    assert ours("ADD", {**l2, "mac": "02:42:0a:09:00:07"}).ok
    taken = ours("ADD", {**l2, "mac": "02:42:0a:09:00:07"}, container_id="c2", netns=second).json
    assert taken["code"] == 999 and taken["msg"] == 'failed to set "net1" UP: Address already in use'
    assert sorted(kernel.links(other)) == ["lo"]

    busy = ours("ADD", _conf(mode="passthru", ipam=False), container_id="c2", netns=second).json
    assert busy["code"] == 7 and "already carries macvlans, so it cannot take a passthru one" in busy["msg"]
    assert ours("DEL", l2).ok
    assert ours("ADD", _conf(mode="passthru"), container_id="c2", netns=second).ok
    blocked = ours("ADD", _conf()).json
    assert blocked["code"] == 999 and blocked["msg"].endswith("(does the master already carry a passthru macvlan?)")
    assert ours.pod_links() == ["lo"] and ours.reservations() == ["10.9.0.2"]
    assert ours("DEL", _conf(mode="passthru"), container_id="c2", netns=second).ok
    assert ours.reservations() == []


def test_add_into_a_missing_netns(ours):
    added = ours("ADD", _conf(), netns="/run/netns/no-such-pod")
    assert added.json["code"] == 8 and "no such namespace" in added.json["msg"]
    assert not os.path.exists("/run/netns/no-such-pod") and ours.reservations() == []


# ---- DEL -------------------------------------------------------------------------------


def test_del_twice_and_without_netns(ours, go):
    conf = _conf()
    for side in (ours, go):
        added = side("ADD", conf)
        assert added.ok, added.stdout
        # Without CNI_NETNS only IPAM is released; the link stays for the runtime's namespace teardown.
        assert side("DEL", conf, netns="").ok
        assert side.reservations() == [] and "net1" in side.pod_links()
        assert side("DEL", _with_prev(conf, added)).ok
        assert side("DEL", _with_prev(conf, added)).ok
        assert side.pod_links() == ["lo"]


def test_del_with_the_netns_gone(ours, go):
    conf = _conf()
    for side in (ours, go):
        assert side("ADD", conf).ok
        _ip("netns", "delete", side.pod)
        assert side("DEL", conf).ok
        assert side.reservations() == []
        assert not os.path.exists(side.netns)


def test_del_with_the_master_gone(ours, go):
    """Debian 1.1.1 resolves the master on DEL and fails (fixed upstream in v1.4.0, 845ef62b); ours succeeds."""
    conf = _conf()
    for side in (ours, go):
        assert side("ADD", conf).ok
        _ip("-n", side.host, "link", "del", "uplink0")  # takes the pod's macvlan with it
    assert ours("DEL", conf).ok
    assert ours.reservations() == []
    theirs = go("DEL", conf)
    assert theirs.json == {"code": 999, "msg": "Link not found"}
    assert go.reservations() == ["10.9.0.2"]  # 1.1.1 leaks the lease until the master is back


def test_del_with_a_broken_conf_still_removes_the_link(ours):
    conf = _conf()
    assert ours("ADD", conf).ok
    # DEL needs only ipam and the names: a mode or mtu gone bad since ADD does not block it.
    assert ours("DEL", {**conf, "mode": "fast", "mtu": 99999, "master": "gone0"}).ok
    assert ours.pod_links() == ["lo"] and ours.reservations() == []


# ---- CHECK ---------------------------------------------------------------------------


def test_check_passes_after_add_and_fails_after_a_change(ours, go):
    conf = _conf()
    outcomes = {side: side("ADD", conf) for side in (ours, go)}
    for side, added in outcomes.items():
        assert added.ok, added.stdout
        check = _with_prev(conf, added)
        assert side("CHECK", check).ok

        mac = added.json["interfaces"][0]["mac"]
        _ip("-n", side.pod, "link", "set", "net1", "address", "02:00:00:00:00:99")
        failed = side("CHECK", check)
        assert failed.json["code"] == 999
        assert failed.json["msg"].lower() == f"interface net1 mac {mac} doesn't match container mac: 02:00:00:00:00:99"
        _ip("-n", side.pod, "link", "set", "net1", "address", mac)
        assert side("CHECK", check).ok

        _ip("-n", side.pod, "addr", "del", "10.9.0.2/24", "dev", "net1")
        failed = side("CHECK", check)
        assert failed.json == {
            **({"cniVersion": "1.0.0"} if side is ours else {}),
            "code": 999,
            "msg": "Failed to match addr 10.9.0.2/24 on interface net1",
        }
        assert side("DEL", check).ok


def test_check_of_routes_mode_and_master(ours, go):
    conf = _conf()
    conf["ipam"]["routes"] = [{"dst": "10.10.0.0/16"}]  # no gw: the route goes via the IPAM gateway
    mine, theirs = ours("ADD", conf), go("ADD", conf)
    check = _with_prev(conf, mine)
    assert ours("CHECK", check).ok
    # Debian 1.1.1's route check always compares gateways (fixed upstream in v1.3.0, c347755f).
    failed = go("CHECK", _with_prev(conf, theirs)).json
    assert failed["code"] == 999 and failed["msg"] == (
        "Expected Route {Dst:{IP:10.10.0.0 Mask:ffff0000} GW:<nil>} not found in routing table"
    )

    missing = ours("CHECK", conf)
    assert missing.json["code"] == 7 and missing.json["msg"] == "required prevResult missing"
    assert ours("CHECK", {**check, "mode": "private"}).json["msg"] == (
        "container macvlan mode bridge does not match expected value: private"
    )
    # A link of the master's name is not enough: it must be the link the macvlan hangs off.
    _ip("-n", ours.host, "link", "set", "uplink0", "name", "uplink9")
    _ip("-n", ours.host, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
    assert "macvlan 'net1' is not on master 'uplink0'" in ours("CHECK", check).json["msg"]
    _ip("-n", ours.host, "link", "del", "uplink0")
    _ip("-n", ours.host, "link", "set", "uplink9", "name", "uplink0")
    assert ours("CHECK", check).ok
    _ip("-n", ours.pod, "route", "del", "10.10.0.0/16")
    missing_route = ours("CHECK", check).json["msg"]
    assert missing_route.startswith("Expected Route {Dst: 10.10.0.0/16") and "not found" in missing_route
    for side, added in ((ours, mine), (go, theirs)):
        assert side("DEL", _with_prev(conf, added)).ok


# ---- rollback: nothing is left behind --------------------------------------------------
# Debian 1.1.1 declares `err` again inside its IPAM branch, so its deferred link cleanup never
# sees these failures and leaves the macvlan in the pod until DEL; ours leaves nothing.


def _temporary_links(side: Side) -> list[str]:
    return [name for name in side.pod_links() if name.startswith(("veth", "mvtmp"))]  # Go's, ours


def test_exhausted_ipam_leaves_no_link(ours, go):
    conf = _conf()
    conf["ipam"].update(rangeStart="10.9.0.2", rangeEnd="10.9.0.2")
    for side in (ours, go):
        assert side("ADD", conf).ok
        failed = side("ADD", conf, container_id="c2", ifname="net2")
        assert failed.json["code"] == 999
        assert failed.json["msg"].startswith("failed to allocate for range 0: no IP addresses available in range set")
        assert side.reservations() == ["10.9.0.2"] and _temporary_links(side) == []
    assert ours.pod_links() == ["lo", "net1"]
    assert go.pod_links() == ["lo", "net1", "net2"]


def test_configure_failure_releases_ipam_and_the_link(ours, go):
    conf = _conf()
    conf["ipam"]["routes"] = [{"dst": "10.10.0.0/16", "gw": "192.0.2.1"}]  # a gateway the pod cannot reach
    mine, theirs = ours("ADD", conf), go("ADD", conf)
    assert mine.json["code"] == 999
    assert mine.json["msg"] == "failed to add route '10.10.0.0/16 via 192.0.2.1 dev net1': Network is unreachable"
    assert (
        theirs.json["msg"]
        == "failed to add route '{10.10.0.0 ffff0000} via 192.0.2.1 dev net1': network is unreachable"
    )
    assert ours.reservations() == go.reservations() == []
    assert ours.pod_links() == ["lo"]
    assert go.pod_links() == ["lo", "net1"]


def test_missing_ipam_binary_leaves_no_link(ours, go, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    mine, theirs = ours("ADD", _conf(), cni_path=str(empty)), go("ADD", _conf(), cni_path=str(empty))
    message = f'failed to find plugin "host-local" in path [{empty}]'
    assert mine.json == {"cniVersion": "1.0.0", "code": 100, "msg": message}
    assert theirs.json == {"code": 999, "msg": message}
    assert ours.pod_links() == ["lo"]
    assert go.pod_links() == ["lo", "net1"]
    assert kernel.links(go.pod)["net1"]["operstate"] == "DOWN"


def test_rename_clash_leaves_nothing(ours, go):
    conf = _conf()
    failed = {}
    for side in (ours, go):
        _ip("-n", side.pod, "link", "add", "net1", "type", "veth", "peer", "name", "net1peer")
        failed[side] = side("ADD", conf).json
        assert failed[side]["msg"].startswith('failed to rename macvlan to "net1": file exists'), failed[side]
        # IPAM runs after the rename, so nothing was reserved; the temporary link is gone.
        assert side.pod_links() == ["lo", "net1", "net1peer"] and side.reservations() == []
        assert kernel.links(side.pod)["net1"]["linkinfo"]["info_kind"] == "veth"
    assert failed[ours]["code"] == 4 and failed[ours]["msg"].endswith(
        "(CNI_IFNAME 'net1' is already in use in the pod)"
    )
    assert failed[go]["code"] == 999
    # The runtime DELs after a failed ADD: ours leaves the pod's own (non-macvlan) net1 alone, 1.1.1 deletes it.
    assert ours("DEL", conf).ok and go("DEL", conf).ok
    assert ours.pod_links() == ["lo", "net1", "net1peer"]
    assert go.pod_links() == ["lo"]


# ---- traffic, GC and STATUS ----------------------------------------------------------


def test_two_pods_ping_over_macvlan_bridge(ours, netns):
    other = netns("mvp")
    conf = _conf()
    first, second = ours("ADD", conf), ours("ADD", conf, container_id="c2", netns=f"/run/netns/{other}")
    assert first.ok and second.ok, first.stdout + second.stdout
    target = second.json["ips"][0]["address"].split("/")[0]
    ping = subprocess.run(
        ["ip", "netns", "exec", ours.pod, "ping", "-c", "2", "-W", "2", target], capture_output=True, text=True
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert ours("DEL", _with_prev(conf, first)).ok
    assert ours("DEL", _with_prev(conf, second), container_id="c2", netns=f"/run/netns/{other}").ok
    assert ours.reservations() == [] and sorted(kernel.links(other)) == ["lo"]


RECORDER = """#!/bin/sh
cat >/dev/null
echo "$CNI_COMMAND" >> "$(dirname "$0")/calls"
"""


def test_gc_and_status_go_to_the_ipam(ours, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "recorder").write_text(RECORDER)
    (plugins / "recorder").chmod(0o755)
    l2 = _conf("1.1.0", ipam=False)
    recorded = {**_conf("1.1.0"), "ipam": {"type": "recorder"}}
    valid = {"cni.dev/valid-attachments": [{"containerID": "c9", "ifname": "net1"}]}
    for conf in (l2, recorded):
        assert ours("STATUS", conf, container_id="", ifname="", cni_path=str(plugins)).ok
        assert ours("GC", {**conf, **valid}, container_id="", ifname="", cni_path=str(plugins)).ok
    assert (plugins / "calls").read_text().split() == ["STATUS", "GC"]


# ---- through multus-cni ------------------------------------------------------------


def test_seed_topology_with_the_native_macvlan(seed_conf, netns, cni_runtime, tmp_path):
    """The seed's net1 with multipy's own macvlan (the Go bridge and host-local still run as binaries)."""
    pod = netns("pod")
    conf = seed_conf("1.0.0", binaryDelegates=["bridge", "host-local"])
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")
    added = cni_runtime("ADD", conf, **args)
    assert added.ok, added.stdout + added.stderr
    net1 = kernel.links(pod)["net1"]
    assert net1["linkinfo"]["info_kind"] == "macvlan" and net1["linkinfo"]["info_data"]["mode"] == "bridge"
    assert kernel.addresses(pod)["net1"] == ["10.188.1.0/16"]
    assert cni_runtime("CHECK", {**conf, "prevResult": added.json}, **args).ok
    assert cni_runtime("DEL", {**conf, "prevResult": added.json}, **args).ok
    assert sorted(kernel.links(pod)) == ["lo"]

    conf["delegates"][1]["mode"] = "fast"
    failed = cni_runtime("ADD", conf, **args).json
    assert failed["code"] == 7
    # Refused by macvlan's schema when the conf is loaded, before any delegate runs.
    assert failed["msg"].endswith(
        "$.delegates[1].mode: 'fast' is not one of ['bridge', 'private', 'vepa', 'passthru']"
    )
    assert sorted(kernel.links(pod)) == ["lo"]


def test_del_and_add_remove_a_macvlan_a_killed_add_left_under_its_temporary_name(ours):
    """Issue 13 defect 6: an ADD SIGKILLed between create and rename leaves the macvlan under its temporary
    name. The name derives from (container ID, ifname), so DEL (and a retried ADD) know it is theirs."""
    from delegates.macvlan.link import temporary_name

    def plant() -> str:
        temporary = temporary_name("c1", "net1")
        _ip("-n", ours.host, "link", "add", "link", "uplink0", "name", temporary, "netns", ours.pod,
            "type", "macvlan", "mode", "bridge")  # fmt: skip
        assert temporary in ours.pod_links()
        return temporary

    plant()
    assert ours("DEL", _conf()).ok
    assert ours.pod_links() == ["lo"]
    plant()
    assert ours("ADD", _conf()).ok
    assert ours.pod_links() == ["lo", "net1"]
    assert ours("DEL", _conf()).ok
    assert ours.pod_links() == ["lo"] and ours.reservations() == []
    other = temporary_name("c2", "net1")  # another attachment's: never touched
    _ip("-n", ours.host, "link", "add", "link", "uplink0", "name", other, "netns", ours.pod, "type", "macvlan")
    assert ours("DEL", _conf()).ok
    assert other in ours.pod_links()
