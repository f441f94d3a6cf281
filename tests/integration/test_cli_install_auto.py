"""`multipy install --auto` and the daemon's autoConf (Multus's `auto` conf): the conf made from the node's
primary CNI conf passes `multipy validate`, a pod ADD through it works, it follows an edited primary
(install run again, --every, the daemon), a broken or missing primary changes nothing, and it is never
deleted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from multipy.cli.commands import cli
from multipy.testing import kernel
from multipy.testing.daemon import DaemonProcess
from multipy.testing.runtime import invoke

from .conftest import GO_PLUGINS

SCRIPT = Path(sys.executable).parent / "multipy"
# The seed's flannel conflist (flannel's DaemonSet writes it as /etc/cni/net.d/10-flannel.conflist).
FLANNEL = {"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
    {"type": "portmap", "capabilities": {"portMappings": True}},
]}  # fmt: skip
NODE_KUBECONFIG = "/etc/cni/net.d/multipy.d/multipy.kubeconfig"
# What `install --auto --kubeconfig NODE_KUBECONFIG` makes of FLANNEL, byte for byte.
FLANNEL_MADE = """{
  "cniVersion": "0.3.1",
  "name": "multus-cni-network",
  "type": "multus-cni",
  "capabilities": {
    "portMappings": true
  },
  "kubeconfig": "/etc/cni/net.d/multipy.d/multipy.kubeconfig",
  "delegates": [
    {
      "name": "cbr0",
      "cniVersion": "0.3.1",
      "plugins": [
        {
          "type": "flannel",
          "delegate": {
            "hairpinMode": true,
            "isDefaultGateway": true
          }
        },
        {
          "type": "portmap",
          "capabilities": {
            "portMappings": true
          }
        }
      ]
    }
  ]
}
"""


@pytest.fixture
def dirs(tmp_path):
    """A node's conf dir holding flannel's conflist (and a later conf of someone else's), and its bin dir."""
    conf_dir, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    conf_dir.mkdir()
    bin_dir.mkdir()
    write(conf_dir / "10-flannel.conflist", FLANNEL)
    write(conf_dir / "99-loopback.conf", {"cniVersion": "0.3.1", "name": "lo", "type": "loopback"})
    return conf_dir, bin_dir


def write(path: Path, doc) -> None:
    """As a CNI's installer should: a temporary file renamed over the old one."""
    temp = path.with_name(f".{path.name}.new")
    temp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.replace(temp, path)


def install(conf_dir, bin_dir, *args):
    argv = ["install", "--auto", "--conf-dir", str(conf_dir), "--bin-dir", str(bin_dir), *args]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def validate(path) -> subprocess.CompletedProcess:
    """The real CLI, as an operator runs it."""
    return subprocess.run([str(SCRIPT), "validate", str(path)], capture_output=True, text=True, timeout=60)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:g}s")


def test_a_flannel_conflist_becomes_00_multus_conf_and_passes_validate(dirs):
    conf_dir, bin_dir = dirs
    code, out, err = install(conf_dir, bin_dir, "--auto-option", f"kubeconfig={NODE_KUBECONFIG}")
    assert code == 0, err
    assert out.splitlines() == [
        f"created    {bin_dir}/multus-cni (0755)",
        f"created    {bin_dir}/multipy (0755)",
        f"created    {conf_dir}/00-multus.conf (0600) from {conf_dir}/10-flannel.conflist",
    ]
    made = conf_dir / "00-multus.conf"
    assert made.read_text() == FLANNEL_MADE
    assert os.stat(made).st_mode & 0o777 == 0o600
    checked = validate(made)
    # portmap has no native plugin: it runs as the binary, which validate lists as not checked.
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines() == [
        f"{made}: $.delegates[0].plugins[1]: not checked: type 'portmap' has no native plugin: it runs as a binary",
        f"{made}: no problems in what was checked; 1 conf(s) not checked",
    ]
    code, out, _ = install(conf_dir, bin_dir, "--auto-option", f"kubeconfig={NODE_KUBECONFIG}", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["conf"] == "auto" and {f["action"] for f in doc["files"]} == {"unchanged"}
    assert doc["files"][-1] == {"path": f"{conf_dir}/00-multus.conf", "action": "unchanged", "mode": "0600",
                                "primary": f"{conf_dir}/10-flannel.conflist"}  # fmt: skip


def test_the_conf_names_the_kubeconfig_install_writes(dirs, tmp_path):
    conf_dir, bin_dir = dirs
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("a-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n")
    kubeconfig = conf_dir / "multipy.d" / "multipy.kubeconfig"
    code, out, err = install(conf_dir, bin_dir, "--kubeconfig", str(kubeconfig), "--serviceaccount-dir", str(account),
                             "--api-server", "https://10.96.0.1:443")  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[:2] == [f"created    {kubeconfig}.ca.crt (0600)", f"created    {kubeconfig} (0600)"]
    assert json.loads((conf_dir / "00-multus.conf").read_text())["kubeconfig"] == str(kubeconfig)
    # An explicit --auto-option wins.
    code, _, err = install(conf_dir, bin_dir, "--kubeconfig", str(kubeconfig), "--serviceaccount-dir", str(account),
                           "--api-server", "https://10.96.0.1:443", "--auto-option", "kubeconfig=/other")  # fmt: skip
    assert code == 0, err
    assert json.loads((conf_dir / "00-multus.conf").read_text())["kubeconfig"] == "/other"


def test_a_bridge_conf_makes_a_conf_validate_checks_entirely(dirs):
    conf_dir, bin_dir = dirs
    bridge = {"cniVersion": "1.0.0", "name": "podnet", "type": "bridge", "isGateway": True,
              "capabilities": {"ips": True}, "ipam": {"type": "host-local", "subnet": "10.22.0.0/16"}}  # fmt: skip
    write(conf_dir / "05-bridge.conf", bridge)
    code, out, err = install(conf_dir, bin_dir, "--auto-option", "logLevel=verbose", "--auto-option",
                             "namespaceIsolation=true")  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[-1] == f"created    {conf_dir}/00-multus.conf (0600) from {conf_dir}/05-bridge.conf"
    made = json.loads((conf_dir / "00-multus.conf").read_text())
    assert made == {"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-cni",
                    "capabilities": {"ips": True}, "logLevel": "verbose", "namespaceIsolation": True,
                    "delegates": [bridge]}  # fmt: skip
    checked = validate(conf_dir / "00-multus.conf")
    assert (checked.returncode, checked.stdout) == (0, f"{conf_dir}/00-multus.conf: valid\n"), checked.stderr


def test_editing_the_primary_rewrites_the_conf_and_a_broken_one_changes_nothing(dirs):
    conf_dir, bin_dir = dirs
    target = conf_dir / "00-multus.conf"
    assert install(conf_dir, bin_dir)[0] == 0
    inode, first = os.stat(target).st_ino, target.read_bytes()
    assert install(conf_dir, bin_dir)[1].splitlines()[-1].startswith("unchanged  ")
    assert os.stat(target).st_ino == inode

    edited = json.loads(json.dumps(FLANNEL))
    edited["cniVersion"] = "1.0.0"
    edited["plugins"].append({"type": "bandwidth", "capabilities": {"bandwidth": True}})
    write(conf_dir / "10-flannel.conflist", edited)
    code, out, _ = install(conf_dir, bin_dir)
    assert code == 0 and out.splitlines()[-1] == (
        f"updated    {target} (0600) from {conf_dir}/10-flannel.conflist")  # fmt: skip
    made = json.loads(target.read_text())
    assert made["cniVersion"] == "1.0.0" and made["capabilities"] == {"bandwidth": True, "portMappings": True}
    assert made["delegates"] == [edited] and os.stat(target).st_ino != inode
    good = target.read_bytes()
    assert good != first

    write(conf_dir / "10-flannel.conflist", '{"name": "cbr0", "plugins": [')
    code, out, err = install(conf_dir, bin_dir)
    assert (code, out) == (1, "")
    assert f"{conf_dir}/10-flannel.conflist: $: not valid JSON: " in err
    assert f"multipy install: --auto: no conf made from {conf_dir}/10-flannel.conflist; nothing written" in err
    write(conf_dir / "10-flannel.conflist", {**FLANNEL, "plugins": [{"type": "flannel", "delegate": {"mtu": "9000"}}]})
    code, _, err = install(conf_dir, bin_dir)
    assert code == 1 and (f"{target} (made from {conf_dir}/10-flannel.conflist): "
                          "$.delegates[0].plugins[0].delegate.mtu: '9000' is not of type 'integer'") in err  # fmt: skip
    (conf_dir / "10-flannel.conflist").unlink()
    (conf_dir / "99-loopback.conf").unlink()
    code, _, err = install(conf_dir, bin_dir)
    assert code == 2 and f"{conf_dir}: $: no CNI conf (.conf, .conflist, .json) but multipy's or Multus's own" in err
    # Never emptied, never deleted (Multus #1155, #1527); no temporary file left.
    assert target.read_bytes() == good
    assert sorted(os.listdir(conf_dir)) == ["00-multus.conf"]


def test_a_go_multus_conf_is_replaced_and_a_conf_ahead_of_ours_refused(dirs):
    conf_dir, bin_dir = dirs
    # Migrating: Go Multus thick's own 00-multus.conf (clusterNetwork naming flannel's file) is not the primary.
    write(conf_dir / "00-multus.conf", {"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus-shim",
                                        "clusterNetwork": f"{conf_dir}/10-flannel.conflist"})  # fmt: skip
    code, out, err = install(conf_dir, bin_dir, "--thick")
    assert code == 0, err
    assert out.splitlines()[-1] == f"updated    {conf_dir}/00-multus.conf (0600) from {conf_dir}/10-flannel.conflist"
    made = json.loads((conf_dir / "00-multus.conf").read_text())
    assert made["type"] == "multus-shim" and made["delegates"] == [FLANNEL]
    # A name that sorts after the primary would never be read by the runtime.
    code, _, err = install(conf_dir, bin_dir, "--name", "50-multus.conf")
    assert code == 1 and f"{conf_dir}/00-multus.conf: $: sorts before 50-multus.conf" in err
    assert not (conf_dir / "50-multus.conf").exists()


def test_every_follows_the_primary_until_sigterm(dirs):
    conf_dir, bin_dir = dirs
    target = conf_dir / "00-multus.conf"
    proc = subprocess.Popen([str(SCRIPT), "install", "--auto", "--conf-dir", str(conf_dir), "--bin-dir", str(bin_dir),
                             "--every", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(target.exists, 30, "the first pass")
        write(conf_dir / "10-flannel.conflist", {**FLANNEL, "cniVersion": "0.4.0"})
        wait_for(lambda: json.loads(target.read_text())["cniVersion"] == "0.4.0", 10, "the edit followed")
        before = target.read_bytes()
        write(conf_dir / "10-flannel.conflist", "{")  # a pass fails, is reported, and the loop goes on
        time.sleep(0.6)
        assert proc.poll() is None and target.read_bytes() == before
        write(conf_dir / "10-flannel.conflist", {**FLANNEL, "cniVersion": "1.0.0"})
        wait_for(lambda: json.loads(target.read_text())["cniVersion"] == "1.0.0", 10, "the repaired primary followed")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # only the one this test started
            out, err = proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[-1] == f"updated    {target} (0600) from {conf_dir}/10-flannel.conflist"
    assert f"multipy install: --auto: no conf made from {conf_dir}/10-flannel.conflist; nothing written" in err
    assert json.loads(target.read_text())["cniVersion"] == "1.0.0"  # still there after SIGTERM


def test_the_daemon_keeps_the_conf_following_the_primary_and_never_deletes_it(dirs, tmp_path):
    conf_dir, _ = dirs
    target = conf_dir / "00-multus.conf"
    daemon = DaemonProcess(tmp_path / "daemon", "--auto-conf", "--cni-config-dir", str(conf_dir),
                           "--auto-option", "logLevel=verbose")  # fmt: skip
    with daemon:
        made = wait_for(lambda: target.exists() and json.loads(target.read_text()), 10, "the daemon's conf")
        assert made["type"] == "multus-shim" and made["daemonSocketDir"] == daemon.socket_dir
        assert made["logLevel"] == "verbose" and made["delegates"] == [FLANNEL]
        write(conf_dir / "10-flannel.conflist", {**FLANNEL, "cniVersion": "1.0.0"})
        wait_for(lambda: json.loads(target.read_text())["cniVersion"] == "1.0.0", 10, "the edit followed")
        checked = validate(target)
        assert checked.returncode == 0, checked.stdout
        kept = target.read_bytes()
    assert daemon.proc.returncode == 0
    assert target.read_bytes() == kept, daemon.log()  # SIGTERM: the conf stays (Multus #1527)
    assert f"autoConf: updated {target} from {conf_dir}/10-flannel.conflist" in daemon.log()


def test_a_pod_add_through_the_made_conf_works(tmp_path, node, netns):
    conf_dir, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    conf_dir.mkdir()
    primary = {"cniVersion": "0.4.0", "name": "podnet", "type": "bridge", "bridge": "mpauto0", "isGateway": True,
               "ipam": {"type": "host-local", "subnet": "10.123.0.0/24", "dataDir": str(tmp_path / "ipam")}}  # fmt: skip
    write(conf_dir / "10-bridge.conf", primary)
    options = [
        f"cniDir={tmp_path / 'cache'}",
        f"binDir={GO_PLUGINS}",
        'binaryDelegates=["bridge", "host-local"]',
        f"logFile={tmp_path / 'multipy.log'}",
        "logLevel=debug",
    ]  # the Go plugins, state in tmp_path
    code, _, err = install(conf_dir, bin_dir, *(arg for option in options for arg in ("--auto-option", option)))
    assert code == 0, err
    stdin = (conf_dir / "00-multus.conf").read_bytes()
    pod = netns("pod")
    kwargs = {"container_id": "autoc1", "netns": f"/run/netns/{pod}", "ifname": "eth0", "host_netns": node.name,
              "cni_path": GO_PLUGINS}  # fmt: skip
    # As a runtime: the multus-cni the install put in the bin dir, fed the conf it wrote.
    added = invoke(str(bin_dir / "multus-cni"), "ADD", stdin, **kwargs)
    assert added.ok, added.stdout + added.stderr
    address = added.json["ips"][0]["address"]
    assert address.startswith("10.123.0.") and added.json["cniVersion"] == "0.4.0"
    assert kernel.addresses(pod, "eth0") == {"eth0": [address]}
    assert "mpauto0" in kernel.links(node.name)
    assert os.listdir(tmp_path / "ipam" / "podnet") != []
    checked = invoke(str(bin_dir / "multus-cni"), "CHECK", stdin, **kwargs)
    assert checked.ok, checked.stdout + checked.stderr
    deleted = invoke(str(bin_dir / "multus-cni"), "DEL", stdin, **kwargs)
    assert deleted.ok, deleted.stdout + deleted.stderr
    assert "eth0" not in kernel.links(pod)
    assert [n for n in os.listdir(tmp_path / "ipam" / "podnet") if n[0].isdigit()] == []
    assert [p for p in (tmp_path / "cache").iterdir() if p.is_file()] == []
