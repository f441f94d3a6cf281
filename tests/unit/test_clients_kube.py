"""Kubernetes client: configuration errors, Status parsing, and no `kubernetes` import until a client is built."""

from __future__ import annotations

import subprocess
import sys

import pytest

from multipy.clients.kube import KubeConfigError, _status_message, from_kubeconfig


def test_a_missing_kubeconfig_is_named(tmp_path):
    with pytest.raises(KubeConfigError, match=r"kubeconfig .*/nope does not exist"):
        from_kubeconfig(str(tmp_path / "nope"))


def test_a_broken_kubeconfig_is_named(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    with pytest.raises(KubeConfigError) as caught:
        from_kubeconfig(str(path))
    assert str(path) in str(caught.value)


def test_without_kubeconfig_outside_a_cluster_there_is_no_api(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST is unset"):
        from_kubeconfig(None)


def test_in_cluster_without_a_service_account_is_a_config_error(monkeypatch, tmp_path):
    from kubernetes.config import incluster_config

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "192.0.2.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    with pytest.raises(KubeConfigError, match="in-cluster configuration"):
        from_kubeconfig(None)


def test_in_cluster_service_account_is_used_when_no_kubeconfig_is_given(monkeypatch, tmp_path):
    from kubernetes.config import incluster_config

    (tmp_path / "token").write_text("secret-token")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "192.0.2.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    kube = from_kubeconfig(None)
    assert kube.server == "https://192.0.2.1:6443"
    assert "secret-token" not in repr(kube)


def test_status_objects_give_message_and_reason():
    body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \\"x\\" not found","reason":"NotFound","code":404}'
    assert _status_message(body) == ('pods "x" not found', "NotFound")
    assert _status_message(b"404 page not found\n") == ("404 page not found", "")
    assert _status_message(b"") == ("", "")


def test_importing_the_module_loads_no_kubernetes():
    code = "import sys, multipy.clients.kube; print(sorted(m for m in ('kubernetes', 'urllib3', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
