"""conf/rbac.yaml, conf/daemonset.yaml and conf/etcd-secret.example.yaml: their kinds, the RBAC rules
exactly, a ConfigMap conf that passes `multipy validate`, and a DaemonSet that provides every file
the conf names, at that path, both in its init container and on the node."""

from __future__ import annotations

import base64
import json
import os
import posixpath
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from delegates.kube_ipam import config as kube_config
from multipy.cli.commands import cli

CONF = Path(__file__).resolve().parents[2] / "conf"


def documents(name: str) -> list[dict]:
    with open(CONF / name) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def by_kind(name: str) -> dict[str, dict]:
    docs = documents(name)
    kinds = {doc["kind"]: doc for doc in docs}
    assert len(kinds) == len(docs)
    return kinds


# ---- RBAC -----------------------------------------------------------------------------------


def test_rbac_kinds_and_names():
    docs = documents("rbac.yaml")
    assert [d["kind"] for d in docs] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
    account, role, binding = docs
    assert account["apiVersion"] == "v1" and account["metadata"] == {"name": "multipy", "namespace": "kube-system"}
    assert role["apiVersion"] == binding["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "multipy"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "multipy", "namespace": "kube-system"}]


def test_rbac_rules_are_exactly_least_privilege():
    role = by_kind("rbac.yaml")["ClusterRole"]
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}  # fmt: skip
    assert granted == {
        ("", "pods", "get"),
        ("", "pods", "list"),  # multipy ipam gc
        ("", "pods/status", "patch"),
        ("k8s.cni.cncf.io", "network-attachment-definitions", "get"),
        ("k8s.cni.cncf.io", "network-attachment-definitions", "list"),
        ("", "events", "create"),
        ("", "events", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    }
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"])  # no resourceNames tricks


# ---- the etcd Secret --------------------------------------------------------------------------


def test_etcd_secret_example():
    (secret,) = documents("etcd-secret.example.yaml")
    assert secret["kind"] == "Secret" and secret["type"] == "Opaque" and secret["apiVersion"] == "v1"
    assert secret["metadata"] == {"name": "multipy-etcd-tls", "namespace": "kube-system"}
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    for value in secret["data"].values():
        assert base64.b64decode(value, validate=True).decode().startswith("REPLACE ME: ")


# ---- the DaemonSet and its conf ----------------------------------------------------------------


@pytest.fixture
def daemonset():
    kinds = by_kind("daemonset.yaml")
    assert set(kinds) == {"ConfigMap", "DaemonSet"}
    return kinds["ConfigMap"], kinds["DaemonSet"]


def cluster_conf(configmap) -> dict:
    return json.loads(configmap["data"]["10-multus.conf"])


def test_the_configmaps_conf_passes_validate(daemonset, tmp_path):
    configmap, _ = daemonset
    assert configmap["metadata"] == {"name": "multipy-conf", "namespace": "kube-system"}
    path = tmp_path / "10-multus.conf"
    path.write_text(configmap["data"]["10-multus.conf"])
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0 and result.stdout == f"{path}: valid\n"
    conf = cluster_conf(configmap)
    assert [d["type"] for d in conf["delegates"]] == ["flannel", "macvlan"]
    ipam = conf["delegates"][1]["ipam"]
    assert ipam["type"] == "kube-ipam"
    # kube-ipam itself accepts it (validate checks the meta conf; each delegate checks its own keys).
    kube_config.load(dict(conf["delegates"][1], cniVersion=conf["cniVersion"]))
    # The runtime hands the annotations over only for capabilities the conf file itself declares.
    assert conf["capabilities"] == conf["delegates"][1]["capabilities"] == {"io.kubernetes.cri.pod-annotations": True}


def containers(ds) -> tuple[dict, dict]:
    spec = ds["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    (main,) = spec["containers"]
    return init, main


def options(command: list[str]) -> dict[str, str]:
    """--option value pairs of `multipy install ...`, but --file."""
    assert command[:2] == ["multipy", "install"]
    args = command[2:]
    assert all(a.startswith("--") for a in args[::2]), "every option takes one value"
    return {args[i]: args[i + 1] for i in range(0, len(args), 2) if args[i] != "--file"}


def test_daemonset_shape(daemonset):
    _, ds = daemonset
    account = by_kind("rbac.yaml")["ServiceAccount"]["metadata"]
    assert ds["apiVersion"] == "apps/v1" and ds["metadata"]["namespace"] == account["namespace"] == "kube-system"
    spec = ds["spec"]["template"]["spec"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert spec["hostNetwork"] is True and spec["serviceAccountName"] == account["name"]
    assert {"operator": "Exists"} in spec["tolerations"]  # every taint, any effect
    # No surge: two pods on a node would install two runtimes over each other.
    assert ds["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1}
    init, main = containers(ds)
    assert options(init["command"]) == {
        "--host-root": "/host",
        "--conf": "/etc/multipy/10-multus.conf",
        "--conf-dir": "/etc/cni/net.d",
        "--bin-dir": "/opt/cni/bin",
        "--runtime": "/opt/multipy",
        "--runtime-dir": "/opt/multipy",
        "--kubeconfig": "/etc/cni/net.d/multipy.d/multipy.kubeconfig",
    }
    # The main container repeats the install (the token it copies to the node rotates), from the same image.
    assert main["command"] == init["command"] + ["--every", "300"] and main["image"] == init["image"]
    assert main["volumeMounts"] == init["volumeMounts"]


def test_least_privilege(daemonset):
    _, ds = daemonset
    spec = ds["spec"]["template"]["spec"]
    assert not {"hostPID", "hostIPC"} & set(spec)
    for container in containers(ds):
        assert container["securityContext"] == {
            "runAsUser": 0,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            # SYS_CHROOT only: install runs the new executables chrooted into /host before it switches.
            "capabilities": {"drop": ["ALL"], "add": ["SYS_CHROOT"]},
        }
        assert "memory" in container["resources"]["limits"]
    # Writable: only the node directories install writes, never the node's /. Read-only: the node's
    # loader and glibc (/usr, /lib, /lib64), which that chrooted run uses, at the same paths under /host.
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    for container in containers(ds):
        mounted = {volumes[m["name"]]: (m["mountPath"], m.get("readOnly", False))
                   for m in container["volumeMounts"] if m["name"] in volumes}  # fmt: skip
        assert mounted == {
            "/etc/cni/net.d": ("/host/etc/cni/net.d", False),
            "/opt/cni/bin": ("/host/opt/cni/bin", False),
            "/opt/multipy": ("/host/opt/multipy", False),
            "/etc/multipy": ("/host/etc/multipy", False),
            "/usr": ("/host/usr", True),
            "/lib": ("/host/lib", True),
            "/lib64": ("/host/lib64", True),
        }


class Mounts:
    """Where a container's paths come from: (volume, path inside it) by longest mountPath prefix."""

    def __init__(self, container: dict, volumes: list[dict]):
        self.mounts = sorted(container["volumeMounts"], key=lambda m: len(m["mountPath"]), reverse=True)
        self.volumes = {v["name"]: v for v in volumes}

    def source(self, path: str) -> tuple[dict, str]:
        for mount in self.mounts:
            root = mount["mountPath"].rstrip("/")
            if path == root or path.startswith(root + "/"):
                return self.volumes[mount["name"]], posixpath.relpath(path, root)
        raise AssertionError(f"{path} is on no volume")


def projected_item(volume: dict, relative: str) -> tuple[str, str, str]:
    """(kind, object name, key) of the projected item at `relative`."""
    for source in volume["projected"]["sources"]:
        kind = next(iter(source))
        for item in source[kind].get("items", []):
            if item["path"] == relative:
                return kind, source[kind]["name"], item["key"]
    raise AssertionError(f"{relative} is not in volume {volume['name']}")


def named_files(conf: dict) -> list[str]:
    files = []
    for delegate in conf["delegates"]:
        etcd = (delegate.get("ipam") or {}).get("etcdConfig") or {}
        files += [etcd[k] for k in ("etcdCertFile", "etcdKeyFile", "etcdTrustedCAFileFile") if k in etcd]
    return files


def test_the_daemonset_mounts_what_the_conf_names(daemonset):
    configmap, ds = daemonset
    conf = cluster_conf(configmap)
    spec = ds["spec"]["template"]["spec"]
    init, _ = containers(ds)
    mounts = Mounts(init, spec["volumes"])
    args = init["command"]
    option = options(args)
    copies = dict(args[i + 1].split(":", 1) for i in range(len(args)) if args[i] == "--file")
    root = option["--host-root"]

    def on_node(path: str) -> str:
        """The node path a node path given to install really reaches, through the container's mounts."""
        volume, relative = mounts.source(posixpath.join(root, path.lstrip("/")))
        return posixpath.normpath(posixpath.join(volume["hostPath"]["path"], relative))

    # The conf comes from the ConfigMap.
    volume, relative = mounts.source(option["--conf"])
    assert projected_item(volume, relative) == ("configMap", configmap["metadata"]["name"], "10-multus.conf")

    # Every node path lands at that very path on the node, and the conf's names agree with them.
    for flag in ("--conf-dir", "--bin-dir", "--runtime-dir", "--kubeconfig"):
        assert on_node(option[flag]) == option[flag]
    assert conf["binDir"] == option["--bin-dir"] == "/opt/cni/bin"
    assert conf["kubeconfig"] == option["--kubeconfig"] == "/etc/cni/net.d/multipy.d/multipy.kubeconfig"
    assert on_node(option["--kubeconfig"] + ".ca.crt") == option["--kubeconfig"] + ".ca.crt"

    # Every file the conf names: in the container from the Secret at that very path, and copied to the
    # node at that very path too, where the plugin reads it.
    (secret,) = documents("etcd-secret.example.yaml")
    files = named_files(conf)
    assert sorted(files) == ["/etc/multipy/etcd/ca.crt", "/etc/multipy/etcd/tls.crt", "/etc/multipy/etcd/tls.key"]
    assert set(copies) == set(files)
    for path in files:
        volume, relative = mounts.source(path)
        kind, name, key = projected_item(volume, relative)
        assert (kind, name) == ("secret", secret["metadata"]["name"]) and key in secret["data"]
        assert copies[path] == path and on_node(copies[path]) == path


def run_init_install(tmp_path, conf: str, command: list[str]):
    """An init container's `multipy install` command through the real CLI: what the pod reads under
    tmp/pod (the conf, etcd files, a small runtime tree as the image's /opt/multipy, a fake service
    account), the host root under tmp/host. The CliRunner result and the host root."""
    pod, host = tmp_path / "pod", tmp_path / "host"
    (pod / "etc/multipy/etcd").mkdir(parents=True)
    host.mkdir()
    (pod / "etc/multipy/10-multus.conf").write_text(conf)
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (pod / "etc/multipy/etcd" / name).write_text(name)
    (pod / "opt/multipy/bin").mkdir(parents=True)
    (pod / "opt/multipy/bin/python3").write_text("an interpreter")
    account = pod / "var/run/secrets/kubernetes.io/serviceaccount"
    account.mkdir(parents=True)
    (account / "token").write_text("a-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    args = list(command[1:])
    for i, arg in enumerate(args[:-1]):
        if arg == "--host-root":
            args[i + 1] = str(host)
        elif arg in ("--conf", "--runtime", "--file"):
            args[i + 1] = f"{pod}{args[i + 1]}"  # a --file's SOURCE is the pod's, its DEST the node's
    # --no-verify: the fake interpreter cannot run, nor is there a node to chroot into (test_cli_install_verify.py).
    args += ["--serviceaccount-dir", str(account), "--no-verify"]
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    return CliRunner(env=env).invoke(cli, args, catch_exceptions=False), host


def test_the_init_containers_command_is_a_valid_install(daemonset, tmp_path):
    configmap, ds = daemonset
    init, _ = containers(ds)
    result, host = run_init_install(tmp_path, configmap["data"]["10-multus.conf"], init["command"])
    assert result.exit_code == 0, result.output
    assert (host / "etc/cni/net.d/10-multus.conf").read_text() == configmap["data"]["10-multus.conf"]
    assert (host / "etc/multipy/etcd/tls.key").read_text() == "tls.key"
    (digest,) = os.listdir(host / "opt/multipy")
    assert (host / "opt/multipy" / digest / "bin/python3").read_text() == "an interpreter"
    launcher = (host / "opt/cni/bin/multus-cni").read_text()
    assert launcher.startswith(f"#!/opt/multipy/{digest}/bin/python3 -I\n")
    kubeconfig = json.loads((host / "etc/cni/net.d/multipy.d/multipy.kubeconfig").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://10.96.0.1:443"
    assert "a-token" not in result.output
