"""The attachment record store, the delegate plan, and CNI_ARGS per delegate."""

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from multipy.cni.errors import INVALID_NETWORK_CONFIG, IO_FAILURE, CNIError
from multipy.config import multus
from multipy.orchestrator import commands as orch
from multipy.orchestrator import plan
from multipy.orchestrator.record import KIND, Attachment, CorruptRecord, Record, RecordStore

# ---- records ------------------------------------------------------------------------------


def record(container_id="abc123", ifname="eth0", network_name="multus", **extra) -> Record:
    return Record(
        network_name=network_name,
        container_id=container_id,
        ifname=ifname,
        netns="/run/netns/x",
        cni_args="IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.0.0.5",
        capability_args={"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]},
        attachments=[
            Attachment(
                {"cniVersion": "1.0.0", "name": "primary", "type": "bridge"},
                ifname,
                True,
                {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.5/24"}]},
            ),
            Attachment({"cniVersion": "0.3.1", "name": "second", "plugins": [{"type": "macvlan"}]}, "net1", False),
        ],
        **extra,
    )


@pytest.fixture
def store(tmp_path):
    return RecordStore(str(tmp_path / "records"))


def test_round_trip(store):
    rec = record()
    store.save(rec)
    loaded = store.load("multus", "abc123", "eth0")
    assert loaded == rec
    assert loaded.attachments[0].name == "primary"
    assert loaded.attachments[1].result is None


def test_file_name_and_content(store):
    store.save(record())
    path = store.path("multus", "abc123", "eth0")
    assert path == os.path.join(store.directory, "multus:abc123:eth0")
    doc = json.loads(open(path, "rb").read())
    assert doc["kind"] == KIND
    assert doc["container_id"] == "abc123"


def test_save_overwrites(store):
    rec = record()
    store.save(rec)
    rec.attachments[1].result = {"cniVersion": "0.3.1", "ips": []}
    store.save(rec)
    assert store.load("multus", "abc123", "eth0").attachments[1].result == {"cniVersion": "0.3.1", "ips": []}


def test_file_mode_is_0600_whatever_the_umask(store):
    old = os.umask(0)
    try:
        store.save(record())
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(store.path("multus", "abc123", "eth0")).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700


def test_save_leaves_no_temp_file(store):
    store.save(record())
    store.save(record())
    store.save(record(ifname="eth1"))
    assert sorted(os.listdir(store.directory)) == ["multus:abc123:eth0", "multus:abc123:eth1"]


def test_failed_save_keeps_the_old_record_and_no_temp_file(store, monkeypatch):
    old = record()
    store.save(old)
    changed = record()
    changed.netns = "/run/netns/changed"

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(CNIError) as info:
        store.save(changed)
    monkeypatch.undo()
    assert info.value.code == IO_FAILURE
    assert "multus:abc123:eth0" in info.value.msg
    assert os.listdir(store.directory) == ["multus:abc123:eth0"]
    assert store.load("multus", "abc123", "eth0") == old


def test_save_into_an_unusable_directory_is_io_failure(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CNIError) as info:
        RecordStore(str(blocker / "records")).save(record())
    assert info.value.code == IO_FAILURE


def test_load_missing_is_none(store, tmp_path):
    assert store.load("multus", "nope", "eth0") is None
    assert RecordStore(str(tmp_path / "never-created")).load("multus", "abc123", "eth0") is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b'{"kind": "cniCacheV1"}',
        json.dumps({"kind": KIND}).encode(),  # fields missing
        json.dumps({**record().to_json(), "attachments": [{"bogus": 1}]}).encode(),
        json.dumps({**record().to_json(), "attachments": 5}).encode(),
    ],
)
def test_corrupt_file_raises_corrupt_record(store, content):
    store.save(record())
    with open(store.path("multus", "abc123", "eth0"), "wb") as f:
        f.write(content)
    with pytest.raises(CorruptRecord) as info:
        store.load("multus", "abc123", "eth0")
    assert "multus:abc123:eth0" in str(info.value)


@pytest.mark.parametrize("content", [b"[]", b"null", b"1", b'"x"'])
def test_non_object_record_raises_corrupt_record(store, content):
    os.makedirs(store.directory)
    with open(store.path("multus", "abc123", "eth0"), "wb") as f:
        f.write(content)
    with pytest.raises(CorruptRecord):
        store.load("multus", "abc123", "eth0")


def test_unreadable_path_raises_corrupt_record(store):
    os.makedirs(store.path("multus", "abc123", "eth0"))  # a directory where the file should be
    with pytest.raises(CorruptRecord):
        store.load("multus", "abc123", "eth0")


def test_remove_is_idempotent(store, tmp_path):
    store.save(record())
    store.remove("multus", "abc123", "eth0")
    assert store.load("multus", "abc123", "eth0") is None
    store.remove("multus", "abc123", "eth0")
    RecordStore(str(tmp_path / "never-created")).remove("multus", "abc123", "eth0")


def test_remove_failure_is_io_failure(store):
    os.makedirs(os.path.join(store.path("multus", "abc123", "eth0"), "inside"))
    with pytest.raises(CNIError) as info:
        store.remove("multus", "abc123", "eth0")
    assert info.value.code == IO_FAILURE


def test_all_lists_only_this_networks_records(store):
    mine = [record("c1"), record("c2"), record("c2", ifname="eth1")]
    for rec in mine:
        store.save(rec)
    store.save(record("c3", network_name="other"))
    store.save(record("c4", network_name="multus-2"))  # shares the "multus-" prefix
    found = store.all("multus")
    assert [(r.container_id, r.ifname) for r in found] == [("c1", "eth0"), ("c2", "eth0"), ("c2", "eth1")]
    assert [r.container_id for r in store.all("multus-2")] == ["c4"]
    assert [r.container_id for r in store.all("other")] == ["c3"]


def test_all_skips_temp_files_and_garbage(store):
    store.save(record("c1"))
    directory = store.directory
    # A temp file of a save in progress holds a valid record but must not be listed.
    with open(os.path.join(directory, ".multus:c2:eth0.tmp12345"), "w") as f:
        json.dump(record("c2").to_json(), f)
    with open(os.path.join(directory, "multus:c3:eth0"), "w") as f:
        f.write("{garbage")
    with open(os.path.join(directory, "multus:c4:eth0"), "w") as f:
        json.dump({"kind": "cniCacheV1"}, f)
    os.makedirs(os.path.join(directory, "multus:c5:eth0"))
    with open(os.path.join(directory, "unrelated"), "w") as f:
        f.write("x")
    assert [r.container_id for r in store.all("multus")] == ["c1"]


def test_all_skips_non_object_json(store):
    store.save(record("c1"))
    with open(os.path.join(store.directory, "multus:c2:eth0"), "w") as f:
        f.write("[]")
    assert [r.container_id for r in store.all("multus")] == ["c1"]


def test_all_lists_records_whose_ifname_looks_like_a_temp_suffix(store):
    store.save(record("c1", ifname="eth.tmp1"))
    assert [r.ifname for r in store.all("multus")] == ["eth.tmp1"]


def test_all_of_a_missing_directory_is_empty(tmp_path):
    assert RecordStore(str(tmp_path / "never-created")).all("multus") == []


def test_from_json_rejects_another_kind():
    with pytest.raises(ValueError):
        Record.from_json({**record().to_json(), "kind": "cniCacheV1"})


# ---- plan.attachments ----------------------------------------------------------------------------


def conf_of(*delegates) -> multus.MultusConf:
    return multus.load({"cniVersion": "1.0.0", "name": "multus", "type": "multus-cni", "delegates": list(delegates)})


def d(name, **extra):
    return {"name": name, "type": "bridge", **extra}


def test_plan_master_first_on_runtime_ifname():
    planned = plan.attachments(conf_of(d("a"), d("b"), d("c")), "eth0")
    assert [(a.name, a.ifname, a.master) for a in planned] == [
        ("a", "eth0", True),
        ("b", "net1", False),
        ("c", "net2", False),
    ]
    assert all(a.result is None for a in planned)


def test_plan_master_in_the_middle_is_run_first_and_skipped_in_numbering():
    planned = plan.attachments(conf_of(d("a"), d("b", masterplugin=True), d("c"), d("e")), "eth0")
    assert [(a.name, a.ifname, a.master) for a in planned] == [
        ("b", "eth0", True),
        ("a", "net1", False),
        ("c", "net2", False),
        ("e", "net3", False),
    ]


def test_plan_uses_the_runtime_ifname():
    planned = plan.attachments(conf_of(d("a"), d("b")), "cni0")
    assert [a.ifname for a in planned] == ["cni0", "net1"]


def test_plan_honours_explicit_interfaces():
    planned = plan.attachments(conf_of(d("a"), d("b", interface="ext0"), d("c"), d("e", interface="storage")), "eth0")
    # Multus numbers by position in the whole list: `a, b@ext0, c` gives c net2.
    assert [(a.name, a.ifname) for a in planned] == [("a", "eth0"), ("b", "ext0"), ("c", "net2"), ("e", "storage")]


def test_plan_automatic_names_are_positional():
    planned = plan.attachments(conf_of(d("a"), d("b", interface="net1"), d("c")), "eth0")
    assert [(a.name, a.ifname) for a in planned] == [("a", "eth0"), ("b", "net1"), ("c", "net2")]


def test_plan_explicit_name_taking_a_positional_one_is_refused_before_anything_runs():
    with pytest.raises(CNIError) as info:
        plan.attachments(conf_of(d("a"), d("b", interface="net2"), d("c")), "eth0")
    assert info.value.code == 7
    assert "'net2' of network 'c' is already used by network 'b'" in info.value.msg


def test_master_may_not_name_its_interface():
    doc = {"cniVersion": "1.0.0", "name": "multus", "type": "multus-cni",
           "delegates": [{"name": "a", "type": "x", "interface": "prim0"}, {"name": "b", "type": "y"}]}
    assert [str(p) for p in multus.problems(doc)] == [
        "$.delegates[0].interface: the master always gets the runtime's CNI_IFNAME"
    ]


def test_plan_networks_are_copies_with_cni_version():
    conf = conf_of(d("a"), d("b", cniVersion="0.4.0"))
    planned = plan.attachments(conf, "eth0")
    assert [a.network["cniVersion"] for a in planned] == ["1.0.0", "0.4.0"]
    planned[0].network["mutated"] = True
    assert "mutated" not in conf.delegates[0].network.source


@pytest.mark.parametrize(
    "delegates, runtime_ifname, names",
    [
        ([d("a"), d("b", interface="eth0")], "eth0", ("b", "a")),  # collides with the runtime's ifname
        ([d("a"), d("b")], "net1", ("b", "a")),  # a runtime asking for net1 itself
    ],
)
def test_plan_collision_is_code_7_naming_both(delegates, runtime_ifname, names):
    conf = conf_of(*delegates)  # each of these passes validation: the clash depends on the plan
    with pytest.raises(CNIError) as info:
        plan.attachments(conf, runtime_ifname)
    assert info.value.code == INVALID_NETWORK_CONFIG
    later, earlier = names
    assert repr(later) in info.value.msg and repr(earlier) in info.value.msg
    assert "already used" in info.value.msg


def test_plan_seed_conf():
    seed = Path(__file__).resolve().parents[2] / "conf" / "10-multus.conf"
    conf = multus.load(json.loads(seed.read_text()))
    planned = plan.attachments(conf, "eth0")
    assert [(a.name, a.ifname, a.master) for a in planned] == [("k8snet1", "eth0", True), ("k8snet2", "net1", False)]


# ---- CNI_ARGS per delegate --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, kept",
    [
        ("", ""),
        ("IP=10.0.0.5", ""),
        ("MAC=aa:bb:cc:dd:ee:ff", ""),
        (
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;IP=10.0.0.5;MAC=aa:bb:cc:dd:ee:ff",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p",
        ),
        ("IP=10.0.0.5;K8S_POD_NAME=p;MAC=aa:bb", "K8S_POD_NAME=p"),
        ("K8S_POD_NAME=p;;IP=1.2.3.4;", "K8S_POD_NAME=p"),
        ("IPS=x;MACADDR=y;GATEWAY=1.1.1.1", "IPS=x;MACADDR=y;GATEWAY=1.1.1.1"),  # only the exact keys
        ("K8S_POD_NAME=IP=x", "K8S_POD_NAME=IP=x"),
        ("ip=1.2.3.4", "ip=1.2.3.4"),  # keys are case-sensitive, as in Go
    ],
)
def test_without_runtime_addresses(raw, kept):
    assert orch._without_runtime_addresses(raw) == kept


def test_master_keeps_ip_and_mac_and_others_lose_them():
    conf = conf_of(d("a"), d("b"))
    rec = record()
    rec.attachments = plan.attachments(conf, "eth0")
    o = orch.Orchestrator(conf, chain=None, store=None, log=logging.getLogger("test"))
    master, other = (o._invocation("ADD", rec, a, "/run/netns/x") for a in rec.attachments)
    assert master.args == "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.0.0.5"
    assert (master.ifname, master.container_id, master.netns) == ("eth0", "abc123", "/run/netns/x")
    assert other.args == "IgnoreUnknown=1;K8S_POD_NAME=p"
    assert other.ifname == "net1"
