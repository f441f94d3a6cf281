"""Every delegate's conf checked against the schema its native plugin declares: by the loader (once,
stamped), on ADD before any delegate runs, and by `multipy validate`, for a multus conf and for
NetworkAttachmentDefinition files. A conf that cannot be checked is said to be "not checked"."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from delegates.bridge import config as bridge_config
from delegates.host_local import config as host_local_config
from delegates.kube_ipam import config as kube_ipam_config
from delegates.macvlan import config as macvlan_config
from multipy import entry
from multipy.cli.commands import cli
from multipy.cni import skel
from multipy.cni.env import Environment
from multipy.cni.errors import CNIError
from multipy.config import multus, plugin_schemas, schema
from multipy.config.plugin_schemas import ConfSchema
from multipy.plugins.contract import DELEGATE_GROUP, IPAM_GROUP
from multipy.plugins.registry import Registry

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "conf" / "10-multus.conf"
REGISTRY = Registry()  # the installed entry points: the built-ins, as a runtime finds them


def seed() -> dict:
    return json.loads(SEED.read_text())


def texts(doc: dict) -> list[str]:
    return [str(p) for p in multus.findings(doc, schema_for=REGISTRY.schema_for).problems]


# Each of the issue's four errors: how it is made in the seed's conf, where it is, what is said.
def bad_fixed_start(doc):
    doc["delegates"][1]["ipam"]["fixedStart"] = "not-an-ip"


def unknown_kube_ipam_key(doc):
    doc["delegates"][1]["ipam"]["foo"] = 1


def bad_macvlan_mode(doc):
    doc["delegates"][1]["mode"] = "bogus"


def string_flannel_mtu(doc):
    doc["delegates"][0]["delegate"]["mtu"] = "1400"


SEED_ERRORS = {
    "fixedStart": (bad_fixed_start, "$.delegates[1].ipam.fixedStart", "'not-an-ip' is not an IPv4 address"),
    "unknown key": (unknown_kube_ipam_key, "$.delegates[1].ipam.foo", "unknown key"),
    "mode": (bad_macvlan_mode, "$.delegates[1].mode",
             "'bogus' is not one of ['bridge', 'private', 'vepa', 'passthru']"),
    "mtu": (string_flannel_mtu, "$.delegates[0].delegate.mtu", "'1400' is not of type 'integer'"),
}  # fmt: skip


def broken_seed(name: str) -> dict:
    doc = seed()
    SEED_ERRORS[name][0](doc)
    return doc


# -- the loader


def test_the_seed_conf_passes_every_delegate_schema():
    found = multus.findings(seed(), schema_for=REGISTRY.schema_for)
    assert (found.problems, found.unchecked) == ([], [])


@pytest.mark.parametrize("name", SEED_ERRORS)
def test_the_loader_names_the_path_and_the_value(name):
    _, path, message = SEED_ERRORS[name]
    assert texts(broken_seed(name)) == [f"{path}: {message}"]


@pytest.mark.parametrize("name", SEED_ERRORS)
def test_load_refuses_with_code_7(name):
    with pytest.raises(CNIError) as caught:
        multus.load(broken_seed(name), schema_for=REGISTRY.schema_for)
    _, path, message = SEED_ERRORS[name]
    assert caught.value.code == 7
    assert f"{path}: {message}" in caught.value.msg


def test_without_a_lookup_only_the_multus_conf_is_checked():
    # Callers that do not hand in a lookup (tools reading a conf) keep what they had.
    assert multus.problems(broken_seed("fixedStart")) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["delegates"][1].update(mtu=50),
         "$.delegates[1].mtu: 50 is out of range (0 for the master's MTU, or at least 68)"),
        (lambda d: d["delegates"][1].update(mac="02:42:zz:00:00:01"),
         "$.delegates[1].mac: '02:42:zz:00:00:01' is not a MAC address (6 hex octets such as 02:42:ac:11:00:02)"),
        (lambda d: d["delegates"][1]["ipam"].update(subnet="10.188.0.0"),
         "$.delegates[1].ipam.subnet: '10.188.0.0' is not an address with a prefix length "
         '(CIDR notation, such as "10.1.2.0/24")'),
        (lambda d: d["delegates"][1]["ipam"].update(gateway="fd00::1"),
         "$.delegates[1].ipam.gateway: 'fd00::1' is not an IPv4 address"),
        (lambda d: d["delegates"][1]["ipam"]["routes"].append({"dst": "10.0.0.0/8", "gw": "nope"}),
         "$.delegates[1].ipam.routes[1].gw: 'nope' is not an IP address"),
        (lambda d: d["delegates"][1]["ipam"]["etcdConfig"].update(etcdKey="/k"),
         "$.delegates[1].ipam.etcdConfig.etcdKey: unknown key"),
        (lambda d: d["delegates"][1]["ipam"].pop("subnet"),
         "$.delegates[1].ipam: 'subnet' is a required property"),
        (lambda d: d["delegates"][0]["delegate"].update(name="x"),
         "$.delegates[0].delegate.name: 'x' must not be set: flannel gives its delegate the network's name"),
    ],
    ids=["macvlan mtu", "mac", "subnet", "gateway family", "route gw", "etcd key", "no subnet", "flannel name"],
)
def test_more_schema_messages(mutate, expected):
    doc = seed()
    mutate(doc)
    assert texts(doc) == [expected]


def test_an_ipv6_subnet_wants_ipv6_bounds():
    doc = seed()
    doc["delegates"][1]["ipam"].update(subnet="fd00::/64", fixedStart="fd00::10", fixedEnd="fd00::ff",
                                       rangeStart="10.188.1.0", rangeEnd="", gateway="fd00::1")  # fmt: skip
    assert texts(doc) == ["$.delegates[1].ipam.rangeStart: '10.188.1.0' is not an IPv6 address"]


def test_every_problem_of_every_delegate_is_listed():
    doc = seed()
    for mutate, _, _ in SEED_ERRORS.values():
        mutate(doc)
    assert sorted(texts(doc)) == sorted(f"{path}: {message}" for _, path, message in SEED_ERRORS.values())


def test_a_conflist_plugin_is_checked_at_its_own_path():
    doc = seed()
    macvlan = doc["delegates"][1]
    doc["delegates"][1] = {"name": macvlan.pop("name"), "plugins": [dict(macvlan, mode="bogus")]}
    assert [p.path for p in multus.findings(doc, schema_for=REGISTRY.schema_for).problems] == [
        "$.delegates[1].plugins[0].mode"
    ]


def test_a_cluster_network_file_is_checked_and_named(tmp_path):
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    flannel = dict(seed()["delegates"][0], cniVersion="0.3.1")
    flannel["delegate"] = {"mtu": "1400"}
    (conf_dir / "10-flannel.conf").write_text(json.dumps(flannel))
    doc = {"cniVersion": "0.3.1", "name": "m", "type": "multus-cni", "confDir": str(conf_dir),
           "clusterNetwork": "k8snet1"}  # fmt: skip
    assert texts(doc) == ["$.clusterNetwork: 'k8snet1': $.delegate.mtu: '1400' is not of type 'integer'"]


# -- what is not checked


class SchemaLess:
    """A third-party plugin that declares no config_schema."""

    supported_versions = ("1.0.0",)

    def __init__(self, services):
        pass


def with_delegate(entry: dict, **top) -> dict:
    doc = seed()
    doc["delegates"].append(entry)
    doc.update(top)
    return doc


def test_a_type_without_a_native_plugin_is_not_checked():
    found = multus.findings(with_delegate({"name": "p", "type": "ptp", "mtu": "x"}), schema_for=REGISTRY.schema_for)
    assert found.problems == []
    assert [str(p) for p in found.unchecked] == [
        "$.delegates[2]: not checked: type 'ptp' has no native plugin: it runs as a binary"
    ]


def test_a_type_in_binary_delegates_is_not_checked_nor_its_ipam():
    doc = broken_seed("fixedStart")
    doc["binaryDelegates"] = ["macvlan"]
    found = multus.findings(doc, schema_for=REGISTRY.schema_for)
    assert found.problems == []  # the Go macvlan runs the kube-ipam binary: not ours to judge
    assert [str(p) for p in found.unchecked] == [
        "$.delegates[1]: not checked: type 'macvlan' is in binaryDelegates: it runs as a binary"
    ]


def test_the_ipam_of_a_native_plugin_may_run_as_a_binary():
    doc = seed()
    doc["delegates"][1]["ipam"] = {"type": "dhcp"}
    found = multus.findings(doc, schema_for=REGISTRY.schema_for)
    assert [str(p) for p in found.unchecked] == [
        "$.delegates[1].ipam: not checked: type 'dhcp' has no native plugin: it runs as a binary"
    ]


def test_a_native_plugin_without_a_schema_is_not_checked():
    registry = Registry(extra={DELEGATE_GROUP: {"example-dummy": SchemaLess}})
    doc = with_delegate({"name": "example", "type": "example-dummy", "address": 5})
    found = multus.findings(doc, schema_for=registry.schema_for)
    assert found.problems == []
    assert [str(p) for p in found.unchecked] == [
        "$.delegates[2]: not checked: type 'example-dummy' has a native plugin without a config schema"
    ]


def test_a_schema_that_cannot_be_read_is_a_problem_at_the_type(tmp_path):
    class Broken(SchemaLess):
        config_schema = str(tmp_path / "missing.schema.json")

    registry = Registry(extra={DELEGATE_GROUP: {"broken": Broken}})
    found = multus.findings(with_delegate({"name": "b", "type": "broken"}), schema_for=registry.schema_for)
    assert [p.path for p in found.problems] == ["$.delegates[2].type"]
    assert "declares config_schema" in found.problems[0].message and "cannot be read" in found.problems[0].message


def test_an_invalid_schema_is_a_problem_not_a_crash(tmp_path):
    path = tmp_path / "bad.schema.json"
    path.write_text(json.dumps({"type": "no-such-type"}))

    class Invalid(SchemaLess):
        config_schema = str(path)

    registry = Registry(extra={DELEGATE_GROUP: {"invalid": Invalid}})
    found = multus.findings(with_delegate({"name": "i", "type": "invalid"}), schema_for=registry.schema_for)
    assert [p.path for p in found.problems] == ["$.delegates[2]"]
    assert "the schema its plugin declares is invalid" in found.problems[0].message


def test_registry_schema_for():
    registry = Registry(extra={DELEGATE_GROUP: {"schema-less": SchemaLess}})
    assert registry.schema_for(DELEGATE_GROUP, "no-such-type") == ConfSchema(native=False)
    assert registry.schema_for(DELEGATE_GROUP, "schema-less") == ConfSchema(native=True)
    found = registry.schema_for(IPAM_GROUP, "kube-ipam")
    assert found.native and found.schema["title"].startswith("kube-ipam")


def test_config_groups_are_the_entry_point_groups():
    # multipy/config may not import multipy/plugins, so it spells the groups itself.
    assert (plugin_schemas.DELEGATE_GROUP, plugin_schemas.IPAM_GROUP) == (DELEGATE_GROUP, IPAM_GROUP)


@pytest.mark.parametrize("plugin_type", ["bridge", "flannel", "loopback", "macvlan"])
def test_every_builtin_delegate_declares_a_schema(plugin_type):
    assert REGISTRY.schema_for(DELEGATE_GROUP, plugin_type).schema is not None


@pytest.mark.parametrize("plugin_type", ["host-local", "kube-ipam"])
def test_every_builtin_ipam_declares_a_schema(plugin_type):
    assert REGISTRY.schema_for(IPAM_GROUP, plugin_type).schema is not None


# -- the stamp


def counting(lookup):
    calls = []

    def schema_for(group, plugin_type):
        calls.append(plugin_type)
        return lookup(group, plugin_type)

    return schema_for, calls


def test_a_checked_conf_is_stamped_with_its_delegate_schemas(tmp_path):
    stamps = tmp_path / "validated"
    multus.load(seed(), stamp_dir=str(stamps), schema_for=REGISTRY.schema_for)
    first = set(os.listdir(stamps))
    assert len(first) == 3  # the multus conf; each delegate's plugin confs
    multus.load(seed(), stamp_dir=str(stamps), schema_for=REGISTRY.schema_for)
    assert set(os.listdir(stamps)) == first


def test_a_changed_delegate_schema_is_checked_again(tmp_path):
    stamps = str(tmp_path / "validated")
    multus.load(seed(), stamp_dir=stamps, schema_for=REGISTRY.schema_for)

    def stricter(group, plugin_type):
        found = REGISTRY.schema_for(group, plugin_type)
        if plugin_type != "macvlan":
            return found
        return ConfSchema(True, dict(found.schema, properties=dict(found.schema["properties"], master={"type": "integer"})))

    with pytest.raises(CNIError) as caught:
        multus.load(seed(), stamp_dir=stamps, schema_for=stricter)
    assert "$.delegates[1].master: 'eth0' is not of type 'integer'" in caught.value.msg


def test_an_invalid_delegate_conf_is_never_stamped(tmp_path):
    stamps = tmp_path / "validated"
    doc = broken_seed("mode")
    for _ in range(2):
        with pytest.raises(CNIError):
            multus.load(doc, stamp_dir=str(stamps), schema_for=REGISTRY.schema_for)
    assert len(os.listdir(stamps)) == 2  # the multus conf and the flannel delegate passed; macvlan did not


_LOAD_SCRIPT = """
import json, sys
from multipy.config import multus
from multipy.plugins.registry import Registry
doc = json.load(open(sys.argv[1]))
multus.load(doc, stamp_dir=sys.argv[2], schema_for=Registry().schema_for)
print(json.dumps({"jsonschema": "jsonschema" in sys.modules}))
"""


def test_a_stamped_conf_skips_jsonschema_for_its_delegates_too(tmp_path):
    stamps = tmp_path / "validated"

    def load() -> bool:
        out = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, str(SEED), str(stamps)],
                             capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
        return json.loads(out.stdout)["jsonschema"]

    assert load() is True
    assert load() is False


# -- ADD through the CNI entry


def add(doc: dict, tmp_path) -> tuple[int, dict]:
    doc = dict(doc, cniDir=str(tmp_path / "cni"), binDir=str(tmp_path / "bin"))
    environ = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/run/netns/no-such-pod",
               "CNI_IFNAME": "eth0", "CNI_ARGS": "IgnoreUnknown=1", "CNI_PATH": str(tmp_path / "bin")}  # fmt: skip
    out = io.StringIO()
    code = skel.run(entry.build, environ=environ, stdin=io.BytesIO(json.dumps(doc).encode()), stdout=out)
    return code, json.loads(out.getvalue())


@pytest.mark.parametrize("name", SEED_ERRORS)
def test_add_fails_with_code_7_before_any_delegate_runs(name, tmp_path):
    code, error = add(broken_seed(name), tmp_path)
    _, path, message = SEED_ERRORS[name]
    assert (code, error["code"]) == (1, 7)
    assert f"{path}: {message}" in error["msg"]
    # Nothing ran: no attachment record was written (it is written before the first delegate).
    cni_dir = tmp_path / "cni"
    assert not cni_dir.exists() or [n for n in os.listdir(cni_dir) if n != "internal"] == []


# -- multipy validate


def invoke(*args, registry: Registry | None = None, monkeypatch=None):
    if registry is not None:
        monkeypatch.setattr(cli, "registry", registry)
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def write(tmp_path, name: str, content) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2))
    return path


@pytest.mark.parametrize("name", SEED_ERRORS)
def test_validate_names_the_path_and_the_value(name, tmp_path):
    path = write(tmp_path, "10-multus.conf", broken_seed(name))
    result = invoke("validate", str(path))
    _, where, message = SEED_ERRORS[name]
    assert result.exit_code == 1
    assert result.stdout == f"{path}: {where}: {message}\n"
    assert f"{path}: 1 problem(s)" in result.stderr


def test_validate_as_json(tmp_path):
    path = write(tmp_path, "10-multus.conf", broken_seed("fixedStart"))
    result = invoke("validate", "-o", "json", str(path))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and doc["unchecked"] == []
    assert doc["problems"] == [{"path": "$.delegates[1].ipam.fixedStart",
                                "message": "'not-an-ip' is not an IPv4 address"}]  # fmt: skip


def test_validate_says_a_schema_less_third_party_type_is_not_checked(tmp_path, monkeypatch):
    path = write(tmp_path, "10-multus.conf", with_delegate({"name": "example", "type": "example-dummy"}))
    registry = Registry(extra={DELEGATE_GROUP: {"example-dummy": SchemaLess}})
    result = invoke("validate", str(path), registry=registry, monkeypatch=monkeypatch)
    assert result.exit_code == 0  # nothing wrong was found: not a problem, and not "valid" either
    assert result.stdout.splitlines() == [
        f"{path}: $.delegates[2]: not checked: type 'example-dummy' has a native plugin without a config schema",
        f"{path}: no problems in what was checked; 1 conf(s) not checked",
    ]
    assert not any(line.endswith(": valid") for line in result.stdout.splitlines())
    doc = json.loads(invoke("validate", "-o", "json", str(path)).stdout)
    assert doc["valid"] is False and doc["problems"] == []
    assert [u["path"] for u in doc["unchecked"]] == ["$.delegates[2]"]


def test_validate_a_schema_less_type_beside_a_problem(tmp_path, monkeypatch):
    doc = broken_seed("mode")
    doc["delegates"].append({"name": "example", "type": "example-dummy"})
    path = write(tmp_path, "10-multus.conf", doc)
    registry = Registry(extra={DELEGATE_GROUP: {"example-dummy": SchemaLess}})
    result = invoke("validate", str(path), registry=registry, monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert "not checked: type 'example-dummy'" in result.stdout and "$.delegates[1].mode" in result.stdout


# -- NetworkAttachmentDefinitions


def nad(name: str, config: dict) -> dict:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"config": json.dumps(config)},
    }


def macvlan_nad(mutate=None) -> dict:
    plugin = {k: v for k, v in seed()["delegates"][1].items() if k != "name"}
    if mutate is not None:
        mutate({"delegates": [None, plugin]})
    return nad("macvlan-net", {"cniVersion": "0.3.1", "name": "macvlan-net", "plugins": [plugin]})


def flannel_nad(mutate=None) -> dict:
    flannel = {k: v for k, v in seed()["delegates"][0].items() if k not in ("name", "masterplugin")}
    if mutate is not None:
        mutate({"delegates": [flannel]})
    return nad("flannel-net", dict(flannel, cniVersion="0.3.1"))  # named by the NAD, as Multus does


NAD_ERRORS = {
    "fixedStart": (macvlan_nad, "$.spec.config.plugins[0].ipam.fixedStart", "'not-an-ip' is not an IPv4 address"),
    "unknown key": (macvlan_nad, "$.spec.config.plugins[0].ipam.foo", "unknown key"),
    "mode": (macvlan_nad, "$.spec.config.plugins[0].mode",
             "'bogus' is not one of ['bridge', 'private', 'vepa', 'passthru']"),
    "mtu": (flannel_nad, "$.spec.config.delegate.mtu", "'1400' is not of type 'integer'"),
}  # fmt: skip


@pytest.mark.parametrize("form", ["yaml", "json"])
@pytest.mark.parametrize("name", NAD_ERRORS)
def test_validate_a_nad_file(name, form, tmp_path):
    make, where, message = NAD_ERRORS[name]
    doc = make(SEED_ERRORS[name][0])
    text = yaml.safe_dump(doc) if form == "yaml" else json.dumps(doc)
    path = write(tmp_path, f"nad.{form}", text)
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout == f"{path}: {where}: {message}\n"


@pytest.mark.parametrize("make", [macvlan_nad, flannel_nad], ids=["macvlan", "flannel"])
def test_validate_a_good_nad(make, tmp_path):
    path = write(tmp_path, "nad.yaml", yaml.safe_dump(make()))
    result = invoke("validate", str(path))
    assert (result.exit_code, result.stdout) == (0, f"{path}: valid\n")


def test_validate_a_stream_of_nads_and_other_objects(tmp_path):
    docs = [macvlan_nad(bad_macvlan_mode), {"apiVersion": "v1", "kind": "ConfigMap"}, flannel_nad(string_flannel_mtu)]
    path = write(tmp_path, "nads.yaml", yaml.safe_dump_all(docs))
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}: $[1]: not checked: kind 'ConfigMap' is not a NetworkAttachmentDefinition",
        f"{path}: $[0].spec.config.plugins[0].mode: 'bogus' is not one of ['bridge', 'private', 'vepa', 'passthru']",
        f"{path}: $[2].spec.config.delegate.mtu: '1400' is not of type 'integer'",
    ]


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        ({"config": "{"}, "$.spec.config: not valid JSON: "),
        ({"config": 5}, "$.spec.config: 5 is not a string (the conf or conflist as JSON text)"),
        ({"config": json.dumps({"cniVersion": "0.3.1", "plugins": []})}, "$.spec.config.plugins: [] should be non-empty"),
        ({"config": json.dumps({"cniVersion": "9.9.9", "type": "macvlan"})}, "$.spec.config.cniVersion: '9.9.9' is not one of"),
        (None, "$.spec: None is not an object holding 'config'"),
    ],
    ids=["not json", "not a string", "no plugins", "bad version", "no spec"],
)
def test_validate_a_broken_nad(spec, line, tmp_path):
    doc = nad("x", {})
    doc["spec"] = spec
    if spec is None:
        del doc["spec"]
    path = write(tmp_path, "nad.yaml", yaml.safe_dump(doc))
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{path}: {line}")


def test_a_nad_without_config_uses_conf_dir_and_is_not_checked(tmp_path):
    doc = nad("x", {})
    doc["spec"] = {}
    path = write(tmp_path, "nad.yaml", yaml.safe_dump(doc))
    result = invoke("validate", str(path))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith(f"{path}: $.spec.config: not checked: empty")


def test_a_yaml_file_that_is_no_nad_is_still_reported_as_bad_json(tmp_path):
    path = write(tmp_path, "x.yaml", "apiVersion: v1\nkind: ConfigMap\n")
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{path}: $: not valid JSON")


# -- the schemas state what the code checks: the code refuses what the schema refuses


def inv(command: str = "ADD") -> Environment:
    return Environment(command, "c0ffee", "/run/netns/pod", "eth0", "")


def kube_ipam(**ipam) -> dict:
    base = copy.deepcopy(seed()["delegates"][1]["ipam"])
    base.update(ipam)
    return {"cniVersion": "0.3.1", "name": "n", "type": "macvlan", "ipam": base}


def host_local(**ipam) -> dict:
    return {"cniVersion": "0.3.1", "name": "n", "type": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.1.2.0/24", **ipam}}  # fmt: skip


BOTH_REFUSE = [
    (IPAM_GROUP, "kube-ipam", kube_ipam(fixedStart="not-an-ip"), kube_ipam_config.load),
    (IPAM_GROUP, "kube-ipam", kube_ipam(foo=1), kube_ipam_config.load),
    (IPAM_GROUP, "kube-ipam", kube_ipam(ranges=[[{"subnet": "10.1.0.0/24"}]]), kube_ipam_config.load),
    (IPAM_GROUP, "kube-ipam", kube_ipam(subnet="10.188.0.0"), kube_ipam_config.load),
    (IPAM_GROUP, "kube-ipam", kube_ipam(gateway=7), kube_ipam_config.load),
    (IPAM_GROUP, "kube-ipam", kube_ipam(etcdConfig={"etcdURL": " "}), kube_ipam_config.load),
    (IPAM_GROUP, "kube-ipam", kube_ipam(routes=[{"gw": "10.188.0.1"}]), kube_ipam_config.load),
    (IPAM_GROUP, "host-local", host_local(rangeStart="10.1.2.x"), host_local_config.load),
    (IPAM_GROUP, "host-local", host_local(dataDir="relative"), host_local_config.load),
    (IPAM_GROUP, "host-local", host_local(ranges=[[]]), host_local_config.load),
    (IPAM_GROUP, "host-local", host_local(routes=[{"dst": "0.0.0.0/0", "mtu": -1}]), host_local_config.load),
    (DELEGATE_GROUP, "macvlan", {"cniVersion": "0.3.1", "name": "n", "mode": "bogus"}, macvlan_config.load),
    (DELEGATE_GROUP, "macvlan", {"cniVersion": "0.3.1", "name": "n", "mtu": "1400"}, macvlan_config.load),
    (DELEGATE_GROUP, "macvlan", {"cniVersion": "0.3.1", "name": "n", "mtu": 50}, macvlan_config.load),
    (DELEGATE_GROUP, "macvlan", {"cniVersion": "0.3.1", "name": "n", "mac": "nope"}, macvlan_config.load),
    (DELEGATE_GROUP, "bridge", {"name": "n", "mtu": 50}, lambda c: bridge_config.parse(c, inv())),
    (DELEGATE_GROUP, "bridge", {"name": "n", "bridge": "a-name-too-long-for-linux"},
     lambda c: bridge_config.parse(c, inv())),
    (DELEGATE_GROUP, "bridge", {"name": "n", "isGateway": "yes"}, lambda c: bridge_config.parse(c, inv())),
    (DELEGATE_GROUP, "bridge", {"name": "n", "dns": {"nameservers": "8.8.8.8"}},
     lambda c: bridge_config.parse(c, inv())),
]  # fmt: skip


@pytest.mark.parametrize(("group", "plugin_type", "conf", "load"), BOTH_REFUSE,
                         ids=[f"{t}-{i}" for i, (_, t, _, _) in enumerate(BOTH_REFUSE)])  # fmt: skip
def test_schema_and_code_refuse_alike(group, plugin_type, conf, load):
    declared = REGISTRY.schema_for(group, plugin_type).schema
    document, path = (conf["ipam"], "$.ipam") if group == IPAM_GROUP else (conf, "$")
    assert schema.problems(schema.Target(declared, document, path)), "the schema lets it through"
    with pytest.raises(CNIError) as caught:
        load(conf)
    assert caught.value.code == 7


def test_macvlan_modes_and_kube_ipam_keys_are_the_schemas():
    declared = REGISTRY.schema_for(DELEGATE_GROUP, "macvlan").schema
    assert macvlan_config.MODES == tuple(declared["properties"]["mode"]["enum"])
    declared = REGISTRY.schema_for(IPAM_GROUP, "kube-ipam").schema
    assert kube_ipam_config._IPAM_KEYS | {"ranges"} == set(declared["properties"])


# -- formats


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("ipv4", ["10.0.0.1", "::ffff:10.0.0.1"], ["10.0.0.256", "10.0.0.1/24", "fe80::1", "", "010.0.0.1"]),
        ("ipv6", ["fe80::1", "::"], ["fe80::1%eth0", "10.0.0.1", "::ffff:10.0.0.1", "fe80::/64"]),
        ("ip", ["10.0.0.1", "fd00::1"], ["x", "10.0.0.1/32"]),
        ("cidr", ["10.0.0.0/8", "10.0.0.5/8", "fd00::/64"], ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/x", "fe80::%1/64"]),
        ("mac", ["02:42:ac:11:00:02", "02-42-AC-11-00-02", "0242.ac11.0002"], ["02:42:ac:11:00", "02:42-ac:11:00:02"]),
    ],
)
def test_formats(fmt, good, bad):
    check, _ = schema.FORMATS[fmt]
    assert [v for v in good if not check(v)] == []
    assert [v for v in bad if check(v)] == []
    assert check(5)  # a non-string is `type`'s to refuse
