"""`multipy ipam ls/show/release` against a real etcd that kube-ipam filled, text and JSON, and bad arguments."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from delegates.kube_ipam import KubeIpam
from multipy.cli.commands import cli
from multipy.cni.env import Environment
from multipy.plugins.contract import Services
from multipy.testing.etcd import EtcdCluster
from multipy.testing.topology import SEED_KUBE_IPAM

PREFIX = "/multipy/ipam/"


@pytest.fixture
def filled(etcd_server, tmp_path):
    """The seed's multus conf pointing at `etcd_server`, and a store holding two databases and a web pod."""
    macvlan = {"name": "k8snet2", "type": "macvlan", "master": "eth0",
               "ipam": dict(SEED_KUBE_IPAM, etcdConfig=etcd_server.etcd_config())}  # fmt: skip
    conf = {"cniVersion": "0.3.1", "name": "multus-demo", "type": "multus-cni",
            "delegates": [{"name": "k8snet1", "type": "bridge", "masterplugin": True}, macvlan]}  # fmt: skip
    path = tmp_path / "10-multus.conf"
    path.write_text(json.dumps(conf))
    plugin = KubeIpam(Services())
    net = dict(macvlan, cniVersion="0.3.1")

    def add(cid, pod, annotations=None):
        runtime = {"io.kubernetes.cri.pod-annotations": annotations or {}}
        args = f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}"
        result = plugin.add(Environment("ADD", cid, "/run/netns/x", "net1", args), dict(net, runtimeConfig=runtime))
        return str(result.ips[0].address.ip)

    web = add("c-web", "web-1")
    add("c-db1", "database-1", {"kube-ipam.ip": "10.188.0.218"})
    add("c-db2", "database-2", {"kube-ipam.ip": "10.188.0.219"})
    plugin.delete(Environment("DEL", "c-db2", "", "net1"), net)
    return path, etcd_server, web


def run(*args):
    result = CliRunner().invoke(cli, ["ipam", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_ls_text_and_json(filled):
    path, _, web = filled
    code, out, _ = run("--conf", str(path), "ls")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["IP", "KIND", "NETWORK", "POD", "CONTAINER", "IFNAME", "POOL"]
    assert lines[1].split() == ["10.188.0.218", "fixed", "k8snet2", "default/database-1", "c-db1", "net1", "10.188.0.0-16"]
    assert lines[2].split() == ["10.188.0.219", "fixed", "k8snet2", "default/database-2", "-", "-", "10.188.0.0-16"]
    assert lines[3].split()[:2] == [web, "dynamic"]

    code, out, _ = run("--conf", str(path), "ls", "-o", "json", "--kind", "fixed")
    rows = json.loads(out)
    assert code == 0 and [r["ip"] for r in rows] == ["10.188.0.218", "10.188.0.219"]
    assert rows[0] == {"pool": "10.188.0.0-16", "ip": "10.188.0.218", "kind": "fixed", "network": "k8snet2",
                       "pod": "default/database-1", "podUID": "", "containerID": "c-db1", "ifname": "net1"}
    code, out, _ = run("--conf", str(path), "ls", "-o", "json", "--pod", "default/web-1")
    assert [r["ip"] for r in json.loads(out)] == [web]


def test_ls_shows_kube_ipams_own_records_and_reads_a_store_by_flags(filled):
    path, etcd, _ = filled
    etcd.etcdctl("put", "/etcd-cni/networks/k8snet2/used/10.188.7.7", "old-container")
    code, out, _ = run("--conf", str(path), "ls", "-o", "json", "--kind", "kube-ipam")
    assert json.loads(out) == [{"pool": "/etcd-cni/networks/k8snet2", "ip": "10.188.7.7", "kind": "kube-ipam",
                                "network": "k8snet2", "pod": "", "podUID": "", "containerID": "old-container",
                                "ifname": ""}]
    code, out, _ = run("--etcd-url", etcd.url, "ls", "-o", "json")
    assert code == 0 and len(json.loads(out)) == 4


def test_show(filled):
    path, _, _ = filled
    code, out, _ = run("--conf", str(path), "show", "10.188.0.218")
    assert code == 0 and "pod          default/database-1" in out and "containerID  c-db1" in out
    code, out, _ = run("--conf", str(path), "show", "10.188.0.218", "-o", "json")
    assert json.loads(out)[0]["containerID"] == "c-db1"
    code, out, err = run("--conf", str(path), "show", "10.188.0.77", "-o", "json")
    assert code == 1 and json.loads(out) == [] and "10.188.0.77 is not reserved" in err


def test_release_refuses_an_address_in_use_unless_forced(filled):
    path, etcd, web = filled
    code, _, err = run("--conf", str(path), "release", "10.188.0.218")
    assert code == 4 and "in use: 10.188.0.218 (container c-db1 on net1)" in err
    code, out, _ = run("--conf", str(path), "release", "10.188.0.219", "-o", "json")
    assert code == 0 and [r["ip"] for r in json.loads(out)["released"]] == ["10.188.0.219"]
    assert f"{PREFIX}pools/10.188.0.0-16/ips/10.188.0.219" not in etcd.keys(PREFIX)
    code, out, _ = run("--conf", str(path), "release", "--pod", "default/database-1", "--force")
    assert code == 0 and out.strip() == "released 10.188.0.218 (fixed, default/database-1)"
    code, _, err = run("--conf", str(path), "release", "10.188.0.219")
    assert code == 1 and "not reserved" in err
    code, _, err = run("--conf", str(path), "release", "--pod", "default/database-1")
    assert code == 1 and "holds no fixed reservation" in err
    # The web pod's dynamic lease stays, and so does its container's index.
    assert sorted(etcd.keys(PREFIX)) == [f"{PREFIX}pools/10.188.0.0-16/ips/{web}",
                                        f"{PREFIX}pools/10.188.0.0-16/owners/c-db1/net1",
                                        f"{PREFIX}pools/10.188.0.0-16/owners/c-web/net1"]


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["show", "10.188.0.300"], 2, "'10.188.0.300' is not an IP address"),
        (["release"], 2, "give either IP or --pod"),
        (["release", "10.188.0.218", "--pod", "default/x"], 2, "give either IP or --pod"),
        (["release", "--pod", "database-1"], 2, "'database-1' is not namespace/name"),
        (["ls", "--kind", "weird"], 2, "Invalid value for '--kind'"),
    ],
)
def test_bad_arguments(filled, args, code, fragment):
    path, _, _ = filled
    result = CliRunner().invoke(cli, ["ipam", "--conf", str(path), *args])
    assert result.exit_code == code and fragment in result.output + result.stderr


def test_unusable_confs_and_flags(tmp_path):
    code, _, err = run("--conf", str(tmp_path / "missing.conf"), "ls")
    assert code == 2 and "cannot read" in err
    bare = tmp_path / "bare.conf"
    bare.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "bridge"}))
    code, _, err = run("--conf", str(bare), "ls")
    assert code == 2 and "no delegate uses kube-ipam" in err
    code, _, err = run("--etcd-url", "ftp://x", "ls")
    assert code == 2 and "ipam.etcdConfig.etcdURL" in err
    result = CliRunner().invoke(cli, ["ipam", "--etcd-ca", "/ca.pem", "ls"])
    assert result.exit_code == 2 and "need --etcd-url" in result.stderr


def test_etcd_down_exits_3_naming_the_endpoint():
    with EtcdCluster() as etcd:
        url = etcd.url
    code, _, err = run("--etcd-url", url, "ls")
    assert code == 3 and url in err


def test_tls_flags(etcd_tls_server):
    etcd = etcd_tls_server
    args = ["--etcd-url", etcd.url, "--etcd-cert", etcd.cert_file, "--etcd-key", etcd.key_file,
            "--etcd-ca", etcd.ca_file]  # fmt: skip
    code, out, _ = run(*args, "ls", "-o", "json")
    assert code == 0 and json.loads(out) == []
