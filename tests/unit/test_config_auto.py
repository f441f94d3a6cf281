"""Multus's auto conf (multipy/config/auto.py) and how the primary conf is picked (confdir.primary):
the conf made from a flannel conflist and from a bridge conf, libcni's file order, multipy's and
Multus's own confs skipped, and a primary that cannot be used refused with its file and JSON path."""

from __future__ import annotations

import json
import os

import pytest

from multipy.config import auto, confdir, multus
from multipy.config.problems import ConfigError

# The seed's flannel conflist, as flannel's DaemonSet writes /etc/cni/net.d/10-flannel.conflist.
FLANNEL = {"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
    {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
    {"type": "portmap", "capabilities": {"portMappings": True}},
]}  # fmt: skip
BRIDGE = {"cniVersion": "0.4.0", "name": "podnet", "type": "bridge", "bridge": "cni0", "isGateway": True,
          "capabilities": {"ips": True, "mac": True, "portMappings": False},
          "ipam": {"type": "host-local", "subnet": "10.22.0.0/16"}}  # fmt: skip


def write(directory, name: str, doc) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def problems_of(excinfo) -> list[str]:
    return [str(p) for p in excinfo.value.problems]


# ---- the generator


def test_a_flannel_conflist_becomes_the_master_delegate():
    conf = auto.generate(FLANNEL, "multus-cni", {"kubeconfig": "/etc/cni/net.d/multipy.d/multipy.kubeconfig"})
    assert conf == {
        "cniVersion": "0.3.1",
        "name": "multus-cni-network",
        "type": "multus-cni",
        "capabilities": {"portMappings": True},
        "kubeconfig": "/etc/cni/net.d/multipy.d/multipy.kubeconfig",
        "delegates": [FLANNEL],
    }
    assert list(conf) == ["cniVersion", "name", "type", "capabilities", "kubeconfig", "delegates"]
    assert multus.problems(conf) == []
    loaded = multus.load(conf)
    assert (loaded.master.name, loaded.master.network.plugins[0]["type"]) == ("cbr0", "flannel")


def test_a_single_bridge_conf_gives_its_version_and_the_capabilities_it_turns_on():
    conf = auto.generate(BRIDGE, "multus-shim")
    assert conf == {"cniVersion": "0.4.0", "name": "multus-cni-network", "type": "multus-shim",
                    "capabilities": {"ips": True, "mac": True}, "delegates": [BRIDGE]}  # fmt: skip
    assert multus.problems(conf) == []


def test_capabilities_are_the_union_of_the_plugins():
    primary = {"name": "n", "cniVersion": "1.0.0", "plugins": [
        {"type": "a", "capabilities": {"portMappings": True, "ips": False}},
        {"type": "b"},
        {"type": "c", "capabilities": {"bandwidth": True, "ips": True}},
    ]}  # fmt: skip
    assert auto.capabilities(primary) == {"bandwidth": True, "ips": True, "portMappings": True}
    assert "capabilities" not in auto.generate({"name": "n", "cniVersion": "1.0.0", "type": "x"}, "multus-cni")


def test_cni_versions_picks_the_highest_supported_one():
    primary = {"name": "n", "cniVersions": ["0.3.1", "1.0.0", "9.9.9"], "plugins": [{"type": "x"}]}
    assert auto.generate(primary, "multus-cni")["cniVersion"] == "1.0.0"


def test_options_set_top_level_keys_and_add_capabilities():
    options = {"readinessindicatorfile": "/run/flannel/subnet.env", "cniVersion": "1.0.0", "logLevel": "verbose",
               "capabilities": {"io.kubernetes.cri.pod-annotations": True, "portMappings": False},
               "namespaceIsolation": True, "globalNamespaces": "default,shared"}  # fmt: skip
    conf = auto.generate(FLANNEL, "multus-cni", options)
    assert conf["cniVersion"] == "1.0.0"  # over the primary's; the delegate keeps its own
    assert conf["delegates"][0]["cniVersion"] == "0.3.1"
    assert conf["capabilities"] == {"io.kubernetes.cri.pod-annotations": True, "portMappings": False}
    assert list(conf) == ["cniVersion", "name", "type", "capabilities", "globalNamespaces", "logLevel",
                          "namespaceIsolation", "readinessindicatorfile", "delegates"]  # fmt: skip
    assert multus.problems(conf) == []
    assert options["capabilities"] == {"io.kubernetes.cri.pod-annotations": True, "portMappings": False}  # not consumed


def test_the_same_primary_gives_the_same_bytes():
    first = auto.render(auto.generate(FLANNEL, "multus-cni", {"logLevel": "debug", "binDir": "/opt/cni/bin"}))
    again = auto.render(auto.generate(json.loads(json.dumps(FLANNEL)), "multus-cni",
                                      {"binDir": "/opt/cni/bin", "logLevel": "debug"}))  # fmt: skip
    assert first == again and first.endswith(b"}\n")


@pytest.mark.parametrize(
    "primary, expected",
    [
        ({"cniVersion": "0.3.1", "type": "bridge"}, "$.name: network name None is missing or not a string"),
        ({"name": "n", "type": "bridge"}, "$: 'cniVersion' is a required property"),
        ({"name": "n", "cniVersion": "0.9.0", "type": "bridge"}, "$.cniVersion: '0.9.0' is not a supported version"),
        ({"name": "n", "cniVersion": "0.3.1", "plugins": []}, "$.plugins: must be a non-empty list of plugin confs"),
        (
            {"name": "n", "cniVersion": "0.3.1", "plugins": [{"type": "a"}, {"mtu": 1}]},
            "$.plugins[1].type: every plugin needs a non-empty 'type'",
        ),
        (
            {"name": "n", "cniVersion": "0.3.1", "plugins": [{"type": "a", "capabilities": {"ips": "yes"}}]},
            "$.plugins[0].capabilities.ips: 'yes' is not a boolean",
        ),
        (
            {"name": "n", "cniVersion": "0.3.1", "type": "a", "capabilities": ["ips"]},
            "$.capabilities: ['ips'] is not an object",
        ),
    ],
)
def test_a_primary_that_cannot_be_a_delegate_is_refused_with_its_path(primary, expected):
    with pytest.raises(ConfigError) as excinfo:
        auto.generate(primary, "multus-cni")
    assert problems_of(excinfo) == [expected]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("logLevel=verbose", ("logLevel", "verbose")),
        ("namespaceIsolation=true", ("namespaceIsolation", True)),
        ("kubeTimeout=2.5", ("kubeTimeout", 2.5)),
        ('systemNamespaces=["kube-system","infra"]', ("systemNamespaces", ["kube-system", "infra"])),
        ('logOptions={"maxSize": 10}', ("logOptions", {"maxSize": 10})),
        ("globalNamespaces=default,shared", ("globalNamespaces", "default,shared")),
        ("logFile=", ("logFile", "")),
    ],
)
def test_an_option_is_json_when_it_parses_as_json(text, expected):
    assert auto.parse_option(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("logLevel", "'logLevel' is not KEY=VALUE"),
        ("=x", "'=x' is not KEY=VALUE"),
        ("delegates=[]", "delegates: cannot be set: made from the primary conf"),
        ("clusterNetwork=flannel", "clusterNetwork: cannot be set: the primary conf is embedded"),
        ('defaultNetworks=["a"]', "defaultNetworks: cannot be set: needs 'clusterNetwork'"),
        ("type=multus", "type: cannot be set: the mode's"),
        ("logfile=/x", "logfile: unknown key of multipy's conf"),
    ],
)
def test_an_option_that_cannot_be_set_says_why(text, message):
    with pytest.raises(ValueError) as excinfo:
        auto.parse_option(text)
    assert str(excinfo.value).startswith(message)


# ---- picking the primary


def test_the_primary_is_the_first_conf_in_libcni_order(tmp_path):
    write(tmp_path, "99-last.conf", BRIDGE)
    write(tmp_path, "20-calico.conflist", {**FLANNEL, "name": "calico"})
    write(tmp_path, "10-flannel.conflist", FLANNEL)
    write(tmp_path, "05-notes.txt", "not a conf")
    write(tmp_path, "07-bak.conf.bak", "{}")
    (tmp_path / "08-dir.conf").mkdir()  # libcni lists files only
    os.symlink(tmp_path / "missing", tmp_path / "09-dangling.conf")
    assert [os.path.basename(p) for p in confdir.conf_files(str(tmp_path))] == [
        "10-flannel.conflist", "20-calico.conflist", "99-last.conf"]  # fmt: skip
    path, doc = confdir.primary(str(tmp_path), "00-multus.conf")
    assert (path, doc) == (str(tmp_path / "10-flannel.conflist"), FLANNEL)
    # Name order is byte order: uppercase before lowercase, "1" before "10-" before "9".
    write(tmp_path, "1.json", {**BRIDGE, "name": "json"})
    assert confdir.primary(str(tmp_path), "00-multus.conf")[0] == str(tmp_path / "1.json")


def test_multipys_and_multus_own_confs_are_skipped(tmp_path):
    write(tmp_path, "00-multus.conf", "")  # our own, even empty (Multus #1155)
    write(tmp_path, "00-multus.conflist", "{broken")  # what Go Multus's thin entrypoint writes from 1.0.0 on
    write(tmp_path, "01-old-multus.conf", {"cniVersion": "0.3.1", "name": "m", "type": "multus", "delegates": []})
    write(tmp_path, "02-thick.conf", {"cniVersion": "0.3.1", "name": "m", "type": "multus-shim"})
    write(tmp_path, "03-multipy.conflist", {"cniVersion": "1.0.0", "name": "m", "plugins": [{"type": "multus-cni"}]})
    write(tmp_path, "04-multipy.json", {"cniVersion": "1.0.0", "name": "m", "type": "multipy"})
    write(tmp_path, "10-flannel.conflist", FLANNEL)
    assert confdir.primary(str(tmp_path), "00-multus.conf")[0] == str(tmp_path / "10-flannel.conflist")


def test_a_broken_first_conf_is_the_primary_and_is_named(tmp_path):
    # The runtime would have read it too: no later file is taken in its place.
    write(tmp_path, "10-flannel.conflist", '{"name": "cbr0",')
    write(tmp_path, "20-bridge.conf", BRIDGE)
    with pytest.raises(ConfigError) as excinfo:
        confdir.primary(str(tmp_path), "00-multus.conf", shown_dir="/etc/cni/net.d")
    assert excinfo.value.source == "/etc/cni/net.d/10-flannel.conflist"
    assert problems_of(excinfo)[0].startswith("$: not valid JSON: ")
    write(tmp_path, "10-flannel.conflist", "  \n")
    with pytest.raises(ConfigError) as excinfo:
        confdir.primary(str(tmp_path), "00-multus.conf")
    assert problems_of(excinfo) == ["$: the file is empty"]
    write(tmp_path, "10-flannel.conflist", "[1, 2]")
    with pytest.raises(ConfigError) as excinfo:
        confdir.primary(str(tmp_path), "00-multus.conf")
    assert problems_of(excinfo) == ["$: the conf must be a JSON object"]


def test_no_primary_is_unreadable_naming_the_directory(tmp_path):
    write(tmp_path, "00-multus.conf", {"cniVersion": "0.3.1", "name": "m", "type": "multus-cni"})
    with pytest.raises(confdir.Unreadable) as excinfo:
        confdir.primary(str(tmp_path), "00-multus.conf")
    assert excinfo.value.source == str(tmp_path)
    assert problems_of(excinfo) == ["$: no CNI conf (.conf, .conflist, .json) but multipy's or Multus's own: no "
                                    "primary network to delegate to"]  # fmt: skip
    with pytest.raises(confdir.Unreadable) as excinfo:
        confdir.primary(str(tmp_path / "absent"), "00-multus.conf", shown_dir="/etc/cni/net.d")
    assert (excinfo.value.source, problems_of(excinfo)) == (
        "/etc/cni/net.d", ["$: cannot list the conf dir: No such file or directory"])  # fmt: skip


def test_a_conf_that_sorts_before_ours_is_refused(tmp_path):
    write(tmp_path, "10-flannel.conflist", FLANNEL)
    with pytest.raises(ConfigError) as excinfo:
        confdir.primary(str(tmp_path), "20-multus.conf")
    assert excinfo.value.source == str(tmp_path / "10-flannel.conflist")
    assert problems_of(excinfo) == ["$: sorts before 20-multus.conf, so the runtime would read it and never run "
                                    "multipy: remove it, or name multipy's conf to sort first"]  # fmt: skip


def test_a_chosen_primary(tmp_path):
    write(tmp_path, "10-flannel.conflist", FLANNEL)
    write(tmp_path, "20-bridge.conf", BRIDGE)
    write(tmp_path, "30-multus.conf", {"cniVersion": "0.3.1", "name": "m", "type": "multus"})
    assert confdir.primary(str(tmp_path), "00-multus.conf", "20-bridge.conf") == (str(tmp_path / "20-bridge.conf"),
                                                                                 BRIDGE)  # fmt: skip
    with pytest.raises(confdir.Unreadable) as excinfo:
        confdir.primary(str(tmp_path), "00-multus.conf", "15-absent.conf")
    assert problems_of(excinfo) == ["$: cannot read: No such file or directory"]
    with pytest.raises(ConfigError) as excinfo:
        confdir.primary(str(tmp_path), "00-multus.conf", "30-multus.conf")
    assert "a meta plugin's conf (multipy's or Multus's own)" in problems_of(excinfo)[0]


def test_from_conf_dir_names_the_primary_as_the_node_sees_it(tmp_path):
    write(tmp_path, "10-flannel.conflist", FLANNEL)
    made = auto.from_conf_dir(str(tmp_path), "00-multus.conf", "multus-cni", shown_dir="/etc/cni/net.d")
    assert made.primary == "/etc/cni/net.d/10-flannel.conflist"
    assert made.data == auto.render(auto.generate(FLANNEL, "multus-cni")) and made.doc["delegates"] == [FLANNEL]
    write(tmp_path, "10-flannel.conflist", {**FLANNEL, "cniVersion": "0.0.7"})
    with pytest.raises(ConfigError) as excinfo:
        auto.from_conf_dir(str(tmp_path), "00-multus.conf", "multus-cni", shown_dir="/etc/cni/net.d")
    assert excinfo.value.source == "/etc/cni/net.d/10-flannel.conflist"
    assert problems_of(excinfo) == ["$.cniVersion: '0.0.7' is not a supported version"]
