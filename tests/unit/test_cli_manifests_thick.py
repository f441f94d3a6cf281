"""conf/daemonset-thick.yaml, conf/rbac-thick.yaml and conf/10-multus-thick.conf: least-privilege RBAC for the
daemon's watches, the ConfigMap's conf is the example and validates, no hostPID, only the mounts the daemon
needs, at the paths the conf names, probes on the daemon's loopback metrics address, Guaranteed QoS, and an
init container whose command is a valid `multipy install --thick`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner
from test_cli_manifests import Mounts, by_kind, documents, projected_item, run_init_install

from multipy.cli.commands import cli

CONF = Path(__file__).resolve().parents[2] / "conf"
METRICS = "127.0.0.1:9091"


def thick():
    kinds = by_kind("daemonset-thick.yaml")
    assert set(kinds) == {"ConfigMap", "DaemonSet"}
    return kinds["ConfigMap"], kinds["DaemonSet"]


def containers(ds) -> dict[str, dict]:
    spec = ds["spec"]["template"]["spec"]
    found = {c["name"]: c for c in spec["initContainers"] + spec["containers"]}
    assert set(found) == {"install", "daemon", "refresh"}
    return found


def test_rbac_thick_is_exactly_what_the_watches_need():
    docs = documents("rbac-thick.yaml")
    assert [d["kind"] for d in docs] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    account, role, binding = docs
    assert account["metadata"] == {"name": "multipy-thick", "namespace": "kube-system"}
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == "multipy-thick"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "multipy-thick", "namespace": "kube-system"}]
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}  # fmt: skip
    assert granted == {
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "watch"),
        ("", "pods/status", "patch"),
        ("k8s.cni.cncf.io", "network-attachment-definitions", "get"),
        ("k8s.cni.cncf.io", "network-attachment-definitions", "list"),
        ("k8s.cni.cncf.io", "network-attachment-definitions", "watch"),
        ("", "events", "create"),
        ("", "events", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    }
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"])


def test_the_configmaps_conf_is_the_example_and_valid(tmp_path):
    configmap, _ = thick()
    text = configmap["data"]["10-multus.conf"]
    assert json.loads(text) == json.loads((CONF / "10-multus-thick.conf").read_text())
    conf = json.loads(text)
    assert conf["type"] == "multus-shim" and conf["daemonSocketDir"] == "/run/multipy"
    result = CliRunner().invoke(cli, ["validate", str(CONF / "10-multus-thick.conf")])
    assert result.exit_code == 0, result.output


def test_no_host_pid_and_least_privilege():
    _, ds = thick()
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and not {"hostPID", "hostIPC"} & set(spec)
    assert spec["serviceAccountName"] == by_kind("rbac-thick.yaml")["ServiceAccount"]["metadata"]["name"]
    for name, container in containers(ds).items():
        security = container["securityContext"]
        assert security.get("privileged") is not True and security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True and security["capabilities"]["drop"] == ["ALL"]
        # install and refresh: SYS_CHROOT only, to run the new executables chrooted into /host before switching.
        wanted = ["NET_ADMIN", "SYS_ADMIN", "NET_RAW"] if name == "daemon" else ["SYS_CHROOT"]
        assert security["capabilities"].get("add") == wanted
        if name != "daemon":  # the node's loader and glibc for that run: read-only, at their paths under /host
            volumes = {v["name"]: v for v in spec["volumes"]}
            system = {volumes[m["name"]]["hostPath"]["path"]: (m["mountPath"], m.get("readOnly", False))
                      for m in container["volumeMounts"] if m["mountPath"] in ("/host/usr", "/host/lib", "/host/lib64")}  # fmt: skip
            assert system == {p: (f"/host{p}", True) for p in ("/usr", "/lib", "/lib64")}


def test_guaranteed_qos():
    _, ds = thick()
    for container in containers(ds).values():
        resources = container["resources"]
        assert set(resources["limits"]) == {"cpu", "memory"} and resources["requests"] == resources["limits"]


def test_probes_on_the_daemons_metrics_address():
    _, ds = thick()
    daemon = containers(ds)["daemon"]
    command = daemon["command"]
    assert command[:2] == ["multipy", "daemon"]
    assert command[command.index("--metrics-address") + 1] == METRICS
    host, port = METRICS.split(":")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert daemon[probe]["httpGet"] == {"host": host, "path": path, "port": int(port)}


def test_the_daemon_mounts_only_what_its_requests_touch_at_the_confs_paths():
    configmap, ds = thick()
    conf = json.loads(configmap["data"]["10-multus.conf"])
    spec = ds["spec"]["template"]["spec"]
    daemon = containers(ds)["daemon"]
    command = daemon["command"]
    assert command[command.index("--socket-dir") + 1] == conf["daemonSocketDir"]
    mounts = Mounts(daemon, spec["volumes"])
    host_paths = {}
    for mount in daemon["volumeMounts"]:
        volume = mounts.volumes[mount["name"]]
        if "hostPath" in volume:
            assert volume["hostPath"]["path"] == mount["mountPath"]  # the node's paths, as the conf names them
            host_paths[mount["mountPath"]] = mount.get("readOnly", False)
    assert host_paths == {
        "/run/multipy": False,
        conf["cniDir"]: False,
        "/var/lib/cni/networks": False,  # host-local's store
        "/var/lib/cni/flannel": False,  # flannel's delegate confs
        "/run/flannel": True,  # subnet.env
        os.path.dirname(conf["kubeconfig"]): True,
        conf["logFile"]: False,
    }
    # Never the node's CNI conf or bin directory: the daemon cannot delete or rewrite the conf (Multus #1527).
    assert not {"/etc/cni/net.d", "/opt/cni/bin", "/"} & set(host_paths)
    # The etcd files the conf names, from the Secret.
    etcd = conf["delegates"][1]["ipam"]["etcdConfig"]
    for key in ("etcdCertFile", "etcdKeyFile", "etcdTrustedCAFileFile"):
        volume, relative = mounts.source(etcd[key])
        assert projected_item(volume, relative)[0] == "secret"


def test_the_init_containers_command_is_a_valid_thick_install(tmp_path):
    configmap, ds = thick()
    init, refresh = containers(ds)["install"], containers(ds)["refresh"]
    assert init["command"][:3] == ["multipy", "install", "--thick"]
    assert refresh["command"] == init["command"] + ["--every", "300"] and refresh["image"] == init["image"]
    result, host = run_init_install(tmp_path, configmap["data"]["10-multus.conf"], init["command"])
    assert result.exit_code == 0, result.output
    (digest,) = os.listdir(host / "opt/multipy")
    shim = (host / "opt/cni/bin/multus-shim").read_text()
    assert shim.startswith(f"#!/opt/multipy/{digest}/bin/python3 -IS\n")
    assert (host / "opt/cni/bin/multus-cni").exists()
    assert (host / "etc/cni/net.d/10-multus.conf").read_text() == configmap["data"]["10-multus.conf"]
