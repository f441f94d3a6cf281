"""multipy.config: the multus conf (problems/load), networks (from_dict) and confDir lookups."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.config import multus, network
from multipy.config.problems import ConfigError, Problem

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "conf" / "10-multus.conf"


def seed() -> dict:
    return json.loads(SEED.read_text())


def minimal(*delegates, version="1.0.0", **extra) -> dict:
    doc = {"cniVersion": version, "name": "multus", "type": "multus-cni", **extra}
    if delegates:
        doc["delegates"] = list(delegates)
    return doc


def deleg(name, type_="bridge", **extra) -> dict:
    return {"name": name, "type": type_, **extra}


def texts(doc) -> list[str]:
    return [str(p) for p in multus.problems(doc)]


def paths(doc) -> list[str]:
    return [p.path for p in multus.problems(doc)]


# ---- the seed conf --------------------------------------------------------------------


def test_seed_conf_loads():
    conf = multus.load(seed())
    assert conf.cni_version == "0.3.1"
    assert conf.name == "multus-demo"
    assert len(conf.delegates) == 2
    assert conf.master.network.name == "k8snet1"
    assert [d.master for d in conf.delegates] == [True, False]
    assert [d.network.name for d in conf.delegates] == ["k8snet1", "k8snet2"]
    assert [d.network.plugins[0]["type"] for d in conf.delegates] == ["flannel", "macvlan"]
    # The delegates carry no cniVersion: they inherit the conf's.
    for delegate in conf.delegates:
        assert delegate.network.cni_version == "0.3.1"
        assert delegate.network.source["cniVersion"] == "0.3.1"
        assert delegate.interface is None
    assert conf.delegates[1].network.source["ipam"]["type"] == "kube-ipam"
    assert conf.conf_dir == multus.DEFAULT_CONF_DIR
    assert conf.cni_dir == multus.DEFAULT_CNI_DIR
    assert conf.bin_dir == multus.DEFAULT_BIN_DIR
    assert conf.delegate_timeout == multus.DEFAULT_DELEGATE_TIMEOUT


def test_seed_conf_has_no_problems():
    assert multus.problems(seed()) == []


def test_load_does_not_modify_the_document():
    doc = seed()
    before = copy.deepcopy(doc)
    multus.load(doc)
    assert doc == before


def test_optional_keys_are_loaded():
    doc = minimal(
        deleg("a"),
        kubeconfig="/etc/kube.conf",
        confDir="/x/net.d",
        cniDir="/x/cni",
        binDir="/x/bin",
        logFile="/x/log",
        logLevel="debug",
        logToStderr=True,
        readinessindicatorfile="/run/ready",
        readinessTimeout=5,
        delegateTimeout=7.5,
        binaryDelegates=["bridge", "host-local"],
    )
    conf = multus.load(doc)
    assert (conf.kubeconfig, conf.conf_dir, conf.cni_dir, conf.bin_dir) == (
        "/etc/kube.conf",
        "/x/net.d",
        "/x/cni",
        "/x/bin",
    )
    assert (conf.log_file, conf.log_level, conf.log_to_stderr) == ("/x/log", "debug", True)
    assert (conf.readiness_file, conf.readiness_timeout, conf.delegate_timeout) == ("/run/ready", 5.0, 7.5)
    assert conf.binary_types == {"bridge", "host-local"}


def test_runtime_keys_are_not_unknown_keys():
    doc = seed()
    doc["runtimeConfig"] = {"portMappings": []}
    doc["prevResult"] = {"cniVersion": "0.3.1"}
    doc["args"] = {"cni": {"ips": ["10.0.0.1"]}}
    doc["cni.dev/valid-attachments"] = []
    doc["cni.dev/attachments"] = []
    assert multus.problems(doc) == []


@pytest.mark.parametrize("key", ["runtimeConfig", "prevResult", "args"])
def test_runtime_keys_must_be_objects(key):
    doc = seed()
    doc[key] = 5
    assert texts(doc) == [f"$.{key}: 5 is not an object"]


# ---- masterplugin ------------------------------------------------------------------------


def test_masterplugin_on_second_delegate_makes_it_master():
    doc = minimal(deleg("a"), deleg("b", masterplugin=True), deleg("c"))
    conf = multus.load(doc)
    assert conf.master.network.name == "b"
    assert [d.master for d in conf.delegates] == [False, True, False]


@pytest.mark.parametrize("flags", [(None, None), (False, False), (None, False)])
def test_no_masterplugin_makes_the_first_master(flags):
    delegates = [deleg(n) if f is None else deleg(n, masterplugin=f) for n, f in zip("ab", flags, strict=True)]
    conf = multus.load(minimal(*delegates))
    assert conf.master.network.name == "a"
    assert [d.master for d in conf.delegates] == [True, False]


def test_two_masters_is_a_problem_naming_both():
    doc = minimal(deleg("a"), deleg("b", masterplugin=True), deleg("c"), deleg("d", masterplugin=True))
    found = multus.problems(doc)
    assert len(found) == 1
    assert found[0].path == "$.delegates"
    assert "delegates[1]" in found[0].message and "delegates[3]" in found[0].message
    with pytest.raises(ConfigError) as info:
        multus.load(doc)
    assert info.value.code == INVALID_NETWORK_CONFIG


@pytest.mark.parametrize("value", ["yes", "true", 1, None, []])
def test_masterplugin_must_be_boolean(value):
    doc = seed()
    doc["delegates"][1]["masterplugin"] = value
    found = multus.problems(doc)
    assert [p.path for p in found] == ["$.delegates[1].masterplugin"]
    assert repr(value) in found[0].message or json.dumps(value) in found[0].message


# ---- delegates vs clusterNetwork -------------------------------------------------------------


def test_neither_delegates_nor_cluster_network():
    doc = minimal()
    assert texts(doc) == ["$: one of 'delegates' or 'clusterNetwork' must be set"]


def test_both_delegates_and_cluster_network():
    # As in Go Multus, clusterNetwork wins and the delegates are ignored, with a warning.
    doc = seed()
    doc["clusterNetwork"] = "/no/such/conf"
    assert [p.path for p in multus.problems(doc)] == ["$.clusterNetwork"]
    assert [str(w) for w in multus.warnings(doc)] == [
        "$.delegates: ignored: 'clusterNetwork' is set, and wins as in Go Multus"
    ]


def test_default_networks_without_cluster_network():
    doc = seed()
    doc["defaultNetworks"] = ["other"]
    assert texts(doc) == ["$.defaultNetworks: needs 'clusterNetwork'"]


def test_empty_delegates_list():
    assert paths(minimal(delegates=[])) == ["$.delegates"]


# ---- schema problems with JSON paths ---------------------------------------------------------


@pytest.mark.parametrize("key", ["thatkey", "masterplugin", "Delegates", "plugins"])
def test_unknown_top_level_key(key):
    doc = seed()
    doc[key] = 1
    assert texts(doc) == [f"$.{key}: unknown key"]


def test_several_unknown_keys_are_each_named():
    doc = seed()
    doc["aaa"] = 1
    doc["zzz"] = 2
    assert sorted(texts(doc)) == ["$.aaa: unknown key", "$.zzz: unknown key"]


@pytest.mark.parametrize(
    "mutate, path, value",
    [
        (lambda d: d.__setitem__("cniVersion", 1), "$.cniVersion", "1"),
        (lambda d: d.__setitem__("cniVersion", "9.9.9"), "$.cniVersion", "'9.9.9'"),
        (lambda d: d.__setitem__("name", "bad/name"), "$.name", "'bad/name'"),
        (lambda d: d.__setitem__("type", ""), "$.type", "''"),
        (lambda d: d.__setitem__("delegates", {}), "$.delegates", "{}"),
        (lambda d: d.__setitem__("readinessTimeout", "5"), "$.readinessTimeout", "'5'"),
        (lambda d: d.__setitem__("delegateTimeout", 0), "$.delegateTimeout", "0"),
        (lambda d: d.__setitem__("delegateTimeout", 241), "$.delegateTimeout", "241"),
        (lambda d: d.__setitem__("logLevel", "loud"), "$.logLevel", "'loud'"),
        (lambda d: d.__setitem__("binaryDelegates", "bridge"), "$.binaryDelegates", "'bridge'"),
        (lambda d: d.__setitem__("binaryDelegates", ["bridge", "bridge"]), "$.binaryDelegates", "['bridge', 'bridge']"),
        (lambda d: d.__setitem__("logToStderr", "yes"), "$.logToStderr", "'yes'"),
        (lambda d: d.__setitem__("capabilities", {"ips": "yes"}), "$.capabilities.ips", "'yes'"),
        (lambda d: d["delegates"][1].__setitem__("masterplugin", "yes"), "$.delegates[1].masterplugin", "'yes'"),
        (lambda d: d["delegates"][0].__setitem__("name", 5), "$.delegates[0].name", "5"),
        (lambda d: d["delegates"][0].__setitem__("cniVersion", "2.0.0"), "$.delegates[0].cniVersion", "'2.0.0'"),
        (lambda d: d["delegates"][1].__setitem__("type", 5), "$.delegates[1].type", "5"),
        (lambda d: d["delegates"][1].__setitem__("interface", 5), "$.delegates[1].interface", "5"),
        (lambda d: d["delegates"][1]["ipam"].__setitem__("type", "a/b"), "$.delegates[1].ipam.type", "'a/b'"),
    ],
)
def test_wrong_values_name_path_and_value(mutate, path, value):
    doc = seed()
    mutate(doc)
    found = multus.problems(doc)
    assert path in [p.path for p in found], found
    problem = next(p for p in found if p.path == path)
    assert value in problem.message
    with pytest.raises(ConfigError) as info:
        multus.load(doc)
    assert info.value.code == 7
    assert path in info.value.msg


@pytest.mark.parametrize("missing", ["cniVersion", "name", "type"])
def test_required_top_level_keys(missing):
    doc = seed()
    del doc[missing]
    found = multus.problems(doc)
    assert any(p.path == "$" and repr(missing) in p.message for p in found), found


@pytest.mark.parametrize("missing", ["name", "type"])
def test_delegate_without_name_or_type(missing):
    doc = seed()
    del doc["delegates"][1][missing]
    found = multus.problems(doc)
    assert [(p.path, repr(missing) in p.message) for p in found] == [("$.delegates[1]", True)]


@pytest.mark.parametrize("bad", ["../bridge", "a/b", "/usr/bin/bridge", ".", ".."])
def test_bad_plugin_type(bad):
    doc = seed()
    doc["delegates"][0]["type"] = bad
    found = multus.problems(doc)
    assert [p.path for p in found] == ["$.delegates[0].type"]


@pytest.mark.parametrize("bad", ["../bridge", "a/b"])
def test_bad_plugin_type_inside_a_conflist(bad):
    doc = minimal({"name": "chain", "plugins": [{"type": "bridge"}, {"type": bad}]})
    assert paths(doc) == ["$.delegates[0].plugins[1].type"]


# ---- conflist delegates ------------------------------------------------------------------------


def test_conflist_delegate_is_valid():
    chain = {
        "name": "chain",
        "cniVersion": "1.0.0",
        "plugins": [
            {"type": "bridge", "ipam": {"type": "host-local"}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    doc = minimal(deleg("primary"), chain)
    assert multus.problems(doc) == []
    conf = multus.load(doc)
    net = conf.delegates[1].network
    assert net.name == "chain"
    assert [p["type"] for p in net.plugins] == ["bridge", "portmap"]
    assert net.plugins[0]["type"] == "bridge"


def test_conflist_with_plugins_and_type_is_a_problem():
    doc = minimal(deleg("primary"), {"name": "chain", "type": "bridge", "plugins": [{"type": "bridge"}]})
    assert texts(doc) == ["$.delegates[1]: a conflist (with 'plugins') may not also have a 'type'"]


@pytest.mark.parametrize("plugins", [[], {}, "bridge"])
def test_conflist_plugins_must_be_a_non_empty_list(plugins):
    doc = minimal(deleg("primary"), {"name": "chain", "plugins": plugins})
    assert any(p.startswith("$.delegates[1].plugins") for p in paths(doc)), texts(doc)


def test_conflist_plugin_without_type():
    doc = minimal({"name": "chain", "plugins": [{"type": "bridge"}, {"capabilities": {}}]})
    assert paths(doc) == ["$.delegates[0].plugins[1]"]


# ---- interfaces ---------------------------------------------------------------------------------


def test_explicit_interfaces_are_kept():
    doc = minimal(deleg("a"), deleg("b", interface="ext0"), deleg("c", interface="storage"))
    conf = multus.load(doc)
    assert [d.interface for d in conf.delegates] == [None, "ext0", "storage"]


def test_interface_collision_names_both_delegates():
    doc = minimal(deleg("m"), deleg("a", interface="net5"), deleg("b"), deleg("c", interface="net5"))
    assert texts(doc) == ["$.delegates[3].interface: 'net5' is already used by delegates[1]"]


@pytest.mark.parametrize("bad", ["a" * 16, ".", "..", "a/b", "a:b", "a b", ""])
def test_bad_interface_name(bad):
    doc = minimal(deleg("a"), deleg("b", interface=bad))
    assert set(paths(doc)) == {"$.delegates[1].interface"}


def test_interface_name_limit_is_in_bytes():
    doc = minimal(deleg("a"), deleg("b", interface="é" * 8))
    assert paths(doc) == ["$.delegates[1].interface"]


# ---- cniVersion(s) --------------------------------------------------------------------------------


def test_delegate_version_overrides_the_inherited_one():
    conf = multus.load(minimal(deleg("a", cniVersion="0.4.0"), deleg("b"), version="1.1.0"))
    assert [d.network.cni_version for d in conf.delegates] == ["0.4.0", "1.1.0"]


def test_cni_versions_list_picks_the_highest_supported():
    entry = deleg("b", cniVersions=["0.3.1", "1.0.0", "9.9.9", "0.4.0"])
    conf = multus.load(minimal(deleg("a"), entry, version="0.3.1"))
    net = conf.delegates[1].network
    assert net.cni_version == "1.0.0"
    assert net.source["cniVersion"] == "1.0.0"


def test_cni_versions_beats_cni_version():
    net = network.from_dict({"name": "n", "type": "t", "cniVersion": "0.3.1", "cniVersions": ["1.1.0", "0.4.0"]})
    assert net.cni_version == "1.1.0"


def test_cni_versions_without_a_supported_one():
    doc = minimal(deleg("a"), deleg("b", cniVersions=["9.9.9", "2.0.0"]))
    found = multus.problems(doc)
    assert [p.path for p in found] == ["$.delegates[1].cniVersions"]
    assert "9.9.9" in found[0].message


# ---- network.from_dict ----------------------------------------------------------------------------


def test_from_dict_plain_plugin():
    doc = {"name": "n", "type": "bridge", "cniVersion": "0.4.0", "bridge": "br0"}
    net = network.from_dict(doc)
    assert (net.name, net.cni_version, net.plugins[0]["type"]) == ("n", "0.4.0", "bridge")
    assert net.plugins == (doc,)
    assert net.source == doc
    assert (net.disable_check, net.disable_gc) == (False, False)


def test_from_dict_does_not_modify_its_input():
    doc = {"name": "n", "type": "bridge"}
    net = network.from_dict(doc, "$", "1.0.0")
    assert doc == {"name": "n", "type": "bridge"}
    assert net.source == {"name": "n", "type": "bridge", "cniVersion": "1.0.0"}


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), ("true", True), ("TRUE", True), (False, False), ("false", False), ("yes", False), (1, False)],
)
def test_from_dict_disable_flags(value, expected):
    net = network.from_dict(
        {"name": "n", "cniVersion": "1.1.0", "disableCheck": value, "disableGC": value, "plugins": [{"type": "t"}]}
    )
    assert (net.disable_check, net.disable_gc) == (expected, expected)


@pytest.mark.parametrize(
    "doc, path",
    [
        (5, "$.delegates[2]"),
        ([], "$.delegates[2]"),
        ({"type": "t", "cniVersion": "1.0.0"}, "$.delegates[2].name"),
        ({"name": "", "type": "t", "cniVersion": "1.0.0"}, "$.delegates[2].name"),
        ({"name": 3, "type": "t", "cniVersion": "1.0.0"}, "$.delegates[2].name"),
        ({"name": "n", "cniVersion": "1.0.0"}, "$.delegates[2].type"),
        ({"name": "n", "type": "", "cniVersion": "1.0.0"}, "$.delegates[2].type"),
        ({"name": "n", "type": 5, "cniVersion": "1.0.0"}, "$.delegates[2].type"),
        ({"name": "n", "type": "t"}, "$.delegates[2]"),
        ({"name": "n", "type": "t", "cniVersion": "7.0.0"}, "$.delegates[2].cniVersion"),
        ({"name": "n", "cniVersion": "1.0.0", "plugins": []}, "$.delegates[2].plugins"),
        ({"name": "n", "cniVersion": "1.0.0", "plugins": "t"}, "$.delegates[2].plugins"),
        ({"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "a"}, {}]}, "$.delegates[2].plugins[1].type"),
        ({"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "a"}, "b"]}, "$.delegates[2].plugins[1].type"),
    ],
)
def test_from_dict_problems(doc, path):
    with pytest.raises(ConfigError) as info:
        network.from_dict(doc, "$.delegates[2]")
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert [p.path for p in info.value.problems] == [path]
    assert path in info.value.msg


# ---- ConfigError --------------------------------------------------------------------------------------


def test_config_error_is_code_7_naming_path_and_value():
    doc = seed()
    doc["delegates"][1]["masterplugin"] = "yes"
    with pytest.raises(ConfigError) as info:
        multus.load(doc)
    err = info.value
    assert isinstance(err, CNIError)
    assert err.code == 7
    assert "$.delegates[1].masterplugin" in err.msg
    assert "'yes'" in err.msg
    assert err.to_json("0.3.1")["code"] == 7


def test_config_error_counts_and_details_the_rest():
    problems = [Problem("$.a", "first"), Problem("$.b", "second"), Problem("$.c", "third")]
    err = ConfigError(problems, source="/etc/x.conf")
    assert err.msg == "invalid network configuration: /etc/x.conf: $.a: first (and 2 more)"
    assert err.details == "$.b: second; $.c: third"
    assert err.problems == problems


def test_config_error_with_one_problem():
    err = ConfigError([Problem("$", "broken")])
    assert (err.msg, err.details) == ("invalid network configuration: $: broken", "")


def test_problems_of_a_non_object():
    for doc in ([], "x", 5, None):
        assert texts(doc) == ["$: the configuration must be a JSON object"]


# ---- clusterNetwork / defaultNetworks from confDir ------------------------------------------------------


@pytest.fixture
def conf_dir(tmp_path):
    d = tmp_path / "net.d"
    d.mkdir()
    (d / "00-flannel.conf").write_text(json.dumps({"cniVersion": "1.0.0", "name": "flannelnet", "type": "flannel"}))
    (d / "20-chain.conflist").write_text(
        json.dumps({"cniVersion": "0.4.0", "name": "chain", "plugins": [{"type": "bridge"}, {"type": "portmap"}]})
    )
    (d / "30-noversion.json").write_text(json.dumps({"name": "noversion", "type": "macvlan"}))
    (d / "40-garbage.conf").write_text("{not json")  # must not hide the others
    (d / "50-ignored.txt").write_text(json.dumps({"name": "ignored", "type": "x", "cniVersion": "1.0.0"}))
    sub = d / "sub"
    sub.mkdir()
    (sub / "b.conf").write_text(json.dumps({"cniVersion": "1.1.0", "name": "subb", "type": "ipvlan"}))
    (sub / "a.conf").write_text(json.dumps({"cniVersion": "1.1.0", "name": "suba", "type": "macvlan"}))
    (tmp_path / "empty").mkdir()
    return d


def cluster(conf_dir, ref, defaults=None, version="0.3.1"):
    doc = minimal(version=version, confDir=str(conf_dir), clusterNetwork=ref)
    if defaults is not None:
        doc["defaultNetworks"] = defaults
    return doc


@pytest.mark.parametrize(
    "ref, name",
    [
        ("flannelnet", "flannelnet"),  # network name
        ("chain", "chain"),
        ("00-flannel.conf", "flannelnet"),  # file name in confDir
        ("20-chain.conflist", "chain"),
        ("sub", "suba"),  # directory: its first file
        ("sub/b.conf", "subb"),
    ],
)
def test_cluster_network_by_reference(conf_dir, ref, name):
    conf = multus.load(cluster(conf_dir, ref))
    assert [d.network.name for d in conf.delegates] == [name]
    assert conf.delegates[0].master


def test_cluster_network_by_absolute_path(conf_dir):
    conf = multus.load(cluster(conf_dir, str(conf_dir / "20-chain.conflist")))
    net = conf.master.network
    assert (net.name, net.cni_version, [p["type"] for p in net.plugins]) == ("chain", "0.4.0", ["bridge", "portmap"])


def test_cluster_network_by_absolute_directory(conf_dir):
    conf = multus.load(cluster(conf_dir, str(conf_dir / "sub")))
    assert conf.master.network.name == "suba"


def test_cluster_network_inherits_the_conf_version(conf_dir):
    conf = multus.load(cluster(conf_dir, "noversion", version="0.4.0"))
    assert conf.master.network.cni_version == "0.4.0"
    assert conf.master.network.source["cniVersion"] == "0.4.0"


def test_default_networks_follow_the_cluster_network(conf_dir):
    conf = multus.load(cluster(conf_dir, "flannelnet", ["chain", str(conf_dir / "sub" / "b.conf"), "noversion"]))
    assert [d.network.name for d in conf.delegates] == ["flannelnet", "chain", "subb", "noversion"]
    assert [d.master for d in conf.delegates] == [True, False, False, False]
    assert all(d.interface is None for d in conf.delegates)


def test_only_conf_extensions_are_searched_by_name(conf_dir):
    found = multus.problems(cluster(conf_dir, "ignored"))
    assert [p.path for p in found] == ["$.clusterNetwork"]


def test_missing_cluster_network_is_named(conf_dir):
    found = multus.problems(cluster(conf_dir, "nothere"))
    assert len(found) == 1
    assert found[0].path == "$.clusterNetwork"
    assert "'nothere'" in found[0].message and str(conf_dir) in found[0].message


def test_missing_default_network_is_named(conf_dir):
    found = multus.problems(cluster(conf_dir, "flannelnet", ["chain", "nothere"]))
    assert [p.path for p in found] == ["$.defaultNetworks[1]"]
    assert "'nothere'" in found[0].message


def test_missing_absolute_path_is_named(conf_dir, tmp_path):
    missing = str(tmp_path / "gone.conf")
    found = multus.problems(cluster(conf_dir, missing))
    assert [p.path for p in found] == ["$.clusterNetwork"]
    assert missing in found[0].message


def test_empty_directory_is_a_problem(conf_dir, tmp_path):
    found = multus.problems(cluster(conf_dir, str(tmp_path / "empty")))
    assert [p.path for p in found] == ["$.clusterNetwork"]
    assert str(tmp_path / "empty") in found[0].message


def test_missing_conf_dir(tmp_path):
    found = multus.problems(cluster(tmp_path / "nope", "flannelnet"))
    assert [p.path for p in found] == ["$.clusterNetwork"]


def test_unreadable_referenced_file_names_it(conf_dir):
    found = multus.problems(cluster(conf_dir, "40-garbage.conf"))
    assert len(found) == 1
    assert "40-garbage.conf" in found[0].message


def test_invalid_referenced_file_is_named(conf_dir):
    (conf_dir / "60-notype.conf").write_text(json.dumps({"cniVersion": "1.0.0", "name": "notype"}))
    found = multus.problems(cluster(conf_dir, "60-notype.conf"))
    assert len(found) == 1
    assert "60-notype.conf" in str(found[0]) or found[0].path.startswith("$.clusterNetwork")


# ---- the validation stamp --------------------------------------------------------------------------------


def test_valid_doc_creates_one_stamp(tmp_path):
    stamps = tmp_path / "validated"
    multus.load(seed(), stamp_dir=str(stamps))
    assert len(os.listdir(stamps)) == 1
    multus.load(seed(), stamp_dir=str(stamps))
    assert len(os.listdir(stamps)) == 1


def test_runtime_keys_do_not_change_the_stamp(tmp_path):
    stamps = tmp_path / "validated"
    for n in range(3):
        doc = seed()
        doc["runtimeConfig"] = {"portMappings": [{"hostPort": n}]}
        doc["cni.dev/valid-attachments"] = [{"containerID": str(n), "ifname": "eth0"}]
        multus.load(doc, stamp_dir=str(stamps))
    assert len(os.listdir(stamps)) == 1


def test_a_different_doc_gets_its_own_stamp(tmp_path):
    stamps = tmp_path / "validated"
    multus.load(seed(), stamp_dir=str(stamps))
    other = seed()
    other["name"] = "other"
    multus.load(other, stamp_dir=str(stamps))
    assert len(os.listdir(stamps)) == 2


def test_invalid_doc_creates_no_stamp(tmp_path):
    stamps = tmp_path / "validated"
    doc = seed()
    doc["delegates"][1]["masterplugin"] = "yes"
    with pytest.raises(ConfigError):
        multus.load(doc, stamp_dir=str(stamps))
    assert not stamps.exists() or os.listdir(stamps) == []
    # ...and the next load still finds the problem.
    with pytest.raises(ConfigError):
        multus.load(doc, stamp_dir=str(stamps))


def test_stamped_doc_still_gets_the_cross_key_checks(tmp_path):
    stamps = tmp_path / "validated"
    doc = minimal(deleg("a", masterplugin=True), deleg("b", masterplugin=True))
    assert paths(doc) == ["$.delegates"]
    multus.problems(doc, stamp_dir=str(stamps))
    assert [p.path for p in multus.problems(doc, stamp_dir=str(stamps))] == ["$.delegates"]


def test_unwritable_stamp_dir_is_not_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    conf = multus.load(seed(), stamp_dir=str(blocker / "validated"))
    assert conf.name == "multus-demo"


_LOAD_SCRIPT = """
import json, sys
from multipy.config import multus
doc = json.load(open(sys.argv[1]))
stamp_dir = sys.argv[2] or None
multus.load(doc, stamp_dir=stamp_dir)
print(json.dumps({"jsonschema": "jsonschema" in sys.modules}))
"""


def _load_in_fresh_process(conf_path, stamp_dir):
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, str(conf_path), str(stamp_dir or "")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)["jsonschema"]


def test_second_load_skips_jsonschema(tmp_path):
    stamps = tmp_path / "validated"
    # No stamp dir: the schema library is used (the check below is meaningful).
    assert _load_in_fresh_process(SEED, None) is True
    # First process validates and stamps; a fresh second one trusts the stamp.
    assert _load_in_fresh_process(SEED, stamps) is True
    assert len(os.listdir(stamps)) == 1
    assert _load_in_fresh_process(SEED, stamps) is False


def test_changed_doc_is_validated_again_in_a_fresh_process(tmp_path):
    stamps = tmp_path / "validated"
    assert _load_in_fresh_process(SEED, stamps) is True
    changed = seed()
    changed["logLevel"] = "debug"
    path = tmp_path / "changed.conf"
    path.write_text(json.dumps(changed))
    assert _load_in_fresh_process(path, stamps) is True
