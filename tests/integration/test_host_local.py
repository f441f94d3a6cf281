"""Native host-local against /usr/lib/cni/host-local (Debian 1.1.1): same results, same files, one store.

Both run as processes exactly as a runtime runs them. IPAM plugins never enter
CNI_NETNS, but CNI requires one for ADD, so a path string stands in for it.
"""

from __future__ import annotations

import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from multipy.testing.runtime import Outcome, invoke, native

GO = "/usr/lib/cni/host-local"
OURS = native("host-local")
IMPLEMENTATIONS = {"go": GO, "ours": OURS}
NETNS = "/run/netns/host-local-test"  # never opened by an IPAM plugin
VERSIONS = ["0.3.1", "0.4.0", "1.0.0"]  # the Go binary stops at 1.0.0
NET = "hl"

pytestmark = pytest.mark.skipif(not os.path.exists(GO), reason="needs Debian's containernetworking-plugins")


def run(impl: str, command: str, conf: dict, cid: str = "c1", ifname: str = "eth0", cni_args: str = "") -> Outcome:
    return invoke(
        IMPLEMENTATIONS[impl],
        command,
        conf,
        container_id=cid,
        netns=NETNS if command in ("ADD", "CHECK") else "",
        ifname=ifname,
        cni_args=cni_args,
    )


def conf_for(data_dir, version: str = "1.0.0", extra: dict | None = None, **ipam) -> dict:
    """A bridge conf as a runtime hands it to IPAM; `extra` adds top-level keys (args, runtimeConfig)."""
    return {
        "cniVersion": version,
        "name": NET,
        "type": "bridge",
        "ipam": {"type": "host-local", "dataDir": str(data_dir), **ipam},
        **(extra or {}),
    }


def answer(outcome: Outcome) -> dict:
    """The printed JSON, less libcni 1.1.2's always-present empty "dns" (types100 drops it since)."""
    doc = outcome.json
    assert doc is not None, outcome.stderr
    if doc.get("dns") == {}:
        del doc["dns"]
    return doc


def store(data_dir) -> dict[str, tuple[bytes, int]]:
    """Every file of the network's store: name -> (content, mode)."""
    d = os.path.join(data_dir, NET)
    if not os.path.isdir(d):
        return {}
    out = {}
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        with open(path, "rb") as f:
            out[name] = (f.read(), stat.S_IMODE(os.stat(path).st_mode))
    return out


def reservations(data_dir) -> dict[str, bytes]:
    return {n: v[0] for n, v in store(data_dir).items() if n != "lock" and not n.startswith("last_reserved_ip.")}


@pytest.fixture
def dirs(tmp_path):
    return {impl: tmp_path / impl for impl in IMPLEMENTATIONS}


@pytest.fixture
def resolv_conf(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text(
        "# test\nnameserver 10.96.0.10\nnameserver fd00::10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
    )
    return str(path)


# ---- differential: the same steps through both, compared step by step ---------------------


def _both(dirs, step):
    """Run `step(impl, data_dir)` on both sides; returns {impl: outcome}."""
    return {impl: step(impl, dirs[impl]) for impl in IMPLEMENTATIONS}


def _same(dirs, step):
    outcomes = _both(dirs, step)
    go, ours = outcomes["go"], outcomes["ours"]
    assert go.ok and ours.ok, (go.stdout, ours.stdout, ours.stderr)
    if go.stdout.strip() or ours.stdout.strip():
        assert answer(ours) == answer(go)
    assert store(dirs["ours"]) == store(dirs["go"])
    return answer(ours) if ours.stdout.strip() else None


CASES = {
    "legacy single range": {"subnet": "10.1.2.0/24"},
    "ranges single range": {"ranges": [[{"subnet": "10.1.2.0/24"}]]},
    "rangeStart and rangeEnd": {
        "ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.100", "rangeEnd": "10.1.2.102"}]]
    },
    "explicit gateway": {"ranges": [[{"subnet": "10.1.2.0/29", "gateway": "10.1.2.3"}]]},
    "two sets v4 and v6": {"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00:1::/64"}]]},
    "two ranges in one set": {
        "ranges": [
            [{"subnet": "10.1.2.0/30"}, {"subnet": "10.1.3.0/24", "rangeStart": "10.1.3.7", "rangeEnd": "10.1.3.8"}]
        ]
    },
    "routes": {
        "ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00:1::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.254"}, {"dst": "::/0"}],
    },
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_same_results_and_files_through_a_sequence(case, version, dirs):
    """Four ADDs, a DEL, an ADD, a double DEL: results and files equal after every step."""

    def conf(data_dir):
        return conf_for(data_dir, version, **json.loads(json.dumps(CASES[case])))

    first = _same(dirs, lambda impl, d: run(impl, "ADD", conf(d), "c1"))
    assert first["cniVersion"] == version and first["ips"]
    for cid in ("c2", "c3"):
        _same(dirs, lambda impl, d, cid=cid: run(impl, "ADD", conf(d), cid))
    _same(dirs, lambda impl, d: run(impl, "DEL", conf(d), "c2"))
    _same(dirs, lambda impl, d: run(impl, "ADD", conf(d), "c4"))  # round robin: not c2's old address
    if version != "0.3.1":
        _same(dirs, lambda impl, d: run(impl, "CHECK", conf(d), "c4"))
    for cid in ("c1", "c3", "c4", "c4"):
        _same(dirs, lambda impl, d, cid=cid: run(impl, "DEL", conf(d), cid))
    assert reservations(dirs["ours"]) == {}


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
@pytest.mark.parametrize("case", ["legacy single range", "two sets v4 and v6", "routes"])
def test_same_results_in_the_old_result_format(case, version, dirs):
    result = _same(dirs, lambda impl, d: run(impl, "ADD", conf_for(d, version, **CASES[case])))
    assert "ip4" in result
    _same(dirs, lambda impl, d: run(impl, "DEL", conf_for(d, version, **CASES[case])))


@pytest.mark.parametrize("version", VERSIONS)
def test_same_dns_from_resolv_conf(version, dirs, resolv_conf):
    result = _same(
        dirs, lambda impl, d: run(impl, "ADD", conf_for(d, version, subnet="10.1.2.0/24", resolvConf=resolv_conf))
    )
    assert result["dns"]["nameservers"] == ["10.96.0.10", "fd00::10"]


REQUESTS = {
    "CNI_ARGS IP": ({}, "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.1.2.77"),
    "CNI_ARGS IP with prefix": ({}, "IP=10.1.2.77/24"),
    "args.cni.ips": ({"args": {"cni": {"ips": ["10.1.2.77"]}}}, ""),
    "runtimeConfig ips": ({"capabilities": {"ips": True}, "runtimeConfig": {"ips": ["10.1.2.77/24"]}}, ""),
    "one per set": ({"args": {"cni": {"ips": ["fd00:1::77", "10.1.2.77"]}}}, ""),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("how", list(REQUESTS))
def test_same_requested_ip(how, version, dirs):
    extra, cni_args = REQUESTS[how]
    ranges = (
        [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00:1::/64"}]]
        if how == "one per set"
        else [[{"subnet": "10.1.2.0/24"}]]
    )

    def conf(d):
        return conf_for(d, version, json.loads(json.dumps(extra)), ranges=ranges)

    result = _same(dirs, lambda impl, d: run(impl, "ADD", conf(d), "c1", cni_args=cni_args))
    assert result["ips"][0]["address"] == "10.1.2.77/24"
    # round robin goes on from the requested address, in both
    result = _same(dirs, lambda impl, d: run(impl, "ADD", conf_for(d, version, ranges=ranges), "c2"))
    assert result["ips"][0]["address"] == "10.1.2.78/24"


# ---- errors: both refuse; ours says at least as much -----------------------------------


def _fails_alike(dirs, step, *fragments):
    outcomes = _both(dirs, step)
    for impl, outcome in outcomes.items():
        assert not outcome.ok and outcome.json, (impl, outcome.stdout)
        for fragment in fragments:
            assert fragment in outcome.json["msg"], (impl, outcome.json["msg"])
    assert outcomes["go"].json["code"] == 999  # Go reports every plain error as 999
    # Both leave the same reservations. Not always the same last_reserved_ip: for a request
    # that cannot be met Go reserves, releases and has moved its round robin on; ours
    # refuses before touching the store.
    assert reservations(dirs["ours"]) == reservations(dirs["go"])
    return outcomes["ours"].json


def test_exhausted_range(dirs):
    conf = {"ranges": [[{"subnet": "10.1.2.0/30"}]]}  # .1 is the gateway: .2 is all there is
    _same(dirs, lambda impl, d: run(impl, "ADD", conf_for(d, **conf), "c1"))
    ours = _fails_alike(
        dirs,
        lambda impl, d: run(impl, "ADD", conf_for(d, **conf), "c2"),
        "failed to allocate for range 0",
        "no IP addresses available in range set: 10.1.2.1-10.1.2.2",
    )
    assert ours["code"] == 11


@pytest.mark.parametrize(
    "cni_args, fragments",
    [
        ("IP=10.1.3.5", ["failed to allocate all requested IPs: 10.1.3.5"]),
        ("IP=10.1.2.1", ["failed to allocate for range 0", "requested ip 10.1.2.1 is subnet's gateway"]),
    ],
)
def test_bad_requested_ip(dirs, cni_args, fragments):
    ours = _fails_alike(
        dirs, lambda impl, d: run(impl, "ADD", conf_for(d, subnet="10.1.2.0/24"), cni_args=cni_args), *fragments
    )
    assert ours["code"] == 7
    assert reservations(dirs["ours"]) == {}


def test_requested_ip_taken_by_another_container(dirs):
    _same(dirs, lambda impl, d: run(impl, "ADD", conf_for(d, subnet="10.1.2.0/24"), "c1", cni_args="IP=10.1.2.9"))
    ours = _fails_alike(
        dirs,
        lambda impl, d: run(impl, "ADD", conf_for(d, subnet="10.1.2.0/24"), "c2", cni_args="IP=10.1.2.9"),
        "requested IP address 10.1.2.9 is not available in range set 10.1.2.1-10.1.2.254",
    )
    assert ours["code"] == 11 and "held by c1/eth0" in ours["msg"]


def test_duplicate_allocation(dirs):
    _same(dirs, lambda impl, d: run(impl, "ADD", conf_for(d, subnet="10.1.2.0/24")))
    ours = _fails_alike(
        dirs,
        lambda impl, d: run(impl, "ADD", conf_for(d, subnet="10.1.2.0/24")),
        "failed to allocate for range 0",
        "10.1.2.2 has been allocated to c1, duplicate allocation is not allowed",
    )
    assert ours["code"] == 999


@pytest.mark.parametrize(
    "ipam, fragments",
    [
        ({"subnet": "10.1.2.5/24"}, ["host bits set", "the network address is 10.1.2.0"]),
        ({"subnet": "10.1.2.0/31"}, ["10.1.2.0/31", "too small to allocate from"]),
        ({"ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.9.1"}]]}, ["10.1.9.1", "10.1.2.0/24"]),
        ({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "fd00::/64"}]]}, ["mixed address families"]),
        ({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.2.0/25"}]]}, ["range set 0 overlaps with 1"]),
        ({"ranges": [[]]}, ["empty range set"]),
        ({}, ["no IP ranges specified"]),
        ({"subnet": "10.1.2.0"}, ["10.1.2.0"]),
    ],
)
def test_bad_config(dirs, ipam, fragments):
    ours = _fails_alike(dirs, lambda impl, d: run(impl, "ADD", conf_for(d, **ipam)), *fragments)
    assert ours["code"] == 7
    assert reservations(dirs["ours"]) == {}


def test_ours_refuses_what_go_lets_through(tmp_path):
    """A gateway outside its subnet: Go 1.1.1 hands out addresses with it, ours stops at the config."""
    conf = conf_for(tmp_path, subnet="10.1.2.0/24", gateway="10.1.9.1")
    assert run("go", "ADD", conf).ok
    ours = run("ours", "ADD", conf_for(tmp_path / "ours", subnet="10.1.2.0/24", gateway="10.1.9.1")).json
    assert ours["code"] == 7 and ours["msg"] == 'ipam.gateway: "10.1.9.1" is not in subnet 10.1.2.0/24'


# ---- interop: one dataDir, both implementations ----------------------------------------


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_one_store_shared_by_both(version, tmp_path):
    conf = conf_for(tmp_path, version, ranges=[[{"subnet": "10.1.2.0/29"}], [{"subnet": "fd00:1::/125"}]])

    def add(impl, cid, ifname="eth0"):
        out = run(impl, "ADD", conf, cid, ifname)
        assert out.ok, (impl, out.stdout, out.stderr)
        return [ip["address"] for ip in out.json["ips"]]

    assert add("ours", "a") == ["10.1.2.2/29", "fd00:1::2/125"]
    assert add("go", "b") == ["10.1.2.3/29", "fd00:1::3/125"]  # Go skips ours and goes on from our last
    assert add("ours", "c") == ["10.1.2.4/29", "fd00:1::4/125"]  # and we from Go's
    assert add("go", "a", "net1") == ["10.1.2.5/29", "fd00:1::5/125"]
    # each sees the other's reservations as duplicates
    assert "duplicate allocation is not allowed" in run("go", "ADD", conf, "a").json["msg"]
    assert "duplicate allocation is not allowed" in run("ours", "ADD", conf, "b").json["msg"]
    # CHECK finds the other's files
    assert run("go", "CHECK", conf, "c").ok and run("ours", "CHECK", conf, "b").ok
    # Go's DEL releases ours, by container and ifname; ours releases Go's
    assert run("go", "DEL", conf, "a").ok
    assert run("ours", "DEL", conf, "a", "net1").ok
    assert run("ours", "DEL", conf, "b").ok
    assert sorted(reservations(tmp_path)) == ["10.1.2.4", "fd00:1::4"]
    # round robin wraps past the end identically whoever allocates
    assert add("go", "d") == ["10.1.2.6/29", "fd00:1::6/125"]
    assert add("ours", "e") == ["10.1.2.2/29", "fd00:1::7/125"]
    assert add("go", "f") == ["10.1.2.3/29", "fd00:1::2/125"]
    for cid in "cdef":
        assert run("go" if cid in "ce" else "ours", "DEL", conf, cid).ok
    assert reservations(tmp_path) == {}
    assert set(store(tmp_path)) == {"lock", "last_reserved_ip.0", "last_reserved_ip.1"}


def test_requested_ip_interop(tmp_path):
    conf = conf_for(tmp_path, subnet="10.1.2.0/24")
    assert run("go", "ADD", conf, "a", cni_args="IP=10.1.2.50").ok
    taken = run("ours", "ADD", conf, "b", cni_args="IP=10.1.2.50").json
    assert "10.1.2.50 is not available" in taken["msg"] and "held by a/eth0" in taken["msg"]
    assert run("ours", "ADD", conf, "b").json["ips"][0]["address"] == "10.1.2.51/24"
    assert "is not available" in run("go", "ADD", conf, "c", cni_args="IP=10.1.2.51").json["msg"]


# ---- concurrency: separate processes, ours and Go together, one lock ------------------------


def test_parallel_adds_from_both_never_double_allocate(tmp_path):
    conf = conf_for(tmp_path, subnet="10.1.2.0/27")  # .2-.30: 29 addresses for 40 ADDs
    jobs = [("ours" if n % 2 else "go", f"pod{n}") for n in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda job: (job, run(job[0], "ADD", conf, job[1])), jobs))
    won = {cid: out.json["ips"][0]["address"] for (impl, cid), out in outcomes if out.ok}
    lost = [(impl, out.json) for (impl, _), out in outcomes if not out.ok]
    assert len(won) == 29 and len(set(won.values())) == 29
    assert len(lost) == 11
    for impl, error in lost:
        assert "no IP addresses available in range set: 10.1.2.1-10.1.2.30" in error["msg"], error
        assert error["code"] == (11 if impl == "ours" else 999)
    files = reservations(tmp_path)
    assert {f"{ip}/27" for ip in files} == set(won.values())
    assert {content.decode().split("\r\n")[0] for content in files.values()} == set(won)
    with ThreadPoolExecutor(max_workers=8) as pool:
        dels = list(pool.map(lambda job: run(job[0], "DEL", conf, job[1]), jobs))
    assert all(out.ok for out in dels)
    assert set(store(tmp_path)) == {"lock", "last_reserved_ip.0"}


# ---- GC and STATUS (spec 1.1.0: ours only) ------------------------------------------------


def test_gc_releases_only_what_is_not_valid(tmp_path):
    go_conf = conf_for(tmp_path, "1.0.0", subnet="10.1.2.0/24")
    gc_conf = conf_for(tmp_path, "1.1.0", subnet="10.1.2.0/24")
    for impl, cid, ifname in [
        ("go", "keep", "eth0"),
        ("ours", "keep", "net1"),
        ("go", "gone", "eth0"),
        ("ours", "gone2", "eth0"),
    ]:
        assert run(impl, "ADD", go_conf, cid, ifname).ok
    valid = [{"containerID": "keep", "ifname": "eth0"}, {"containerID": "keep", "ifname": "net1"}]
    out = invoke(OURS, "GC", {**gc_conf, "cni.dev/valid-attachments": valid})
    assert out.ok and out.stdout.strip() == "", out.stdout
    assert reservations(tmp_path) == {"10.1.2.2": b"keep\r\neth0", "10.1.2.3": b"keep\r\nnet1"}
    assert run("go", "DEL", go_conf, "keep", "eth0").ok and run("go", "DEL", go_conf, "keep", "net1").ok
    assert reservations(tmp_path) == {}


def test_status(tmp_path):
    out = invoke(OURS, "STATUS", conf_for(tmp_path, "1.1.0", subnet="10.1.2.0/24"))
    assert out.ok and out.stdout.strip() == ""
    (tmp_path / "file").write_text("")
    out = invoke(OURS, "STATUS", conf_for(tmp_path / "file", "1.1.0", subnet="10.1.2.0/24"))
    assert out.json["code"] == 50 and "is not a writable directory" in out.json["msg"]
