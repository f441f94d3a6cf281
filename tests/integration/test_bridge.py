"""The native bridge against Debian's Go bridge 1.1.1, side by side in twin namespaces.

Each side gets its own node namespace (h1: Go, h2: ours, where the plugin runs under
`ip netns exec`) and its own pod namespace, the same conf and its own host-local
dataDir. Ours runs the Go host-local as its IPAM, so only the bridge differs (one
case uses the native host-local). Results and kernel state are compared after
normalising what is random by design (veth names, MACs) and one 1.1.1 quirk:
1.1.1 gives both veth ends txqueuelen 0 (fixed upstream in v1.6.0), ours keeps
the kernel's default, so veth txqlen is left out.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from multipy.cni.result import Result
from multipy.testing import kernel, snapshot
from multipy.testing.runtime import Outcome, invoke, native

from .conftest import GO_PLUGINS

VERSIONS = ["0.3.1", "0.4.0", "1.0.0"]
GO_BRIDGE = f"{GO_PLUGINS}/bridge"
SUBNET = "10.244.1.0/24"


def _ipam(**extra) -> dict:
    return {"type": "host-local", "subnet": SUBNET, **extra}


# name -> (bridge keys, CNI_ARGS)
CASES = {
    "plain": ({}, ""),
    "isGateway": ({"isGateway": True}, ""),
    "isDefaultGateway": ({"isDefaultGateway": True}, ""),
    "mtu1400": ({"mtu": 1400, "isGateway": True}, ""),
    "ipMasq": ({"ipMasq": True, "isGateway": True}, ""),
    "hairpinMode": ({"hairpinMode": True}, ""),
    "promiscMode": ({"promiscMode": True}, ""),
    "twoRanges": ({"isDefaultGateway": True, "ipMasq": True, "ipam": {
        "type": "host-local", "ranges": [[{"subnet": SUBNET}], [{"subnet": "fd00:10:244:1::/64"}]]}}, ""),
    "requestedIP": ({"isGateway": True}, "IgnoreUnknown=1;IP=10.244.1.77"),
    "layer2": ({"ipam": {}}, ""),
    "enabledad": ({"enabledad": True, "ipam": {"type": "host-local", "subnet": "fd00:10:244:1::/64"}}, ""),
    "dns": ({"dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}}, ""),
}


@dataclass
class Side:
    """One half of a differential run: a plugin, its node and pod namespaces, its own IPAM dataDir."""

    label: str
    argv: str | list[str]
    host: str
    pod: str
    data_dir: str
    names: dict = field(default_factory=dict)  # normalise() placeholders, shared by result and snapshots

    def conf(self, base: dict) -> dict:
        conf = copy.deepcopy(base)
        if conf.get("ipam", {}).get("type"):
            conf["ipam"]["dataDir"] = self.data_dir
        return conf

    def __call__(self, command: str, base: dict, container_id: str = "c1", netns: str | None = None,
                 cni_args: str = "", **kwargs) -> Outcome:
        return invoke(self.argv, command, self.conf(base), container_id=container_id,
                      netns=f"/run/netns/{self.pod}" if netns is None else netns, ifname="eth0",
                      cni_args=cni_args, host_netns=self.host, **kwargs)

    def result(self, outcome: Outcome, version: str) -> dict:
        # Through the canonical Result: 1.1.1's "dns": {} in 1.0.0 results is libcni's quirk, not the bridge's.
        doc = Result.from_json(outcome.json).to_json(version)
        return snapshot.normalise(json.loads(json.dumps(doc).replace(f"/run/netns/{self.pod}", "<pod>")), self.names)

    def state(self) -> dict:
        _settle_bridges(self.host)
        doc = {"host": snapshot.take(self.host), "pod": snapshot.take(self.pod), "host6": _ip6_extras(self.host),
               "reserved": self.reservations()}
        for ns in ("host", "pod"):
            for link in doc[ns]["links"].values():
                if link.get("kind") == "veth":
                    link.pop("txqlen", None)
            # The kernel derives the local table from addresses, on its own schedule: an IPv6 gateway's
            # subnet-router anycast route appears only once duplicate address detection is over.
            doc[ns]["routes"] = [r for r in doc[ns]["routes"] if r.get("table") != "local"]
        return snapshot.normalise(doc, self.names)

    def reservations(self) -> dict[str, str]:
        found = {}
        for root, _, files in os.walk(self.data_dir):
            for name in files:
                if name[0].isdigit() or ":" in name:
                    with open(os.path.join(root, name)) as f:
                        found[name] = f.read()
        return found


def _settle_bridges(netns: str, timeout: float = 3.0) -> None:
    """Wait until each bridge's oper state follows its ports: the kernel reports a lost carrier lazily (linkwatch)."""
    deadline = time.monotonic() + timeout
    while True:
        links = kernel.links(netns)
        unsettled = [name for name, link in links.items()
                     if link.get("linkinfo", {}).get("info_kind") == "bridge" and "UP" in link["flags"]
                     and (link["operstate"] == "UP") != any(p.get("master") == name and p["operstate"] == "UP"
                                                             for p in links.values())]
        if not unsettled or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _ip6_extras(netns: str) -> dict:
    forwarding = subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/sys/net/ipv6/conf/all/forwarding"],
                                capture_output=True, text=True).stdout.strip()
    rules = subprocess.run(["ip", "netns", "exec", netns, "ip6tables-save", "-t", "nat"],
                           capture_output=True, text=True).stdout.splitlines()
    return {"forwarding": forwarding, "nat": sorted(r for r in rules if r.startswith(("-A", ":CNI-")))}


def _differences(ours, theirs, path: str = "$") -> list[str]:
    """Where two documents differ, as readable lines (pytest's dict diff truncates the nested ones)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [line for key in sorted(set(ours) | set(theirs), key=str)
                for line in _differences(ours.get(key, "<absent>"), theirs.get(key, "<absent>"), f"{path}.{key}")]
    if ours != theirs:
        return [f"{path}: ours {ours!r} != reference {theirs!r}"]
    return []


def _same(ours, theirs) -> None:
    differences = _differences(ours, theirs)
    assert not differences, "\n".join(differences)


def _without_bridge_leftovers(state: dict, bridge: str = "cni0") -> dict:
    """What the reference leaves after DEL: the bridge (with its gateway address) and forwarding turned on."""
    state = copy.deepcopy(state)
    host = state["host"]
    host["links"].pop(bridge, None)
    host["addresses"].pop(bridge, None)
    host["routes"] = [r for r in host["routes"] if r.get("dev") != bridge]
    for doc in (host, state["pod"]):
        doc["sysctls"] = {k: v for k, v in doc["sysctls"].items()
                          if f"/{bridge}/" not in k and not k.endswith(("forwarding", "ip_forward"))}
    state["host6"].pop("forwarding")
    return state


@pytest.fixture
def twins(netns, tmp_path):
    def make(ours_argv=None) -> tuple[Side, Side]:
        go = Side("go", GO_BRIDGE, netns("h1"), netns("c1"), str(tmp_path / "ipam-go"))
        ours = Side("ours", ours_argv or native("bridge", binaries=("host-local",)), netns("h2"), netns("c2"),
                    str(tmp_path / "ipam-ours"))
        return go, ours

    return make


def _conf(version: str, keys: dict) -> dict:
    conf = {"cniVersion": version, "name": "net1", "type": "bridge", "bridge": "cni0", "ipam": _ipam()}
    conf.update(copy.deepcopy(keys))
    return conf


def _differential_cycle(go: Side, ours: Side, conf: dict, version: str, cni_args: str = "") -> dict:
    """ADD, CHECK (0.4.0+), DEL and DEL again on both sides, comparing everything on the way."""
    before = {side.label: side.state() for side in (go, ours)}
    _same(before["ours"], before["go"])

    added = {side.label: side(("ADD"), conf, cni_args=cni_args) for side in (go, ours)}
    for label, outcome in added.items():
        assert outcome.ok, f"{label}: {outcome.stdout} {outcome.stderr}"
    _same(ours.result(added["ours"], version), go.result(added["go"], version))
    _same(ours.state(), go.state())

    if version != "0.3.1":
        for side in (go, ours):
            checked = side("CHECK", dict(conf, prevResult=added[side.label].json), cni_args=cni_args)
            if side is go and not conf["ipam"]:
                # 1.1.1 runs an IPAM CHECK even without IPAM, and fails on the empty type.
                assert checked.json["msg"] == "no plugin name provided"
                continue
            assert checked.ok, f"{side.label} CHECK: {checked.stdout}"

    for side in (go, ours):
        prev = {"prevResult": added[side.label].json} if version != "0.3.1" else {}
        deleted = side("DEL", dict(conf, **prev), cni_args=cni_args)
        assert deleted.ok, f"{side.label} DEL: {deleted.stdout}"
    after = {side.label: side.state() for side in (go, ours)}
    _same(after["ours"], after["go"])
    for label in ("go", "ours"):
        _same(_without_bridge_leftovers(after[label]), _without_bridge_leftovers(before[label]))

    for side in (go, ours):
        again = side("DEL", conf, cni_args=cni_args)
        assert again.ok and again.stdout == "", f"{side.label} second DEL: {again.stdout}"
    _same(ours.state(), go.state())
    _same(go.state(), after["go"])
    return added


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_matches_the_go_bridge(case, version, twins):
    keys, cni_args = CASES[case]
    go, ours = twins()
    added = _differential_cycle(go, ours, _conf(version, keys), version, cni_args)
    if case == "requestedIP":
        assert added["ours"].json["ips"][0]["address"] == "10.244.1.77/24"


def test_matches_the_go_bridge_with_the_native_host_local(twins):
    go, ours = twins(native("bridge"))
    keys, _ = CASES["twoRanges"]
    _differential_cycle(go, ours, _conf("1.0.0", keys), "1.0.0")


def test_mac_from_runtime_config_args_and_cni_args(twins):
    go, ours = twins()
    conf = _conf("1.0.0", {"isGateway": True, "args": {"cni": {"mac": "0a:58:00:00:00:02"}},
                           "runtimeConfig": {"mac": "0a:58:00:00:00:03"}})
    for side in (go, ours):
        added = side("ADD", conf, cni_args="IgnoreUnknown=1;MAC=0a:58:00:00:00:01")
        assert added.ok, added.stdout
        assert added.json["interfaces"][2]["mac"] == "0a:58:00:00:00:03"  # runtimeConfig wins
        assert kernel.links(side.pod)["eth0"]["address"] == "0a:58:00:00:00:03"


def test_two_pods_share_the_bridge_and_ping_through_it(twins, netns):
    _, ours = twins()
    conf = _conf("1.0.0", {"isGateway": True, "hairpinMode": True})
    second = netns("c2b")
    assert ours("ADD", conf).ok
    assert ours("ADD", conf, container_id="c2", netns=f"/run/netns/{second}").ok
    peer = kernel.addresses(second)["eth0"][0].split("/")[0]
    ping = subprocess.run(["ip", "netns", "exec", ours.pod, "ping", "-c", "1", "-W", "2", peer], capture_output=True,
                          text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    gateway = subprocess.run(["ip", "netns", "exec", ours.pod, "ping", "-c", "1", "-W", "2", "10.244.1.1"],
                             capture_output=True, text=True)
    assert gateway.returncode == 0, gateway.stdout
    bridge_ports = [n for n, link in kernel.links(ours.host).items() if link.get("master") == "cni0"]
    assert len(bridge_ports) == 2


def test_parallel_adds_create_one_bridge(twins, netns):
    """Pods started at once on a fresh node race to create the bridge: all must win, with one bridge."""
    _, ours = twins()
    conf = _conf("1.0.0", {"isDefaultGateway": True, "ipMasq": True})
    pods = [netns("pp") for _ in range(6)]

    def run(item):
        index, pod = item
        return ours("ADD", conf, container_id=f"p{index}", netns=f"/run/netns/{pod}")

    with ThreadPoolExecutor(len(pods)) as pool:
        outcomes = list(pool.map(run, enumerate(pods)))
    assert all(o.ok for o in outcomes), [o.stdout for o in outcomes if not o.ok]
    links = kernel.links(ours.host)
    assert [n for n, link in links.items() if link.get("linkinfo", {}).get("info_kind") == "bridge"] == ["cni0"]
    assert len([n for n, link in links.items() if link.get("master") == "cni0"]) == len(pods)
    assert kernel.addresses(ours.host, "cni0")["cni0"] == ["10.244.1.1/24"]
    assert len({kernel.addresses(pod)["eth0"][0] for pod in pods}) == len(pods)
    with ThreadPoolExecutor(len(pods)) as pool:
        deleted = list(pool.map(lambda item: ours("DEL", conf, container_id=f"p{item[0]}",
                                                  netns=f"/run/netns/{item[1]}"), enumerate(pods)))
    assert all(o.ok for o in deleted)
    assert snapshot.nat_rules(ours.host) == []
    assert ours.reservations() == {}


# ---------------------------------------------------------------- DEL in odd situations


def test_del_without_netns_releases_ipam_and_removes_the_masquerade_rules(twins):
    go, ours = twins()
    conf = _conf("1.0.0", {"ipMasq": True, "isGateway": True})
    for side in (go, ours):
        assert side("ADD", conf).ok
        deleted = side("DEL", conf, netns="")
        assert deleted.ok, deleted.stdout
        assert side.reservations() == {}
        assert "eth0" in kernel.links(side.pod)  # without a netns there is nothing to say where the link is
    assert snapshot.nat_rules(ours.host) == []
    assert any(":CNI-" in rule for rule in snapshot.nat_rules(go.host))  # 1.1.1 leaks the chain here


def test_del_after_the_pod_namespace_is_gone(twins):
    go, ours = twins()
    conf = _conf("1.0.0", {"ipMasq": True, "isGateway": True})
    for side in (go, ours):
        assert side("ADD", conf).ok
        subprocess.run(["ip", "netns", "del", side.pod], check=True)
        deleted = side("DEL", conf)
        assert deleted.ok, deleted.stdout
        assert side.reservations() == {}
        # The kernel dismantles a dropped namespace, and the veth pair with it, a moment later.
        deadline = time.monotonic() + 5
        while [n for n in kernel.links(side.host) if n.startswith("veth")] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [n for n in kernel.links(side.host) if n.startswith("veth")]
    assert snapshot.nat_rules(ours.host) == []
    assert any(":CNI-" in rule for rule in snapshot.nat_rules(go.host))  # 1.1.1 leaks the chain here


def test_check_fails_once_the_address_is_gone(twins):
    go, ours = twins()
    conf = _conf("1.0.0", {"isDefaultGateway": True})
    for side in (go, ours):
        added = side("ADD", conf)
        subprocess.run(["ip", "-n", side.pod, "addr", "flush", "dev", "eth0"], check=True)
        checked = side("CHECK", dict(conf, prevResult=added.json))
        assert not checked.ok
        assert "Failed to match addr 10.244.1.2/24" in checked.json["msg"], checked.stdout


def test_check_accepts_routes_without_gateway(twins):
    """flannel's routes have no gw: 1.1.1 fails CHECK on them (fixed in v1.3.0), ours passes."""
    go, ours = twins()
    conf = _conf("1.0.0", {"isGateway": True, "ipam": _ipam(routes=[{"dst": "10.244.0.0/16"}])})
    outcomes = {}
    for side in (go, ours):
        added = side("ADD", conf)
        assert added.ok
        outcomes[side.label] = side("CHECK", dict(conf, prevResult=added.json))
    assert outcomes["ours"].ok, outcomes["ours"].stdout
    assert "Expected Route" in outcomes["go"].json["msg"]


# ---------------------------------------------------------------- errors and rollback


def _assert_nothing_left(side: Side) -> None:
    assert set(kernel.links(side.pod)) == {"lo"}
    assert not [n for n in kernel.links(side.host) if n.startswith("veth")]
    assert side.reservations() == {}
    assert snapshot.nat_rules(side.host) == []


def test_an_existing_bridge_that_is_down_is_brought_up_like_the_reference(twins):
    """The bridge is looked up before it is made, and only a down one is set up: the same kernel state as
    the Go bridge's create-or-take and unconditional up."""
    go, ours = twins()
    conf = _conf("1.0.0", {"isGateway": True})
    for side in (go, ours):
        subprocess.run(["ip", "-n", side.host, "link", "add", "cni0", "type", "bridge"], check=True)
        assert "UP" not in kernel.links(side.host)["cni0"]["flags"]
    _differential_cycle(go, ours, conf, "1.0.0")
    assert "UP" in kernel.links(ours.host)["cni0"]["flags"]


def test_a_bridge_name_taken_by_another_link_is_refused(twins):
    go, ours = twins()
    conf = _conf("1.0.0", {})
    outcomes = {}
    for side in (go, ours):
        subprocess.run(["ip", "-n", side.host, "link", "add", "cni0", "type", "veth", "peer", "name", "cni0p"],
                       check=True)
        outcomes[side.label] = side("ADD", conf)
        _assert_nothing_left(side)
    message = 'failed to create bridge "cni0": "cni0" already exists but is not a bridge'
    assert outcomes["go"].json == {"code": 999, "msg": message}
    assert outcomes["ours"].json == {"cniVersion": "1.0.0", "code": 7, "msg": message}


@pytest.mark.parametrize(("keys", "code", "words"), [
    ({"hairpinMode": True, "promiscMode": True}, 7, "hairpin mode and promiscuous mode"),
    ({"mtu": "abc"}, 7, 'mtu: must be an integer, got "abc"'),
    ({"mtu": 20}, 7, "mtu: 20 is out of range"),
    ({"isGateway": "yes"}, 7, 'isGateway: must be true or false, got "yes"'),
    ({"bridge": "a/b"}, 7, 'bridge: "a/b" is not a valid interface name'),
    ({"vlan": 5}, 2, "vlan: 5 is not supported"),
    ({"runtimeConfig": {"mac": "zz:zz"}}, 7, 'runtimeConfig.mac: invalid MAC address "zz:zz"'),
])
def test_bad_config_is_a_clear_error_and_touches_nothing(keys, code, words, twins):
    _, ours = twins()
    outcome = ours("ADD", _conf("1.0.0", keys))
    assert outcome.returncode == 1
    assert outcome.json["code"] == code and words in outcome.json["msg"], outcome.stdout
    assert "cni0" not in kernel.links(ours.host)
    _assert_nothing_left(ours)
    # The runtime DELs after a failed ADD, with the same conf: that must not fail forever.
    deleted = ours("DEL", _conf("1.0.0", keys))
    assert deleted.ok, deleted.stdout


def test_missing_iptables_fails_like_the_reference_but_leaves_no_veth(twins, tmp_path):
    go, ours = twins()
    bin_dir = tmp_path / "bin-without-iptables"
    bin_dir.mkdir()
    os.symlink("/usr/sbin/ip", bin_dir / "ip")  # `ip netns exec` itself must still be found
    conf = _conf("1.0.0", {"ipMasq": True})
    outcomes = {side.label: side("ADD", conf, env={"PATH": str(bin_dir)}) for side in (go, ours)}
    message = 'failed to locate iptables: exec: "iptables": executable file not found in $PATH'
    assert outcomes["go"].json == {"code": 999, "msg": message}
    assert outcomes["ours"].json["code"] == 999 and outcomes["ours"].json["msg"] == message
    assert go.reservations() == {} and "eth0" in kernel.links(go.pod)  # 1.1.1 leaves the veth to DEL
    _assert_nothing_left(ours)


def test_gateway_address_conflict_rolls_back(twins):
    go, ours = twins()
    conf = _conf("1.0.0", {"isGateway": True})
    outcomes = {}
    for side in (go, ours):
        subprocess.run(["ip", "-n", side.host, "link", "add", "cni0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", side.host, "addr", "add", "10.9.9.9/24", "dev", "cni0"], check=True)
        outcomes[side.label] = side("ADD", conf)
    message = 'failed to set bridge addr: "cni0" already has an IP address different from 10.244.1.1/24'
    assert outcomes["go"].json == {"code": 999, "msg": message}
    assert outcomes["ours"].json["code"] == 7 and outcomes["ours"].json["msg"] == message
    assert go.reservations() == {} and "eth0" in kernel.links(go.pod)  # 1.1.1 leaves the veth to DEL
    _assert_nothing_left(ours)


def test_force_address_replaces_a_foreign_gateway_address(twins):
    go, ours = twins()
    conf = _conf("1.0.0", {"isGateway": True, "forceAddress": True})
    for side in (go, ours):
        subprocess.run(["ip", "-n", side.host, "link", "add", "cni0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", side.host, "addr", "add", "10.9.9.9/24", "dev", "cni0"], check=True)
    _differential_cycle(go, ours, conf, "1.0.0")
    assert kernel.addresses(ours.host, "cni0") == kernel.addresses(go.host, "cni0") == {"cni0": ["10.244.1.1/24"]}


def test_exhausted_ipam_leaves_no_veth(twins, netns):
    go, ours = twins()
    conf = _conf("1.0.0", {"ipam": _ipam(rangeStart="10.244.1.10", rangeEnd="10.244.1.10")})
    for side in (go, ours):
        assert side("ADD", conf).ok
    for side in (go, ours):
        second = netns(f"{side.label}2")
        outcome = side("ADD", conf, container_id="c2", netns=f"/run/netns/{second}")
        assert outcome.json["code"] == 999 and "no IP addresses available" in outcome.json["msg"], outcome.stdout
        host_veths = [n for n in kernel.links(side.host) if n.startswith("veth")]
        if side is ours:
            assert set(kernel.links(second)) == {"lo"} and len(host_veths) == 1
        else:
            assert "eth0" in kernel.links(second) and len(host_veths) == 2  # 1.1.1 leaves the veth to DEL


def test_add_on_a_missing_namespace(twins):
    _, ours = twins()
    outcome = ours("ADD", _conf("1.0.0", {}), netns="/run/netns/mp-no-such-pod")
    assert outcome.json["code"] == 8 and "failed to open netns" in outcome.json["msg"]
    assert not os.path.exists("/run/netns/mp-no-such-pod")
    assert "cni0" not in kernel.links(ours.host)
