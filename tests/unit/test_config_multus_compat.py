"""A Go Multus v4 conf loads as it is: every key its conf reads is accepted, the keys that mean nothing
here are named as warnings (by `multipy validate` and in the log), and the keys multipy uses keep
strict checks."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from multipy import entry
from multipy.cli.commands import cli
from multipy.cni.env import Environment
from multipy.cni.skel import Request
from multipy.config import multus
from multipy.log import Log, Rotation, Settings

IGNORED = "accepted for Go Multus compatibility and ignored"
WARNINGS = [
    f"$.ipam: {IGNORED}",
    f"$.dns: {IGNORED}",
    "$.delegates: ignored: 'clusterNetwork' is set, and wins as in Go Multus",
]
CLUSTER_NETWORK = {
    "cniVersion": "0.3.1",
    "name": "k8s-pod-network",
    "plugins": [{"type": "flannel", "delegate": {"isDefaultGateway": True}}],
}


@pytest.fixture
def go_multus_conf(tmp_path) -> dict:
    """Every key of Go Multus v4's NetConf (pkg/types) and libcni's, as an operator would bring it."""
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-flannel.conflist").write_text(json.dumps(CLUSTER_NETWORK))
    return {
        "cniVersion": "0.3.1",
        "name": "multus-cni-network",
        "type": "multus",
        "capabilities": {"portMappings": True, "bandwidth": True},
        "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"},
        "dns": {
            "nameservers": ["10.96.0.10"],
            "domain": "cluster.local",
            "search": ["svc.cluster.local"],
            "options": ["ndots:5"],
        },
        "args": {"cni": {"labels": [{"key": "app", "value": "web"}]}},
        "prevResult": {"cniVersion": "0.3.1", "interfaces": [], "ips": []},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        "confDir": str(conf_dir),
        "cniDir": str(tmp_path / "cache"),
        "binDir": "/opt/cni/bin",
        "delegates": [
            {"cniVersion": "0.3.1", "name": "cbr0", "type": "flannel", "delegate": {"isDefaultGateway": True}}
        ],
        "kubeconfig": "/etc/cni/net.d/multus.d/multus.kubeconfig",
        "clusterNetwork": "k8s-pod-network",
        "defaultNetworks": ["sidecar-net"],  # not in confDir: a NetworkAttachmentDefinition, resolved per pod
        "logFile": str(tmp_path / "multus.log"),
        "logLevel": "verbose",
        "logToStderr": False,
        "logOptions": {"maxAge": 7, "maxSize": 50, "maxBackups": 3, "compress": True},
        "readinessindicatorfile": "/run/flannel/subnet.env",
        "namespaceIsolation": True,
        "globalNamespaces": "default,kube-public",
        "systemNamespaces": ["kube-system"],
        "multusNamespace": "kube-system",
        "retryDeleteOnError": True,
        "daemonSocketDir": "/run/multus/",
    }


def _validate(tmp_path, doc, *options):
    path = tmp_path / "00-multus.conf"
    path.write_text(json.dumps(doc))
    return str(path), CliRunner().invoke(cli, ["validate", str(path), *options], catch_exceptions=False)


def test_a_go_multus_conf_validates_with_a_warning_per_ignored_key(tmp_path, go_multus_conf):
    path, result = _validate(tmp_path, go_multus_conf)
    assert result.exit_code == 0, result.output
    assert f"{path}: valid" in result.output.splitlines()
    for warning in WARNINGS:
        assert f"{path}: warning: {warning}" in result.output.splitlines()
    assert "warning: $.logOptions" not in result.output and "warning: $.retryDeleteOnError" not in result.output


def test_validate_as_json_lists_the_warnings(tmp_path, go_multus_conf):
    _, result = _validate(tmp_path, go_multus_conf, "-o", "json")
    doc = json.loads(result.output)
    assert doc["valid"] is True and doc["problems"] == []
    assert [f"{w['path']}: {w['message']}" for w in doc["warnings"]] == WARNINGS


def test_a_go_multus_conf_loads_with_the_keys_multipy_uses(go_multus_conf, tmp_path):
    conf = multus.load(go_multus_conf)
    assert [d.name for d in conf.delegates] == ["k8s-pod-network", "sidecar-net"]
    assert conf.master.network is not None and conf.master.network.name == "k8s-pod-network"
    assert conf.log_rotation == Rotation(max_bytes=50 * 1024 * 1024, backups=3, max_age_days=7, compress=True)
    assert conf.retry_delete_on_error is True
    assert conf.daemon_socket_dir == "/run/multus/"
    assert conf.global_namespaces == ("default", "kube-public")
    assert conf.namespace_isolation is True and conf.readiness_file == "/run/flannel/subnet.env"


def test_an_add_with_a_go_multus_conf_is_built_and_logs_the_warnings_once(go_multus_conf, tmp_path):
    env = Environment("ADD", "c0ffee", "/run/netns/pod", "eth0", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1")
    request = Request(env, json.dumps(go_multus_conf).encode(), go_multus_conf, "0.3.1")
    log = Log(Settings(), "c0ffee", "default", "web-1")

    handler = entry.build(request, log)

    assert handler.orchestrator is not None  # the conf loaded; nothing ran yet
    lines = (tmp_path / "multus.log").read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines if " WARNING " in line] == WARNINGS
    assert log.settings.rotation == multus.log_rotation(go_multus_conf)


def test_without_go_multus_only_keys_there_is_no_warning():
    doc = {
        "cniVersion": "1.0.0",
        "name": "multus",
        "type": "multus-cni",
        "delegates": [{"name": "lo", "type": "loopback"}],
    }
    assert multus.warnings(doc) == []
    assert multus.warnings(["not", "an", "object"]) == []


@pytest.mark.parametrize(
    "key, value, path",
    [
        ("logOptions", {"maxSize": "100"}, "$.logOptions.maxSize"),
        ("logOptions", {"maxSize": 1.5}, "$.logOptions.maxSize"),
        ("logOptions", {"maxBackups": -1}, "$.logOptions.maxBackups"),
        ("logOptions", {"compress": "true"}, "$.logOptions.compress"),
        ("logOptions", {"maxsize": 10}, "$.logOptions.maxsize"),  # a typo must not drop rotation silently
        ("logOptions", [], "$.logOptions"),
        ("retryDeleteOnError", "true", "$.retryDeleteOnError"),
        ("daemonSocketDir", "", "$.daemonSocketDir"),
        ("dns", {"nameservers": "10.96.0.10"}, "$.dns.nameservers"),
        ("ipam", "host-local", "$.ipam"),
        ("logLevel", "info", "$.logLevel"),
        ("logfile", "/var/log/multus.log", "$.logfile"),  # still not a Multus key: refused
    ],
)
def test_keys_keep_strict_checks(go_multus_conf, key, value, path):
    go_multus_conf[key] = value
    assert [p.path for p in multus.problems(go_multus_conf)] == [path]


def test_log_options_of_a_refused_conf_still_configure_the_log():
    """entry.py configures the log before the conf is checked, to log why it is refused."""
    assert multus.log_rotation({"logOptions": {"maxSize": "big", "compress": False}}) == Rotation(
        max_bytes=100 * 1024 * 1024, backups=5, max_age_days=5, compress=False
    )
    assert multus.log_rotation({"logOptions": "yes"}) is None
    assert multus.log_rotation({}) is None
