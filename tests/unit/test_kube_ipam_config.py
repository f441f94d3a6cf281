"""kube-ipam's `ipam` keys: the seed's conf, defaults, and an error naming every bad key."""

from __future__ import annotations

import copy
import ipaddress
import json
from pathlib import Path

import pytest

from delegates.kube_ipam import config
from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.testing.topology import SEED_KUBE_IPAM

# The seed's conf as the seed has it, its cluster's paths and etcd included.
SEED = {
    "cniVersion": "0.3.1",
    "name": "k8snet2",
    "type": "macvlan",
    "ipam": {
        **SEED_KUBE_IPAM,
        "kubeConfig": "/etc/kubernetes/ssl/kube.kubeconfig",
        "etcdConfig": {
            "etcdURL": "https://192.168.1.50:2379,https://192.168.1.58:2379,https://192.168.1.63:2379",
            "etcdCertFile": "/etc/kubernetes/ssl/kubernetes.pem",
            "etcdKeyFile": "/etc/kubernetes/ssl/kubernetes-key.pem",
            "etcdTrustedCAFileFile": "/etc/kubernetes/ssl/k8s-root-ca.pem",
        },
        "resolvConf": "/etc/resolv.conf",
    },
}
SEED_CONF_FILE = Path(__file__).resolve().parents[2] / "conf" / "10-multus.conf"


def seed(**ipam) -> dict:
    conf = copy.deepcopy(SEED)
    for key, value in ipam.items():
        if value is None:
            conf["ipam"].pop(key, None)
        else:
            conf["ipam"][key] = value
    return conf


def error_of(conf) -> CNIError:
    with pytest.raises(CNIError) as info:
        config.load(conf)
    return info.value


def test_the_seed_is_the_seed_conf_file():
    """SEED_KUBE_IPAM, which the tests share, must not drift from the file the user wrote."""
    macvlan = json.loads(SEED_CONF_FILE.read_text())["delegates"][1]
    assert {k: v for k, v in macvlan.items() if k != "master"} == {k: v for k, v in SEED.items() if k != "cniVersion"}


def test_the_seed_conf_parses_with_every_key():
    cfg = config.load(seed())
    ip = ipaddress.ip_address
    assert cfg.network == "k8snet2"
    assert str(cfg.subnet) == "10.188.0.0/16"
    assert (cfg.fixed.start, cfg.fixed.end) == (ip("10.188.0.10"), ip("10.188.0.255"))
    assert (cfg.dynamic.start, cfg.dynamic.end) == (ip("10.188.1.0"), ip("10.188.255.254"))
    assert cfg.range.gateway == ip("10.188.0.1") and cfg.gateway_given
    assert [str(r.dst) for r in cfg.routes] == ["0.0.0.0/0"]
    assert cfg.resolv_conf == "/etc/resolv.conf"
    assert cfg.kubeconfig == "/etc/kubernetes/ssl/kube.kubeconfig"
    assert cfg.etcd.url.count("https://") == 3
    assert cfg.etcd.ca_file == "/etc/kubernetes/ssl/k8s-root-ca.pem"
    assert cfg.etcd.as_dict()["etcdTrustedCAFileFile"] == cfg.etcd.ca_file


def test_defaults_kubeconfig_and_gateway():
    cfg = config.load(seed(kubeConfig=None, gateway=None))
    assert cfg.kubeconfig == config.DEFAULT_KUBECONFIG
    assert str(cfg.range.gateway) == "10.188.0.1" and not cfg.gateway_given


def test_without_a_fixed_span_fixed_addresses_may_be_anywhere_outside_the_dynamic_range():
    assert config.load(seed(fixedStart=None, fixedEnd=None)).fixed is None


def test_one_fixed_bound_reaches_to_the_subnet_edge():
    cfg = config.load(seed(fixedStart=None))
    assert str(cfg.fixed) == "10.188.0.1-10.188.0.255"


@pytest.mark.parametrize(
    "ipam, fragment",
    [
        ({"gatewy": "10.188.0.1"}, 'ipam: unknown key(s) "gatewy"'),
        ({"ranges": [[{"subnet": "10.188.0.0/16"}]]}, "ipam.ranges: not supported"),
        ({"subnet": None}, "ipam.subnet: missing"),
        ({"subnet": "10.188.0.0/33"}, "ipam.subnet"),
        ({"fixedStart": "10.189.0.1"}, 'ipam.fixedStart: "10.189.0.1" is not in subnet 10.188.0.0/16'),
        ({"fixedEnd": "banana"}, 'ipam.fixedEnd: "banana" is not an IP address'),
        ({"fixedStart": "10.188.0.200", "fixedEnd": "10.188.0.100"}, "is after fixedEnd 10.188.0.100"),
        ({"fixedStart": "10.188.0.0"}, "is the network address"),
        ({"fixedEnd": "10.188.255.255"}, "is the broadcast address"),
        ({"fixedEnd": "10.188.1.5"}, "overlaps the dynamic range rangeStart..rangeEnd (10.188.1.0-10.188.255.254)"),
        ({"rangeStart": None, "rangeEnd": None}, "rangeStart/rangeEnd default to the whole subnet"),
        ({"rangeStart": "10.188.3.0", "rangeEnd": "10.188.2.0"}, "ipam.rangeStart"),
        ({"gateway": "10.189.0.1"}, 'ipam.gateway: "10.189.0.1" is not in subnet'),
        ({"routes": [{"dst": "nowhere"}]}, "ipam.routes[0].dst"),
        ({"resolvConf": 5}, "ipam.resolvConf: 5 is not a string"),
        ({"kubeConfig": ["a"]}, "ipam.kubeConfig"),
        ({"etcdConfig": None}, "ipam.etcdConfig: missing"),
        ({"etcdConfig": "http://x"}, "ipam.etcdConfig: \"http://x\" is not an object"),
        ({"etcdConfig": {"etcdURL": ""}}, "ipam.etcdConfig.etcdURL: missing"),
        ({"etcdConfig": {"etcdURL": "http://a:2379", "etcdCAFile": "x"}}, 'ipam.etcdConfig: unknown key(s) "etcdCAFile"'),
        ({"etcdConfig": {"etcdURL": "http://a", "etcdTrustedCAFileFile": "a", "etcdTrustedCAFile": "b"}}, "disagree"),
    ],
)
def test_bad_keys_are_refused_by_name(ipam, fragment):
    err = error_of(seed(**ipam))
    assert err.code == INVALID_NETWORK_CONFIG
    assert fragment in err.msg, err.msg


def test_ipam_name_is_ignored_but_the_network_name_is_required():
    assert config.load(seed(name="anything")).network == "k8snet2"
    conf = seed()
    conf["name"] = ""
    assert "name" in error_of(conf).msg


def test_ipam_section_must_exist():
    assert "missing 'ipam'" in error_of({"name": "n", "cniVersion": "1.0.0"}).msg
    assert 'ipam: "x" is not an object' in error_of({"name": "n", "ipam": "x"}).msg


def test_the_runtime_ip_ranges_capability_is_refused():
    conf = seed()
    conf["runtimeConfig"] = {"ipRanges": [[{"subnet": "10.1.0.0/24"}]]}
    assert "runtimeConfig.ipRanges" in error_of(conf).msg


def test_the_correct_spelling_of_the_ca_key_is_accepted_too():
    etcd = {"etcdURL": "https://a:2379", "etcdTrustedCAFile": "/ca.pem"}
    assert config.load(seed(etcdConfig=etcd)).etcd.ca_file == "/ca.pem"


def test_location_needs_only_the_subnet_and_etcd():
    conf = {"name": "k8snet2", "ipam": {"subnet": "10.188.0.0/16", "fixedStart": "junk",
                                        "etcdConfig": {"etcdURL": "http://127.0.0.1:2379"}}}
    location = config.location(conf)
    assert (location.network, str(location.subnet)) == ("k8snet2", "10.188.0.0/16")
    assert location == config.load(seed(etcdConfig={"etcdURL": "http://127.0.0.1:2379"})).location
