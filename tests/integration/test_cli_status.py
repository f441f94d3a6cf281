"""`multipy status` against a real etcd (plain and TLS) and the local Kubernetes API: reachable,
down, credentials refused (401), not allowed (403), missing kubeconfig; the token never printed."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from multipy.cli.commands import cli
from multipy.testing.etcd import EtcdCluster
from multipy.testing.topology import SEED_KUBE_IPAM


def conf_file(tmp_path, etcd_config: dict, kubeconfig: str | None = None, top_kubeconfig: str | None = None) -> str:
    ipam = dict(SEED_KUBE_IPAM, etcdConfig=etcd_config)
    if kubeconfig:
        ipam["kubeConfig"] = kubeconfig
    else:
        ipam.pop("kubeConfig", None)
    macvlan = {"name": "k8snet2", "type": "macvlan", "master": "eth0", "ipam": ipam}
    if not kubeconfig:
        macvlan["capabilities"] = {"io.kubernetes.cri.pod-annotations": True}
    conf = {"cniVersion": "0.3.1", "name": "multus", "type": "multus-cni",
            "delegates": [{"name": "lo", "type": "loopback", "masterplugin": True}, macvlan]}  # fmt: skip
    if top_kubeconfig:
        conf["kubeconfig"] = top_kubeconfig
    path = tmp_path / "10-multus.conf"
    path.write_text(json.dumps(conf))
    return str(path)


def status(path, *args):
    result = CliRunner().invoke(cli, ["status", "--conf", path, *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def line(out: str, kind: str) -> str:
    found = [row for row in out.splitlines() if row.split()[1] == kind]
    assert len(found) == 1, out
    return found[0]


def test_etcd_and_api_reachable(tmp_path, etcd_server, kube_api):
    path = conf_file(tmp_path, etcd_server.etcd_config(), kube_api.kubeconfig)
    code, out, err = status(path)
    assert code == 0, out + err
    assert line(out, "etcd").startswith(f"ok    etcd  k8snet2: {etcd_server.url}: etcd 3.")
    assert line(out, "api") == (
        f"ok    api   k8snet2: ipam.kubeConfig {kube_api.kubeconfig}: {kube_api.url} answers "
        "and accepts these credentials"
    )
    # The probe is one cheap GET, of a pod that does not exist.
    gets = [r for r in kube_api.requests if r.path.startswith("/api/v1/namespaces/")]
    assert [(r.method, r.path) for r in gets] == [("GET", "/api/v1/namespaces/kube-system/pods/multipy-status-probe")]


def test_etcd_over_tls(tmp_path, etcd_tls_server):
    path = conf_file(tmp_path, etcd_tls_server.etcd_config())
    code, out, _ = status(path)
    assert code == 0, out
    assert line(out, "etcd").startswith("ok    etcd  k8snet2: https://")
    no_ca = {k: v for k, v in etcd_tls_server.etcd_config().items() if k != "etcdTrustedCAFileFile"}
    code, out, _ = status(conf_file(tmp_path, no_ca))
    assert code == 1 and "FAIL  etcd  k8snet2: https://" in out and "ipam.etcdConfig." in line(out, "etcd")


def test_etcd_down_fails_fast_naming_the_endpoint(tmp_path):
    with EtcdCluster() as etcd:
        config = etcd.etcd_config()
    started = time.monotonic()
    code, out, err = status(conf_file(tmp_path, config))
    assert time.monotonic() - started < 10
    assert code == 1
    assert line(out, "etcd").startswith(
        f"FAIL  etcd  k8snet2: {config['etcdURL']}: etcd status failed ({config['etcdURL']})"
    )
    assert "1 of 5 check(s) failed" in err


@pytest.mark.parametrize("fault", ["reject_token", "forbid", "stop"])
def test_api_faults(tmp_path, etcd_server, kube_api, fault):
    token = kube_api.token
    path = conf_file(tmp_path, etcd_server.etcd_config(), kube_api.kubeconfig)
    getattr(kube_api, fault)()
    code, out, err = status(path, "-o", "json")
    assert code == 1
    api = next(c for c in json.loads(out)["checks"] if c["check"] == "api")
    assert api["ok"] is False and api["subject"] == f"k8snet2: ipam.kubeConfig {kube_api.kubeconfig}"
    expected = {
        "reject_token": f"{kube_api.url}: credentials refused (HTTP 401) for kubeconfig {kube_api.kubeconfig}",
        "forbid": f"{kube_api.url}: not allowed to get pods (HTTP 403) for kubeconfig {kube_api.kubeconfig}",
        "stop": f'get pod "kube-system/multipy-status-probe" on {kube_api.url}: connection refused',
    }[fault]
    assert api["detail"] == expected
    code, text, err = status(path)
    assert code == 1 and token not in out + text + err


def test_kubeconfigs_checked_once_each_and_missing_ones_named(tmp_path, etcd_server, kube_api):
    missing = str(tmp_path / "nope.kubeconfig")
    path = conf_file(tmp_path, etcd_server.etcd_config(), kube_api.kubeconfig, top_kubeconfig=missing)
    code, out, _ = status(path)
    assert code == 1
    rows = [row for row in out.splitlines() if row.split()[1] == "api"]
    assert rows == [f"FAIL  api   kubeconfig {missing}: kubeconfig {missing} does not exist",
                    f"ok    api   k8snet2: ipam.kubeConfig {kube_api.kubeconfig}: {kube_api.url} answers and "
                    "accepts these credentials"]  # fmt: skip
    path = conf_file(tmp_path, etcd_server.etcd_config(), kube_api.kubeconfig, top_kubeconfig=kube_api.kubeconfig)
    code, out, _ = status(path)
    assert code == 0 and len([row for row in out.splitlines() if row.split()[1] == "api"]) == 1


def test_without_a_kubeconfig_in_a_cluster_the_service_account_is_checked(tmp_path, etcd_server):
    path = conf_file(tmp_path, etcd_server.etcd_config())  # kube-ipam gets annotations from the runtime
    result = CliRunner().invoke(cli, ["status", "--conf", path], env={"KUBERNETES_SERVICE_HOST": ""})
    assert result.exit_code == 0 and " api " not in result.stdout
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    result = CliRunner().invoke(cli, ["status", "--conf", path], env=env)
    assert result.exit_code == 1
    assert line(result.stdout, "api").startswith(
        "FAIL  api   in-cluster service account: cannot load in-cluster configuration: "
    )


def test_a_cluster_network_known_only_as_a_nad_is_read_from_the_api(tmp_path, kube_api):
    subnet = tmp_path / "subnet.env"
    subnet.write_text("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    (tmp_path / "net.d").mkdir()
    conf = {"cniVersion": "0.3.1", "name": "multus", "type": "multus-cni", "kubeconfig": kube_api.kubeconfig,
            "confDir": str(tmp_path / "net.d"), "clusterNetwork": "cluster", "defaultNetworks": ["extra"]}  # fmt: skip
    path = tmp_path / "10-multus.conf"
    path.write_text(json.dumps(conf))
    kube_api.add_nad("kube-system", "cluster", {"cniVersion": "0.3.1", "type": "flannel", "subnetFile": str(subnet)})
    code, out, _ = status(str(path))
    assert code == 1
    rows = [row for row in out.splitlines() if row.split()[1] in ("network", "type", "subnet.env")]
    assert rows[:2] == [
        "ok    network     kube-system/cluster: NetworkAttachmentDefinition of network cluster",
        f"FAIL  network     kube-system/extra: neither in confDir {tmp_path}/net.d nor a NetworkAttachmentDefinition",
    ]
    assert "ok    type        cluster: type flannel: native plugin delegates.flannel:Flannel" in rows
    assert f"ok    subnet.env  cluster: {subnet}: subnet 10.244.3.0/24 of 10.244.0.0/16, MTU 1450, IPMASQ true" in rows
    kube_api.add_nad("kube-system", "extra", {"cniVersion": "0.3.1", "type": "loopback"})
    code, out, _ = status(str(path))
    assert code == 0, out
