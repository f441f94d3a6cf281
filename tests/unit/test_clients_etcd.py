"""etcd client: endpoint and TLS configuration checks, prefix ranges, and no grpc import until connect()."""

from __future__ import annotations

import subprocess
import sys

import pytest

from multipy.clients.etcd import EtcdConfigError, _prefix_end, connect, parse_endpoints


def test_etcd_url_is_comma_separated_and_https_means_tls():
    endpoints = parse_endpoints(" https://192.0.2.10:2379, https://[2001:db8::1]:2380 ,https://etcd.example")
    assert [(e.host, e.port, e.secure) for e in endpoints] == [
        ("192.0.2.10", 2379, True),
        ("2001:db8::1", 2380, True),
        ("etcd.example", 2379, True),
    ]
    assert endpoints[1].target == "[2001:db8::1]:2380"


def test_a_list_and_bare_host_port_are_accepted_as_plain_http():
    endpoints = parse_endpoints(["127.0.0.1:23790", "http://localhost"])
    assert [(e.target, e.secure) for e in endpoints] == [("127.0.0.1:23790", False), ("localhost:2379", False)]


@pytest.mark.parametrize(
    "url, words",
    [
        ("", "no etcd endpoint"),
        (" , ", "no etcd endpoint"),
        ("ftp://192.0.2.1:2379", "scheme must be http or https"),
        ("http://192.0.2.1:99999", "invalid port"),
        ("http://192.0.2.1:2379/v3", "expected scheme://host[:port]"),
        ("http://192.0.2.1:2379,https://192.0.2.2:2379", "mixes http:// and https://"),
    ],
)
def test_bad_endpoints_name_the_value(url, words):
    with pytest.raises(EtcdConfigError) as caught:
        parse_endpoints(url)
    assert caught.value.field == "endpoints"
    assert words in str(caught.value)


def test_https_without_ca_is_refused_rather_than_silently_plain_text(tmp_path):
    pem = tmp_path / "c.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(EtcdConfigError) as caught:
        connect("https://127.0.0.1:2379", cert_file=str(pem), key_file=str(pem))
    assert caught.value.field == "ca_file"
    with pytest.raises(EtcdConfigError) as caught:
        connect("https://127.0.0.1:2379")
    assert caught.value.field == "ca_file"


def test_cert_needs_key_and_key_needs_cert(tmp_path):
    pem = tmp_path / "c.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(EtcdConfigError) as caught:
        connect("https://127.0.0.1:2379", ca_file=str(pem), cert_file=str(pem))
    assert caught.value.field == "key_file" and "cert_file" in caught.value.reason
    with pytest.raises(EtcdConfigError) as caught:
        connect("https://127.0.0.1:2379", ca_file=str(pem), key_file=str(pem))
    assert caught.value.field == "cert_file"


def test_tls_files_with_http_endpoints_are_refused(tmp_path):
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(EtcdConfigError) as caught:
        connect("http://127.0.0.1:2379", ca_file=str(pem))
    assert caught.value.field == "ca_file" and "https://" in caught.value.reason


def test_unreadable_or_non_pem_files_name_the_field_and_path(tmp_path):
    with pytest.raises(EtcdConfigError) as caught:
        connect("https://127.0.0.1:2379", ca_file=str(tmp_path / "missing.pem"))
    assert caught.value.field == "ca_file" and "missing.pem" in str(caught.value)
    garbage = tmp_path / "garbage"
    garbage.write_text("not a certificate")
    with pytest.raises(EtcdConfigError, match="not a PEM file") as caught:
        connect("https://127.0.0.1:2379", ca_file=str(garbage))
    assert caught.value.field == "ca_file"


def test_prefix_range_end_matches_etcd():
    assert _prefix_end(b"/etcd-cni/") == b"/etcd-cni0"
    assert _prefix_end(b"a\xff") == b"b"
    assert _prefix_end(b"\xff\xff") == b"\0"


def test_importing_the_module_loads_no_grpc():
    code = "import sys, multipy.clients.etcd; print(sorted(m for m in ('grpc', 'pyetcd', 'google.protobuf') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
