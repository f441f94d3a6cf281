"""`multipy doctor` (issue 13): finds what a node leaked, and with --fix removes only what is provably stale."""

from __future__ import annotations

import json
import os
import time

from click.testing import CliRunner

from multipy.cli.commands import cli
from multipy.orchestrator import lock
from multipy.orchestrator.record import Attachment, Record, RecordStore

NOOP = """#!/bin/sh
cat >/dev/null
[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion": "1.0.0", "interfaces": [], "ips": []}'
exit 0
"""


def _node(tmp_path):
    bin_dir, data_dir, cni_dir = tmp_path / "bin", tmp_path / "data", tmp_path / "cache"
    bin_dir.mkdir()
    (bin_dir / "noop").write_text(NOOP)
    (bin_dir / "noop").chmod(0o755)
    delegate = {"cniVersion": "1.0.0", "name": "a", "type": "noop",
                "ipam": {"type": "host-local", "subnet": "10.1.0.0/16", "dataDir": str(data_dir)}}  # fmt: skip
    conf = {"cniVersion": "1.0.0", "name": "meta", "type": "multus-cni", "cniDir": str(cni_dir),
            "binDir": str(bin_dir), "delegates": [delegate]}  # fmt: skip
    conf_path = tmp_path / "10-multus.conf"
    conf_path.write_text(json.dumps(conf))
    store = RecordStore(str(cni_dir))
    os.makedirs(cni_dir)
    # c1: its pod namespace is gone, the runtime's DEL never came. c3: alive (a namespace path that exists).
    for cid, netns in (("c1", "/run/netns/multipy-doctor-gone"), ("c3", str(conf_path))):
        store.save(Record("meta", cid, "eth0", netns, attachments=[Attachment(delegate, "eth0", True)]))
    (cni_dir / "meta:c2:eth0").write_bytes(b'{"kind": "multipyAtt')  # unreadable
    leases = data_dir / "a"
    leases.mkdir(parents=True)
    for ip, owner in (("10.1.0.5", "orphan"), ("10.1.0.6", "c1"), ("10.1.0.7", "c2"), ("10.1.0.8", "c3")):
        (leases / ip).write_bytes(f"{owner}\r\neth0".encode())
    old = cni_dir / ".meta:c9:eth0.4242-0123456789ab.tmp"
    old.write_bytes(b"{")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    young = cni_dir / ".meta:c8:eth0.4243-0123456789ab.tmp"
    young.write_bytes(b"{")
    return conf_path, cni_dir, leases, old, young


def _doctor(conf_path, *args):
    result = CliRunner().invoke(cli, ["doctor", "--conf", str(conf_path), "-o", "json", *args])
    return result.exit_code, json.loads(result.output)


def _kinds(doc) -> set[tuple[str, str, bool]]:
    return {(f["kind"], os.path.basename(f["subject"]), f["fixed"]) for f in doc["findings"]}


def test_doctor_reports_every_leftover_and_changes_nothing(tmp_path):
    conf_path, cni_dir, leases, old, young = _node(tmp_path)
    code, doc = _doctor(conf_path)
    assert code == 1 and doc["clean"] is False
    assert _kinds(doc) == {
        ("record-without-netns", "meta:c1:eth0", False),
        ("unreadable-record", "meta:c2:eth0", False),
        ("temp-file", old.name, False),
        ("temp-file", young.name, False),
        ("lease-without-record", "10.1.0.5", False),
    }
    fixable = {os.path.basename(f["subject"]) for f in doc["findings"] if f["fixable"]}
    assert fixable == {"meta:c1:eth0", old.name, "10.1.0.5"}
    assert sorted(os.listdir(leases)) == ["10.1.0.5", "10.1.0.6", "10.1.0.7", "10.1.0.8", "lock"]
    assert old.exists() and young.exists()


def test_doctor_fix_removes_only_what_is_provably_stale(tmp_path):
    conf_path, cni_dir, leases, old, young = _node(tmp_path)
    code, doc = _doctor(conf_path, "--fix")
    assert ("record-without-netns", "meta:c1:eth0", True) in _kinds(doc)
    assert ("lease-without-record", "10.1.0.5", True) in _kinds(doc)
    assert ("lease-without-record", "10.1.0.6", True) in _kinds(doc)  # c1's, once its record was DELed
    assert ("temp-file", old.name, True) in _kinds(doc)
    assert code == 1  # the unreadable record and the young temp file stay: not provably stale
    assert not (cni_dir / "meta:c1:eth0").exists() and (cni_dir / "meta:c3:eth0").exists()
    # c2's record is unreadable: its lease is kept, as GC keeps it; c3 is alive.
    assert sorted(n for n in os.listdir(leases) if n != "lock") == ["10.1.0.7", "10.1.0.8"]
    assert not old.exists() and young.exists()


def test_doctor_never_touches_a_container_with_a_request_in_flight(tmp_path):
    conf_path, cni_dir, leases, old, young = _node(tmp_path)
    with lock.held(str(cni_dir), "orphan"):
        _, doc = _doctor(conf_path, "--fix")
    assert ("lease-without-record", "10.1.0.5", True) not in _kinds(doc)
    assert (leases / "10.1.0.5").exists()


def test_doctor_of_a_clean_node(tmp_path):
    conf = {"cniVersion": "1.0.0", "name": "meta", "type": "multus-cni", "cniDir": str(tmp_path / "cache"),
            "delegates": [{"cniVersion": "1.0.0", "name": "a", "type": "noop"}]}
    (tmp_path / "c.conf").write_text(json.dumps(conf))
    result = CliRunner().invoke(cli, ["doctor", "--conf", str(tmp_path / "c.conf")])
    assert result.exit_code == 0 and "nothing leaked" in result.output
