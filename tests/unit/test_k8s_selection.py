"""multipy.k8s.selection: both forms of the networks annotation, the default-network override, and
the message every bad value gets."""

import json

import pytest

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.k8s.selection import (
    DEFAULT_NETWORK_ANNOTATION,
    NETWORKS_ANNOTATION,
    STATUS_ANNOTATION,
    Selection,
    parse_default_network,
    parse_networks,
)


def refused(value, namespace="db", annotation=NETWORKS_ANNOTATION) -> str:
    with pytest.raises(CNIError) as caught:
        parse_networks(value, namespace, annotation)
    assert caught.value.code == INVALID_NETWORK_CONFIG
    return caught.value.msg


def test_annotation_names():
    assert NETWORKS_ANNOTATION == "k8s.v1.cni.cncf.io/networks"
    assert DEFAULT_NETWORK_ANNOTATION == "v1.multus-cni.io/default-network"
    assert STATUS_ANNOTATION == "k8s.v1.cni.cncf.io/network-status"


# ---- comma form


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_an_empty_value_selects_nothing(value):
    assert parse_networks(value, "db") == []


def test_comma_form_with_namespaces_and_interfaces():
    got = parse_networks(" net-a, other/net-b@net7 ,macvlan.conf@eth1", "db")
    assert got == [
        Selection("net-a", "db"),
        Selection("net-b", "other", "net7"),
        Selection("macvlan.conf", "db", "eth1"),
    ]
    assert [s.ref for s in got] == ["db/net-a", "other/net-b", "db/macvlan.conf"]
    assert got[0].runtime_config == {} and got[0].cni_args == {} and got[0].default_route == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("net-a,,net-b", '"net-a,,net-b" has an empty item (a stray comma?)'),
        ("net-a,", '"net-a," has an empty item'),
        ("a/b/c", "item \"a/b/c\": more than one '/' (expected [namespace/]name[@interface])"),
        ("a@b@c", "item \"a@b@c\": more than one '@'"),
        (
            "Net_A",
            'item "Net_A": "name": "Net_A" is not a valid NetworkAttachmentDefinition name (a DNS-1123 subdomain',
        ),
        ("db/", 'item "db/": "name" is empty'),
        ("@eth1", 'item "@eth1": "name" is empty'),
        ("/net-a", 'item "/net-a": "namespace" is empty'),
        ("My.NS/net-a", 'item "My.NS/net-a": "namespace": "My.NS" is not a valid namespace (a DNS-1123 label'),
        ("net-a@", 'item "net-a@": invalid "interface" \'\': interface name is empty'),
        (
            "net-a@averyveryverylongname",
            "invalid \"interface\" 'averyveryverylongname': interface name is longer than 15 bytes",
        ),
        ("net-a@..", "interface name may not be '.' or '..'"),
        ("net a", 'item "net a": "name": "net a" is not a valid'),
    ],
)
def test_comma_form_errors_name_the_annotation_and_the_item(value, message):
    msg = refused(value)
    assert msg.startswith(f"pod annotation {NETWORKS_ANNOTATION}: ")
    assert message in msg


def test_long_names_are_refused():
    assert parse_networks("a" * 253, "db")[0].name == "a" * 253
    assert "at most 253 characters" in refused("a" * 254)
    assert parse_networks(f"{'n' * 63}/net", "db")[0].namespace == "n" * 63
    assert "at most 63 characters" in refused(f"{'n' * 64}/net")


def test_the_interface_error_is_a_config_error_not_an_environment_error():
    # env.validate_ifname says 4 (environment); here the pod's configuration is at fault.
    with pytest.raises(CNIError) as caught:
        parse_networks("net-a@a:b", "db")
    assert caught.value.code == INVALID_NETWORK_CONFIG
    assert "invalid \"interface\" 'a:b': interface name may not contain" in caught.value.msg


# ---- JSON form


def test_json_form_with_every_key():
    value = json.dumps(
        [
            {
                "name": "macvlan-conf",
                "namespace": "net-ns",
                "interface": "net1",
                "ips": ["10.188.0.219/24", "fd00::219/64"],
                "mac": "c2:b0:57:49:47:f1",
                "default-route": ["10.188.0.1", "fd00::1"],
                "cni-args": {"foo": "bar", "n": 1},
                "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
                "bandwidth": {"ingressRate": 1000, "ingressBurst": 100},
                "infiniband-guid": "c2:11:22:33:44:55:66:77",
                "deviceID": "0000:03:00.1",
            },
            {"name": "plain"},
        ]
    )
    first, second = parse_networks(value, "db")
    assert first == Selection(
        name="macvlan-conf",
        namespace="net-ns",
        interface="net1",
        runtime_config={
            "ips": ["10.188.0.219/24", "fd00::219/64"],
            "mac": "c2:b0:57:49:47:f1",
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1000, "ingressBurst": 100},
            "infinibandGUID": "c2:11:22:33:44:55:66:77",
            "deviceID": "0000:03:00.1",
        },
        cni_args={"foo": "bar", "n": 1},
        default_route=("10.188.0.1", "fd00::1"),
    )
    assert second == Selection("plain", "db")


def test_json_form_is_chosen_by_brackets_braces_or_quotes():
    # A single object is not a list: the JSON form is recognised, then refused clearly.
    assert "expected a JSON list of network selection objects, got an object" in refused('{"name": "a"}')
    assert "expected a JSON list of network selection objects, got a string" in refused('"a"')
    assert parse_networks('  [ {"name": "a"} ]  ', "db") == [Selection("a", "db")]
    assert parse_networks("[]", "db") == []


def test_json_zero_values_mean_not_given():
    (got,) = parse_networks(
        json.dumps(
            [
                {
                    "name": "a",
                    "namespace": "",
                    "interface": "",
                    "ips": [],
                    "mac": "",
                    "cni-args": None,
                    "default-route": None,
                    "bandwidth": {},
                    "deviceID": "",
                }
            ]
        ),
        "db",
    )
    assert got == Selection("a", "db")


def test_the_default_route_is_normalised_and_one_per_family():
    (got,) = parse_networks('[{"name": "a", "default-route": ["FD00:0:0::1"]}]', "db")
    assert got.default_route == ("fd00::1",)


@pytest.mark.parametrize(
    ("element", "message"),
    [
        ({"name": "a", "ips": ["10.1.1.300/24"]}, '"ips": "10.1.1.300/24" is not an IP address with a prefix length'),
        ({"name": "a", "ips": ["10.1.1.5"]}, '"ips": "10.1.1.5" is not an IP address with a prefix length'),
        ({"name": "a", "ips": ["10.1.1.5/255.255.255.0"]}, '"ips": "10.1.1.5/255.255.255.0" is not an IP'),
        ({"name": "a", "ips": ["fe80::1%eth0/64"]}, '"ips": "fe80::1%eth0/64" is not an IP'),
        ({"name": "a", "ips": ["10.1.1.5/33"]}, '"ips": "10.1.1.5/33" is not an IP'),
        ({"name": "a", "ips": "10.1.1.5/24"}, '"ips": "10.1.1.5/24" is not a list of strings'),
        ({"name": "a", "ips": [5]}, '"ips": 5 is not a string'),
        ({"name": "a", "mac": "c2:b0:57:49:47"}, '"mac": "c2:b0:57:49:47" is not a MAC address'),
        ({"name": "a", "mac": "c2-b0-57-49-47-f1"}, '"mac": "c2-b0-57-49-47-f1" is not a MAC address'),
        ({"name": "a", "mac": "01:00:5e:00:00:01"}, '"mac": "01:00:5e:00:00:01" is a multicast address'),
        ({"name": "a", "mac": "ff:ff:ff:ff:ff:ff"}, "is a multicast address"),
        ({"name": "a", "mac": "00:00:00:00:00:00"}, "is the all-zero address"),
        ({"name": "a", "mac": 42}, '"mac": 42 is not a string'),
        ({"name": "a", "default-route": ["10.1.1.1", "10.1.1.2"]}, "has two IPv4 gateways"),
        ({"name": "a", "default-route": ["fd00::1", "fd00::2"]}, "has two IPv6 gateways"),
        ({"name": "a", "default-route": ["10.1.1.0/24"]}, '"default-route": "10.1.1.0/24" is not an IP address'),
        ({"name": "a", "default-route": "10.1.1.1"}, '"default-route": "10.1.1.1" is not a list of strings'),
        ({"name": "a", "cni-args": ["x"]}, '"cni-args": ["x"] is not a JSON object'),
        ({"name": "a", "bandwidth": 5}, '"bandwidth": 5 is not a JSON object'),
        ({"name": "a", "portMappings": {"hostPort": 1}}, '"portMappings": {"hostPort":1} is not a list'),
        ({"name": "a", "portMappings": [80]}, '"portMappings"[0]: 80 is not a port mapping object'),
        ({"name": "a", "infiniband-guid": 1}, '"infiniband-guid": 1 is not a string'),
        ({"name": "a", "deviceID": True}, '"deviceID": true is not a string'),
        ({"name": "a", "interface": "net1 "}, "may not contain '/', ':' or whitespace"),
        ({"name": "a", "interface": 1}, '"interface": 1 is not a string'),
        ({"name": "a", "namespace": "Kube_System"}, '"namespace": "Kube_System" is not a valid namespace'),
        ({"name": "A"}, '"name": "A" is not a valid NetworkAttachmentDefinition name'),
        ({"name": 7}, '"name": 7 is not a string'),
        ({"namespace": "db"}, '"name" is missing'),
        ({"name": None}, '"name" is missing'),
        ({"name": "a", "ip": ["10.1.1.5/24"]}, 'unknown key "ip" (did you mean "ips"?); the keys are name, namespace'),
        ({"name": "a", "default_route": []}, 'unknown key "default_route" (did you mean "default-route"?)'),
        ({"name": "a", "zzz": 1}, 'unknown key "zzz"; the keys are'),
    ],
)
def test_json_errors_name_the_annotation_element_key_and_value(element, message):
    value = json.dumps([{"name": "fine"}, element])
    msg = refused(value)
    assert msg.startswith(f"pod annotation {NETWORKS_ANNOTATION}: element 1: "), msg
    assert message in msg, msg


def test_the_example_message_in_full():
    msg = refused('[{"name": "a", "ips": ["10.1.1.5/24"]}, {"name": "b", "ips": ["10.1.1.300/24"]}]')
    assert msg == (
        'pod annotation k8s.v1.cni.cncf.io/networks: element 1: "ips": "10.1.1.300/24" '
        "is not an IP address with a prefix length"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('[{"name": "a"}', "not valid JSON: "),
        ('["a"]', 'element 0: expected a network selection object, got a string "a"'),
        ("[null]", "element 0: expected a network selection object, got null"),
        ("[[]]", "element 0: expected a network selection object, got a list []"),
        ('"unterminated', "not valid JSON"),
    ],
)
def test_malformed_json_names_the_annotation(value, message):
    msg = refused(value)
    assert msg.startswith(f"pod annotation {NETWORKS_ANNOTATION}: ")
    assert message in msg


def test_the_annotation_named_is_the_one_parsed():
    msg = refused("Bad", annotation="example.com/extra-networks")
    assert msg.startswith("pod annotation example.com/extra-networks: ")


# ---- default network


def test_default_network_in_both_forms():
    assert parse_default_network("flannel-conf", "db") == Selection("flannel-conf", "db")
    assert parse_default_network(" kube-system/flannel-conf ", "db") == Selection("flannel-conf", "kube-system")
    got = parse_default_network('[{"name": "calico", "namespace": "kube-system", "ips": ["10.2.0.5/16"]}]', "db")
    assert got == Selection("calico", "kube-system", runtime_config={"ips": ["10.2.0.5/16"]})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", '"" names 0 networks; the default network must be exactly one'),
        ("[]", "names 0 networks"),
        ("a, b", '"a, b" names 2 networks'),
        ('[{"name": "a"}, {"name": "b"}]', "names 2 networks"),
        ("a@eth1", 'network db/a: "interface": "eth1" is not allowed: the default network always gets the runtime'),
        ('[{"name": "a", "interface": "eth9"}]', '"interface": "eth9" is not allowed'),
        ("A", 'item "A": "name": "A" is not a valid'),
    ],
)
def test_default_network_errors(value, message):
    with pytest.raises(CNIError) as caught:
        parse_default_network(value, "db")
    assert caught.value.code == INVALID_NETWORK_CONFIG
    assert caught.value.msg.startswith(f"pod annotation {DEFAULT_NETWORK_ANNOTATION}: ")
    assert message in caught.value.msg


def test_selections_do_not_share_state():
    value = '[{"name": "a", "cni-args": {"k": "v"}}]'
    first = parse_networks(value, "db")[0]
    first.cni_args["k"] = "changed"
    assert parse_networks(value, "db")[0].cni_args == {"k": "v"}
