"""`multipy status` without services: the conf, delegate types (native, binDir, CNI_PATH,
binaryDelegates), flannel's subnet.env, the readiness file, output forms and exit codes.
etcd and the Kubernetes API are checked in tests/integration/test_cli_status.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from multipy.cli.commands import cli

SEED = Path(__file__).resolve().parents[2] / "conf" / "10-multus.conf"
SUBNET_ENV = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"


def status(conf, *args, env=None):
    result = CliRunner().invoke(cli, ["status", "--conf", str(conf), *args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def executable(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def node(tmp_path):
    """A conf whose services are all local files: flannel (native), ptp (a binary in binDir), vlan (in CNI_PATH)."""
    subnet = tmp_path / "subnet.env"
    subnet.write_text(SUBNET_ENV)
    bin_dir, cni_path = tmp_path / "bin", tmp_path / "cni-path"
    executable(bin_dir, "ptp")
    executable(bin_dir, "host-local")  # ptp is a binary, and a binary execs its IPAM as a binary
    executable(cni_path, "vlan")
    conf = {
        "cniVersion": "1.0.0", "name": "multus", "type": "multus-cni", "binDir": str(bin_dir),
        "delegates": [
            {"name": "k8snet1", "type": "flannel", "masterplugin": True, "subnetFile": str(subnet),
             "dataDir": str(tmp_path / "flannel")},
            {"name": "p2p", "type": "ptp", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}},
            {"name": "v", "type": "vlan", "master": "eth0", "vlanId": 7, "ipam": {"type": "static"}},
        ],
    }  # fmt: skip
    path = tmp_path / "10-multus.conf"

    def write(**changes):
        doc = {**conf, **changes}
        path.write_text(json.dumps(doc))
        return path

    write()
    executable(cni_path, "static")
    return write, {"CNI_PATH": str(cni_path)}, tmp_path


def test_all_ok(node):
    write, env, tmp = node
    code, out, err = status(write(), env=env)
    assert code == 0, out + err
    lines = out.splitlines()
    assert all(line.startswith("ok  ") for line in lines), out
    text = "\n".join(lines)
    assert "conf        " in lines[0] and "valid, 3 delegate(s)" in lines[0]
    assert "k8snet1: type flannel: native plugin delegates.flannel:Flannel" in text
    assert "k8snet1: flannel delegate bridge: native plugin" in text
    assert "k8snet1: flannel ipam host-local: native plugin" in text
    assert f"p2p: type ptp: binary {tmp}/bin/ptp" in text
    # A binary main plugin execs its IPAM as a binary, even where a native one exists.
    assert f"p2p: ipam host-local: binary {tmp}/bin/host-local" in text
    assert f"v: type vlan: binary {tmp}/cni-path/vlan" in text
    assert f"v: ipam static: binary {tmp}/cni-path/static" in text
    assert f"k8snet1: {tmp}/subnet.env: subnet 10.244.1.0/24 of 10.244.0.0/16, MTU 1450, IPMASQ true" in text
    assert err == ""


def test_binary_main_plugin_needs_its_ipam_binary(node):
    write, env, tmp = node
    code, out, _ = status(write(), env={})  # no CNI_PATH: vlan and static are nowhere
    assert code == 1
    assert f'FAIL  type        v: type vlan: failed to find plugin "vlan" in path [{tmp}/bin]' in out
    assert 'FAIL  type        v: ipam static: failed to find plugin "static"' in out
    (tmp / "bin" / "host-local").unlink()
    code, out, _ = status(write(), env=env)
    # multipy has a native host-local, but the Go ptp cannot call it.
    assert code == 1 and 'FAIL  type        p2p: ipam host-local: failed to find plugin "host-local"' in out


def test_binary_delegates_must_be_binaries(node):
    write, env, tmp = node
    code, out, _ = status(write(binaryDelegates=["bridge"]), env=env)
    assert code == 1
    assert (
        'FAIL  type        k8snet1: flannel delegate bridge: failed to find plugin "bridge" in path '
        f"[{tmp}/bin {tmp}/cni-path] (listed in binaryDelegates)"
    ) in out
    executable(tmp / "bin", "bridge")
    code, out, _ = status(write(binaryDelegates=["bridge"]), env=env)
    assert code == 0, out
    assert f"k8snet1: flannel delegate bridge: binary {tmp}/bin/bridge (listed in binaryDelegates)" in out


def test_unknown_type(node):
    write, env, tmp = node
    conf = json.loads(write().read_text())
    conf["delegates"][1]["type"] = "nosuchplugin"
    code, out, _ = status(write(delegates=conf["delegates"]), env=env)
    assert code == 1
    assert f'FAIL  type        p2p: type nosuchplugin: failed to find plugin "nosuchplugin" in path [{tmp}/bin' in out


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "flannel is not ready yet: failed to load flannel 'subnet.env' file: open {path}: no such file"),
        ("FLANNEL_NETWORK=10.244.0.0/16\n", "is missing FLANNEL_SUBNET"),
        ("FLANNEL_MTU=lots\n", "FLANNEL_MTU='lots': not an unsigned integer"),
    ],
)
def test_subnet_env_missing_incomplete_or_broken(node, content, fragment):
    write, env, tmp = node
    path = tmp / "subnet.env"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)
    code, out, _ = status(write(), env=env)
    assert code == 1
    line = next(line for line in out.splitlines() if "subnet.env" in line)
    assert line.startswith("FAIL  subnet.env  k8snet1: ") and fragment.format(path=path) in line


def test_readiness_file(node):
    write, env, tmp = node
    ready = tmp / "ready"
    code, out, _ = status(write(readinessindicatorfile=str(ready)), env=env)
    assert code == 1 and f"FAIL  readiness   {ready}: missing" in out
    ready.write_text("")
    code, out, _ = status(write(readinessindicatorfile=str(ready)), env=env)
    assert code == 0 and f"ok    readiness   {ready}: present" in out


def test_json(node):
    write, env, tmp = node
    code, out, _ = status(write(), "-o", "json", env=env)
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["conf"] == str(tmp / "10-multus.conf")
    assert [c["check"] for c in doc["checks"]] == ["conf"] + ["type"] * 7 + ["subnet.env"]
    assert all(set(c) == {"check", "subject", "ok", "detail"} for c in doc["checks"])
    assert doc["checks"][4] == {
        "check": "type",
        "subject": "p2p: type ptp",
        "ok": True,
        "detail": f"binary {tmp}/bin/ptp",
    }


def test_invalid_conf_is_one_failed_check_with_every_problem(tmp_path):
    doc = json.loads(SEED.read_text())
    doc["delegates"][1]["masterplugin"] = "yes"
    doc["thatkey"] = 1
    path = tmp_path / "bad.conf"
    path.write_text(json.dumps(doc))
    code, out, err = status(path)
    assert code == 1
    assert len(out.splitlines()) == 1  # nothing else is checked against an invalid conf
    assert out.startswith(f"FAIL  conf  {path}: $.") and out.endswith(f" (and 1 more; see multipy validate {path})\n")
    assert "1 of 1 check(s) failed" in err
    code, out, _ = status(path, "-o", "json")
    check = json.loads(out)["checks"][0]
    assert code == 1 and check["ok"] is False
    assert sorted(p["path"] for p in check["problems"]) == ["$.delegates[1].masterplugin", "$.thatkey"]


@pytest.mark.parametrize(
    "content", [b"{", b"[]", json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}]}).encode()]
)
def test_not_a_multus_conf(tmp_path, content):
    path = tmp_path / "x.conflist"
    path.write_bytes(content)
    code, out, _ = status(path)
    assert code == 1 and out.startswith(f"FAIL  conf  {path}: $")


def test_unreadable_conf_and_bad_arguments(tmp_path):
    code, out, err = status(tmp_path / "missing.conf")
    assert code == 2 and out == "" and f"{tmp_path}/missing.conf: cannot read: No such file or directory" in err
    code, _, _ = status(tmp_path)  # a directory
    assert code == 2
    result = CliRunner().invoke(cli, ["status", "--conf", str(SEED), "-o", "yaml"])
    assert result.exit_code == 2 and "Invalid value for '--output'" in result.stderr
    result = CliRunner().invoke(cli, ["status", "--nope"])
    assert result.exit_code == 2 and "No such option '--nope'" in result.stderr


def test_kube_ipam_with_the_annotations_capability_needs_no_kubeconfig(tmp_path):
    """Which kubeconfigs are checked: the conf's (multipy's own check), each kube-ipam kubeConfig,
    kube-ipam's default unless the runtime hands the annotations over (kube-ipam's declared check)."""
    from delegates.kube_ipam.node_checks import kubeconfig
    from multipy.cli.checks import conf_kubeconfig
    from multipy.config import multus

    doc = json.loads(SEED.read_text())
    doc["kubeconfig"] = "/etc/multipy/top.kubeconfig"
    assert conf_kubeconfig(multus.load(doc)) == ("/etc/multipy/top.kubeconfig", "kubeconfig")
    kube_ipam = doc["delegates"][1]
    assert kubeconfig(kube_ipam) == "/etc/kubernetes/ssl/kube.kubeconfig"
    del kube_ipam["ipam"]["kubeConfig"]
    assert kubeconfig(kube_ipam) == "/etc/kubernetes/pki/kubectl.kubeconfig"
    kube_ipam["capabilities"] = {"io.kubernetes.cri.pod-annotations": True}
    assert kubeconfig(kube_ipam) is None
    # No kubeconfig: the in-cluster service account, as the plugin itself would use, if in a cluster.
    del doc["kubeconfig"]
    assert conf_kubeconfig(multus.load(doc), {}) is None
    in_cluster = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    assert conf_kubeconfig(multus.load(doc), in_cluster) == ("", "in-cluster service account")


def test_status_reads_no_host_state_beyond_the_conf(node, monkeypatch):
    # The default conf path is the host's; tests always pass --conf, and the checks only read
    # what the conf names.
    write, env, tmp = node
    opened = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    status(write(), env=env)
    assert not [p for p in opened if p.startswith(("/etc/cni", "/var/lib/cni", "/run/flannel"))], opened
    assert os.path.exists(tmp / "10-multus.conf")
