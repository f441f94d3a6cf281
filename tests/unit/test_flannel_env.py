"""subnet.env parsing and the delegate conf flannel builds from it (no namespaces, no delegate runs)."""

from __future__ import annotations

import ipaddress
import json
import os
import stat

import pytest

from delegates import flannel, flannel_env
from multipy.cni.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, TRY_AGAIN_LATER, CNIError
from multipy.testing.flannel import write_subnet_env

NOTE_ENV = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "subnet.env"
    path.write_text(text)
    return str(path)


def test_the_reference_example_verbatim(tmp_path):
    """reference-plugins.md's example: flannel-io/flannel's usual delegate (kube-flannel.yml)."""
    env = flannel_env.load(_write(tmp_path, NOTE_ENV))
    conf = {"name": "cbr0", "cniVersion": "0.3.1", "type": "flannel",
            "delegate": {"hairpinMode": True, "isDefaultGateway": True}}
    assert flannel.delegate_conf(flannel.parse(conf), env) == json.loads("""
        {"name":"cbr0","cniVersion":"0.3.1","type":"bridge","hairpinMode":true,"isDefaultGateway":true,
         "isGateway":true,"ipMasq":false,"mtu":1450,
         "ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}]}}
    """)


def test_parse_reduces_subnets_and_reads_ipv6_lists(tmp_path):
    env = flannel_env.load(_write(tmp_path, (
        "FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16\n"
        "FLANNEL_SUBNET=10.244.3.1/24\n"
        "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\n"
        "FLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\n"
        "FLANNEL_MTU=1450\n"
        "FLANNEL_IPMASQ=false\n"
        "SOMETHING_ELSE=ignored\n"
        "no equals sign here\n")))
    assert env.networks == (ipaddress.ip_network("10.244.0.0/16"), ipaddress.ip_network("10.245.0.0/16"))
    assert env.subnet == ipaddress.ip_network("10.244.3.0/24")
    assert env.ipv6_networks == (ipaddress.ip_network("fd00:10:244::/56"),)
    assert env.ipv6_subnet == ipaddress.ip_network("fd00:10:244:3::/64")
    assert (env.mtu, env.ipmasq) == (1450, False)


def test_dual_stack_delegate_gets_both_ranges_and_routes(tmp_path):
    env = flannel_env.load(_write(tmp_path, (
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\n"
        "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\n"
        "FLANNEL_MTU=1400\nFLANNEL_IPMASQ=false\n")))
    delegate = flannel.delegate_conf(flannel.parse({"name": "n", "cniVersion": "1.0.0"}), env)
    assert delegate["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}], [{"subnet": "fd00:10:244:3::/64"}]]
    assert delegate["ipam"]["routes"] == [{"dst": "10.244.0.0/16"}, {"dst": "fd00:10:244::/56"}]
    assert delegate["ipMasq"] is True  # flanneld does not masquerade, so the bridge must


def test_ipv6_only_is_complete(tmp_path):
    env = flannel_env.load(_write(tmp_path, "FLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_IPV6_SUBNET=fd00:0:0:3::1/64\n"
                                            "FLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n"))
    assert env.subnet is None and env.ipv6_subnet == ipaddress.ip_network("fd00:0:0:3::/64")


@pytest.mark.parametrize(("text", "missing"), [
    ("FLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
     "FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK"),
    ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET"),
    ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\n", "FLANNEL_MTU, FLANNEL_IPMASQ"),
    ("", "FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ"),
])
def test_incomplete_file_means_not_ready(text, missing, tmp_path):
    path = _write(tmp_path, text)
    with pytest.raises(CNIError) as caught:
        flannel_env.load(path)
    assert caught.value.code == TRY_AGAIN_LATER
    assert caught.value.msg == (f"flannel is not ready yet: failed to load flannel 'subnet.env' file: "
                                f"{path} is missing {missing}")


def test_missing_file_means_not_ready(tmp_path):
    path = str(tmp_path / "nope.env")
    with pytest.raises(CNIError) as caught:
        flannel_env.load(path)
    assert caught.value.code == TRY_AGAIN_LATER
    assert f"open {path}: no such file or directory" in caught.value.msg
    assert "flannel is not ready yet" in caught.value.msg


def test_unreadable_file_is_an_io_failure(tmp_path):
    with pytest.raises(CNIError) as caught:
        flannel_env.load(str(tmp_path))  # a directory
    assert caught.value.code == IO_FAILURE


@pytest.mark.parametrize(("line", "words"), [
    ("FLANNEL_MTU=abc", "FLANNEL_MTU='abc': not an unsigned integer"),
    ("FLANNEL_MTU=-1", "FLANNEL_MTU='-1': not an unsigned integer"),
    ("FLANNEL_SUBNET=10.244.3.1", "FLANNEL_SUBNET='10.244.3.1': not an IPv4 CIDR"),
    ("FLANNEL_NETWORK=banana/16", "FLANNEL_NETWORK='banana/16': not a CIDR"),
    ("FLANNEL_IPV6_SUBNET=10.1.0.0/16", "FLANNEL_IPV6_SUBNET='10.1.0.0/16': not an IPv6 CIDR"),
])
def test_malformed_values_name_key_and_value(line, words, tmp_path):
    path = _write(tmp_path, NOTE_ENV + line + "\n")
    with pytest.raises(CNIError) as caught:
        flannel_env.load(path)
    assert caught.value.code == INVALID_NETWORK_CONFIG
    assert caught.value.msg == f"{path}: {words}"


def test_ipmasq_is_true_only_for_the_literal_true(tmp_path):
    for value, expected in (("true", True), ("True", False), ("1", False), ("", False)):
        env = flannel_env.parse(f"FLANNEL_IPMASQ={value}\n")
        assert env.ipmasq is expected


def test_delegate_keys_win_over_flannel_defaults_and_top_level_version_and_runtime_config_win(tmp_path):
    env = flannel_env.load(_write(tmp_path, NOTE_ENV))
    conf = flannel.parse({
        "name": "k8snet1", "cniVersion": "1.0.0", "type": "flannel",
        "runtimeConfig": {"mac": "0a:58:00:00:00:01"},
        "ipam": {"dataDir": "/tmp/x", "ranges": [[{"subnet": "192.168.0.0/24"}]], "routes": [{"dst": "10.96.0.0/12"}]},
        "delegate": {"isDefaultGateway": True, "bridge": "docker0", "mtu": 1400, "ipMasq": True, "isGateway": False,
                     "cniVersion": "0.3.1", "runtimeConfig": {"mac": "ignored"}},
        "dropped": "top-level keys other than flannel's own are not handed on",
    })
    assert flannel.delegate_conf(conf, env) == {
        "name": "k8snet1", "cniVersion": "1.0.0", "type": "bridge", "bridge": "docker0",
        "isDefaultGateway": True, "isGateway": False, "ipMasq": True, "mtu": 1400,
        "runtimeConfig": {"mac": "0a:58:00:00:00:01"},
        "ipam": {"type": "host-local", "dataDir": "/tmp/x", "ranges": [[{"subnet": "10.244.3.0/24"}]],
                 "routes": [{"dst": "10.96.0.0/12"}, {"dst": "10.244.0.0/16"}]},
    }


def test_other_delegate_types_get_no_is_gateway(tmp_path):
    env = flannel_env.load(_write(tmp_path, NOTE_ENV))
    delegate = flannel.delegate_conf(flannel.parse({"name": "n", "delegate": {"type": "ipvlan"},
                                                    "ipam": {"type": "static"}}), env)
    assert "isGateway" not in delegate and delegate["ipam"]["type"] == "static"
    assert "cniVersion" not in delegate  # none at the top level: the delegate's own, if any, stays


@pytest.mark.parametrize(("conf", "words"), [
    ({"delegate": {"name": "x"}}, "'delegate' dictionary must not have 'name' field, it'll be set by flannel"),
    ({"delegate": {"ipam": {}}}, "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel"),
    ({"delegate": {"type": 3}}, "'delegate' dictionary, if present, must have (string) 'type' field"),
    ({"delegate": "bridge"}, 'delegate must be an object, got "bridge"'),
    ({"subnetFile": 5}, "subnetFile must be a string, got 5"),
    ({"ipam": {"routes": "10.0.0.0/8"}}, "failed to parse ipam.routes"),
])
def test_bad_flannel_conf_is_code_7(conf, words):
    with pytest.raises(CNIError) as caught:
        flannel.parse({"name": "n", **conf})
    assert caught.value.code == INVALID_NETWORK_CONFIG and words in caught.value.msg


def test_stored_conf_is_private_complete_and_sorted(tmp_path):
    data_dir = str(tmp_path / "flannel")
    flannel.store(data_dir, "c1", {"type": "bridge", "name": "n", "ipam": {"type": "host-local"}})
    path = os.path.join(data_dir, "c1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700
    assert open(path).read() == '{"ipam":{"type":"host-local"},"name":"n","type":"bridge"}'
    assert sorted(os.listdir(data_dir)) == ["c1"]  # no temp file left behind
    assert flannel.stored(data_dir, "c1")["type"] == "bridge"
    assert flannel.stored(data_dir, "c2") is None
    (tmp_path / "flannel" / "c3").write_text("{ torn")
    assert flannel.stored(data_dir, "c3") == {}


def test_fixture_writer_leaves_out_keys_given_as_none(tmp_path):
    path = write_subnet_env(str(tmp_path / "s.env"), FLANNEL_MTU=None, FLANNEL_SUBNET="10.244.7.1/24")
    env = flannel_env.parse(open(path).read())
    assert env.mtu is None and env.subnet == ipaddress.ip_network("10.244.7.0/24")
