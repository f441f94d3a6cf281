"""Delegates: native ones found by entry point (built-in or third-party), and binaries run as a runtime runs them."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from multipy.cni.result import Result
from multipy.testing import kernel
from multipy.testing.runtime import invoke

from .conftest import GO_PLUGINS, records


def _conf(tmp_path, delegates, version="1.0.0", **extra):
    return {
        "cniVersion": version,
        "name": "meta",
        "type": "multus-cni",
        "cniDir": str(tmp_path / "cache"),
        "binDir": str(tmp_path / "bin"),
        "delegates": delegates,
        **extra,
    }


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_native_loopback_matches_the_go_loopback(version, netns, cni_runtime, tmp_path):
    """Built-in `loopback` (delegates/loopback.py, entry point) against /usr/lib/cni/loopback."""
    ours, theirs = netns("pod"), netns("pod")
    for pod in (ours, theirs):
        kernel.ip_json(pod, "link", "set", "lo", "down")
    conf = _conf(tmp_path, [{"name": "lo", "type": "loopback"}], version)
    go_conf = {"cniVersion": version, "name": "lo", "type": "loopback"}

    native = cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{ours}", ifname="lo")
    go = invoke(f"{GO_PLUGINS}/loopback", "ADD", go_conf, container_id="c1", netns=f"/run/netns/{theirs}", ifname="lo")

    assert native.ok and go.ok, native.stdout + go.stdout
    # Equivalent, not byte-equal: Go 1.1.1's loopback prints its 1.0.0-shaped result under any
    # cniVersion (no ips[].version for 0.3.1) and always adds "dns": {}.
    expected = Result.from_json(go.json)
    expected.interfaces[0].sandbox = f"/run/netns/{ours}"
    assert native.json == expected.to_json(version)
    assert kernel.addresses(ours, "lo") == kernel.addresses(theirs, "lo")
    assert kernel.links(ours)["lo"]["operstate"] == kernel.links(theirs)["lo"]["operstate"]

    assert cni_runtime("DEL", conf, container_id="c1", netns=f"/run/netns/{ours}", ifname="lo").ok
    assert invoke(f"{GO_PLUGINS}/loopback", "DEL", go_conf, container_id="c1", netns=f"/run/netns/{theirs}", ifname="lo").ok
    assert "UP" not in kernel.links(ours)["lo"]["flags"]
    assert kernel.links(ours)["lo"]["flags"] == kernel.links(theirs)["lo"]["flags"]
    # DEL of a namespace that is gone is a success, as for the reference, and must not create it.
    gone = f"/run/netns/{ours}-gone"
    assert cni_runtime("DEL", conf, container_id="c1", netns=gone, ifname="lo").ok
    assert not os.path.exists(gone)
    added = cni_runtime("ADD", conf, container_id="c2", netns=gone, ifname="lo")
    assert added.json["code"] == 8 and "no such namespace" in added.json["msg"]
    assert not os.path.exists(gone)


THIRD_PARTY = '''
from multipy.cni.result import IPConfig, Interface, Result
import ipaddress, json, os


class Marker:
    """Records each call in a file; a stand-in for any out-of-tree delegate."""

    supported_versions = ("0.4.0", "1.0.0", "1.1.0")

    def __init__(self, services):
        self.services = services

    def _log(self, inv, conf):
        with open(conf["logTo"], "a") as f:
            f.write(json.dumps({"command": inv.command, "ifname": inv.ifname, "args": inv.args}) + "\\n")

    def add(self, inv, conf):
        self._log(inv, conf)
        return Result(conf["cniVersion"], interfaces=[Interface(inv.ifname, sandbox=inv.netns)],
                      ips=[IPConfig(ipaddress.ip_interface("192.0.2.7/24"), interface=0)])

    def delete(self, inv, conf):
        self._log(inv, conf)

    check = gc = status = delete


class IpamUser:
    """A native main plugin that leaves addressing to its `ipam`, as macvlan or bridge do."""

    supported_versions = ("1.0.0",)

    def __init__(self, services):
        self.services = services

    def add(self, inv, conf):
        result = self.services.ipam(inv, conf)
        result.interfaces = [Interface(inv.ifname, sandbox=inv.netns)]
        for ip in result.ips:
            ip.interface = 0
        return result

    def delete(self, inv, conf):
        self.services.ipam(inv, conf)

    check = gc = status = delete


class FixedIpam:
    """A native IPAM plugin (group multipy.ipam)."""

    supported_versions = ("1.0.0",)

    def __init__(self, services):
        pass

    def add(self, inv, conf):
        return Result(conf["cniVersion"], ips=[IPConfig(ipaddress.ip_interface(conf["ipam"]["address"]))])

    def delete(self, inv, conf):
        pass

    check = gc = status = delete
'''


@pytest.fixture
def third_party(tmp_path):
    """An installed distribution with a `multipy.delegates` entry point, on PYTHONPATH."""
    site = tmp_path / "site"
    (site / "acme_marker").mkdir(parents=True)
    (site / "acme_marker" / "__init__.py").write_text(textwrap.dedent(THIRD_PARTY))
    info = site / "acme_marker-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-marker\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[multipy.delegates]\nacme-marker = acme_marker:Marker\nacme-ipam-user = acme_marker:IpamUser\n"
        "[multipy.ipam]\nacme-fixed = acme_marker:FixedIpam\n"
    )
    return {"PYTHONPATH": str(site)}


def test_third_party_native_delegate_is_found_by_its_type(third_party, netns, cni_runtime, tmp_path):
    pod = netns("pod")
    calls = tmp_path / "calls"
    conf = _conf(tmp_path, [{"name": "lo", "type": "loopback"}, {"name": "acme", "type": "acme-marker", "logTo": str(calls)}])
    cni_runtime.env = third_party
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="lo", cni_args="IgnoreUnknown=1;IP=10.9.9.9;K8S_POD_NAME=p")

    assert cni_runtime("ADD", conf, **args).ok
    assert cni_runtime("DEL", conf, **args).ok

    seen = [json.loads(line) for line in calls.read_text().splitlines()]
    # net1 for the second delegate; the runtime's IP= is for the master only.
    assert seen == [
        {"command": "ADD", "ifname": "net1", "args": "IgnoreUnknown=1;K8S_POD_NAME=p"},
        {"command": "DEL", "ifname": "net1", "args": "IgnoreUnknown=1;K8S_POD_NAME=p"},
    ]
    assert records(tmp_path) == []


def test_native_delegate_refuses_a_version_it_does_not_support(third_party, netns, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = _conf(tmp_path, [{"name": "acme", "type": "acme-marker", "logTo": str(tmp_path / "c")}], version="0.3.1")
    cni_runtime.env = third_party
    added = cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")
    assert added.json["code"] == 1
    assert "does not support config version '0.3.1'" in added.json["msg"]


def _script(tmp_path, name, body):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ("sleep 30\n", 101, "plugin slow did not finish within 0.5s"),
        ("echo 'panic: runtime error' >&2; exit 2\n", 102, "exited with status 2 without a CNI error: 'panic: runtime error'"),
        ("echo 'not json'; exit 0\n", 102, "printed no JSON result for ADD"),
        ("echo '{\"code\": 11, \"msg\": \"busy\", \"details\": \"retry\"}'; exit 1\n", 11, "busy"),
    ],
)
def test_binary_delegate_failures_are_reported_with_their_own_code(body, code, message, netns, cni_runtime, tmp_path):
    _script(tmp_path, "slow", "cat >/dev/null\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\n" + body)
    pod = netns("pod")
    conf = _conf(tmp_path, [{"name": "slow", "type": "slow"}], delegateTimeout=0.5)
    added = cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")
    assert added.returncode == 1
    assert added.json["code"] == code
    assert message in added.json["msg"]
    assert records(tmp_path) == []


def test_binary_delegate_gets_the_runtime_environment_and_its_own_ifname(netns, cni_runtime, tmp_path):
    seen = tmp_path / "seen"
    _script(tmp_path, "spy", f"""\
        cat > {seen}.$CNI_COMMAND.stdin
        env | grep ^CNI_ | sort > {seen}.$CNI_COMMAND.env
        [ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion": "1.0.0", "ips": [{{"address": "192.0.2.1/24"}}]}}'
        exit 0
        """)
    pod = netns("pod")
    conf = _conf(tmp_path, [{"name": "lo", "type": "loopback"},
                            {"name": "spy", "type": "spy", "capabilities": {"mac": True}}],
                 runtimeConfig={"mac": "c2:00:00:00:00:01", "portMappings": []})
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="lo", cni_args="IgnoreUnknown=1;MAC=c2:00:00:00:00:01")
    assert cni_runtime("ADD", conf, **args).ok
    assert cni_runtime("DEL", conf, **args).ok

    env = dict(line.split("=", 1) for line in (tmp_path / "seen.ADD.env").read_text().splitlines())
    assert env["CNI_IFNAME"] == "net1"
    assert env["CNI_CONTAINERID"] == "c1"
    assert env["CNI_NETNS"] == f"/run/netns/{pod}"
    assert env["CNI_ARGS"] == "IgnoreUnknown=1"
    assert env["CNI_PATH"] == f"{tmp_path / 'bin'}:{GO_PLUGINS}"
    stdin = json.loads((tmp_path / "seen.ADD.stdin").read_text())
    assert stdin == {"name": "spy", "type": "spy", "capabilities": {"mac": True}, "cniVersion": "1.0.0",
                     "runtimeConfig": {"mac": "c2:00:00:00:00:01"}}
    deleted = json.loads((tmp_path / "seen.DEL.stdin").read_text())
    assert deleted["prevResult"] == {"cniVersion": "1.0.0", "ips": [{"address": "192.0.2.1/24"}]}


@pytest.mark.parametrize(
    ("ipam", "address"),
    [
        ({"type": "acme-fixed", "address": "198.51.100.9/24"}, "198.51.100.9/24"),  # native IPAM
        ({"type": "host-local", "subnet": "198.51.100.0/24"}, "198.51.100.2/24"),  # Go binary from CNI_PATH
    ],
)
def test_native_delegate_runs_its_ipam_native_or_binary(ipam, address, third_party, netns, cni_runtime, tmp_path):
    pod = netns("pod")
    if ipam["type"] == "host-local":
        ipam["dataDir"] = str(tmp_path / "ipam")
    conf = _conf(tmp_path, [{"name": "lo", "type": "loopback"},
                            {"name": "user", "type": "acme-ipam-user", "ipam": ipam}],
                 binaryDelegates=["host-local"])
    cni_runtime.env = third_party
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="lo")

    added = cni_runtime("ADD", conf, **args)
    assert added.ok, added.stdout + added.stderr
    record = json.loads((tmp_path / "cache" / "meta:c1:lo").read_text())
    assert [ip["address"] for ip in record["attachments"][1]["result"]["ips"]] == [address]
    assert cni_runtime("DEL", conf, **args).ok
    if ipam["type"] == "host-local":
        assert [n for n in os.listdir(tmp_path / "ipam" / "user") if n[0].isdigit()] == []


def test_conflist_delegate_runs_as_a_chain(node, netns, cni_runtime, tmp_path):
    """A delegate may be a conflist: each plugin gets the previous one's result as prevResult."""
    pod = netns("pod")
    chain = {
        "name": "tuned",
        "cniVersion": "1.0.0",
        "plugins": [
            {"type": "macvlan", "master": node.uplink,
             "ipam": {"type": "host-local", "subnet": "10.188.0.0/16", "dataDir": str(tmp_path / "ipam")}},
            {"type": "tuning", "mac": "c2:00:00:00:00:42", "promisc": True},
        ],
    }
    conf = _conf(tmp_path, [{"name": "lo", "type": "loopback"}, chain], binDir=GO_PLUGINS,
                 binaryDelegates=["macvlan", "host-local", "tuning"])
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="lo")

    assert cni_runtime("ADD", conf, **args).ok
    net1 = kernel.links(pod)["net1"]
    assert net1["address"] == "c2:00:00:00:00:42"
    assert "PROMISC" in net1["flags"]
    record = json.loads((tmp_path / "cache" / "meta:c1:lo").read_text())
    assert record["attachments"][1]["result"]["interfaces"][0]["mac"] == "c2:00:00:00:00:42"  # tuning's result

    assert cni_runtime("DEL", conf, **args).ok
    assert "net1" not in kernel.links(pod)
    assert [n for n in os.listdir(tmp_path / "ipam" / "tuned") if n[0].isdigit()] == []


def test_record_is_written_before_any_delegate_runs(netns, cni_runtime, tmp_path):
    """Write-ahead: a crash inside the first delegate must still leave DEL a record to work from."""
    record = tmp_path / "cache" / "meta:c1:eth0"
    _script(tmp_path, "probe", f"""\
        cat >/dev/null
        if [ "$CNI_COMMAND" = ADD ]; then
          [ -f {record} ] || {{ echo '{{"code": 100, "msg": "no record yet"}}'; exit 1; }}
          echo '{{"cniVersion": "1.0.0", "ips": [{{"address": "192.0.2.1/24"}}]}}'
        fi
        """)
    pod = netns("pod")
    conf = _conf(tmp_path, [{"name": "probe", "type": "probe"}])
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")
    added = cni_runtime("ADD", conf, **args)
    assert added.ok, added.stdout
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    assert json.loads(record.read_text())["attachments"][0]["result"]["ips"] == [{"address": "192.0.2.1/24"}]
    assert cni_runtime("DEL", conf, **args).ok


def test_gc_and_status_reach_delegates_of_1_1_0(third_party, netns, cni_runtime, tmp_path):
    calls = tmp_path / "calls"
    conf = _conf(tmp_path, [{"name": "lo", "type": "loopback"},
                            {"name": "acme", "type": "acme-marker", "logTo": str(calls)}], version="1.1.0")
    cni_runtime.env = third_party
    pods = {"keep": netns("pod"), "drop": netns("pod")}
    for cid, pod in pods.items():
        assert cni_runtime("ADD", conf, container_id=cid, netns=f"/run/netns/{pod}", ifname="lo").ok

    gc = cni_runtime("GC", dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "lo"}]}))
    assert gc.ok, gc.stdout
    assert cni_runtime("STATUS", conf).ok

    seen = [json.loads(line)["command"] for line in calls.read_text().splitlines()]
    assert seen == ["ADD", "ADD", "DEL", "GC", "STATUS"]  # DEL of the stale attachment, then GC
    assert records(tmp_path) == ["meta:keep:lo"]
    assert "UP" not in kernel.links(pods["drop"])["lo"]["flags"]
    assert cni_runtime("DEL", conf, container_id="keep", netns=f"/run/netns/{pods['keep']}", ifname="lo").ok


def test_gc_tells_each_delegate_its_own_valid_attachments(netns, cni_runtime, tmp_path):
    seen = tmp_path / "gc-stdin"
    _script(tmp_path, "gcspy", f"""\
        if [ "$CNI_COMMAND" = GC ]; then cat > {seen}; else cat >/dev/null; fi
        [ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion": "1.1.0", "ips": [{{"address": "192.0.2.1/24"}}]}}'
        exit 0
        """)
    conf = _conf(tmp_path, [{"name": "lo", "type": "loopback"}, {"name": "spy", "type": "gcspy"}], version="1.1.0")
    pod = netns("pod")
    assert cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="lo").ok

    assert cni_runtime("GC", dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "lo"}]})).ok

    sent = json.loads(seen.read_text())
    assert sent["cni.dev/valid-attachments"] == [{"containerID": "c1", "ifname": "net1"}]  # the delegate's ifname
    assert sent["name"] == "spy" and sent["cniVersion"] == "1.1.0"
    assert cni_runtime("DEL", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="lo").ok
