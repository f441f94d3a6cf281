"""A failing second delegate: ADD reports its error and nothing of the first remains."""

from __future__ import annotations

import json

from multipy.testing import kernel

from .conftest import records, reservations


def _assert_nothing_left(pod, node, tmp_path):
    assert set(kernel.links(pod)) == {"lo"}, "the master's eth0 survived the rollback"
    assert not [n for n in kernel.links(node.name) if n.startswith("veth")], "host veth end left behind"
    assert reservations(tmp_path, "k8snet1") == [], "host-local reservation of the master leaked"
    assert reservations(tmp_path, "k8snet2") == []
    assert records(tmp_path) == [], "attachment record left behind"


def test_missing_macvlan_master_rolls_back_the_master(seed_conf, netns, node, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = seed_conf(macvlan_master="nosuchdev")

    added = cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")

    assert added.returncode == 1
    error = added.json
    assert error["code"] == 999  # what the Go macvlan reports for a missing master
    assert 'delegate "k8snet2" (macvlan on net1) ADD failed' in error["msg"]
    assert error["msg"].endswith("Link not found")
    _assert_nothing_left(pod, node, tmp_path)
    log = (tmp_path / "multipy.log").read_text()
    assert "rolling back 2 delegate(s)" in log


def test_exhausted_ipam_range_rolls_back_the_master(seed_conf, netns, node, cni_runtime, tmp_path):
    conf = seed_conf(range_end="10.188.1.0")  # room for exactly one pod on net1
    first = netns("pod")
    assert cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{first}", ifname="eth0").ok
    second = netns("pod")

    added = cni_runtime("ADD", conf, container_id="c2", netns=f"/run/netns/{second}", ifname="eth0")

    assert added.returncode == 1
    assert "no IP addresses available in range set" in added.json["msg"]
    assert set(kernel.links(second)) == {"lo"}
    assert reservations(tmp_path, "k8snet1") == ["10.244.1.2"]  # only the first pod's
    assert reservations(tmp_path, "k8snet2") == ["10.188.1.0"]
    assert records(tmp_path) == ["multus-demo:c1:eth0"]

    assert cni_runtime("DEL", conf, container_id="c1", netns=f"/run/netns/{first}", ifname="eth0").ok
    _assert_nothing_left(first, node, tmp_path)


def test_missing_delegate_binary_is_code_100_and_rolls_back(seed_conf, netns, node, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = seed_conf()
    conf["delegates"][1]["type"] = "nosuchplugin"

    added = cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")

    assert added.returncode == 1
    assert added.json["code"] == 100
    assert 'failed to find plugin "nosuchplugin"' in added.json["msg"]
    _assert_nothing_left(pod, node, tmp_path)


def test_retried_add_after_a_crash_clears_the_first_attempt(seed_conf, netns, node, cni_runtime, tmp_path):
    """A runtime that killed multipy mid-ADD may ADD again: leftovers must not block it (Multus R6)."""
    pod = netns("pod")
    conf = seed_conf()
    assert cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0").ok
    # Simulate the crash: the record says ADD was under way; interfaces and reservations exist.
    record = tmp_path / "cache" / "multus-demo:c1:eth0"
    doc = json.loads(record.read_text())
    for attachment in doc["attachments"]:
        attachment["result"] = None
    record.write_text(json.dumps(doc))

    again = cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")

    assert again.ok, again.stdout
    assert kernel.addresses(pod)["eth0"] == ["10.244.1.3/24"]
    assert reservations(tmp_path, "k8snet1") == ["10.244.1.3"]
    assert cni_runtime("DEL", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0").ok
    _assert_nothing_left(pod, node, tmp_path)


FLAKY = """#!/bin/sh
# Adds nothing and says so; its DEL fails while %(state)s/broken exists.
cat >/dev/null
if [ "$CNI_COMMAND" = DEL ] && [ -e "%(state)s/broken" ]; then
  echo '{"code": 5, "msg": "flaky: DEL refused"}'; exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion": "0.3.1"}'
fi
exit 0
"""


def test_failed_rollback_keeps_the_record_until_a_del_succeeds(seed_conf, netns, node, cni_runtime, tmp_path):
    """A finished delegate whose DEL fails keeps the record, so the runtime's DEL can finish (Multus R1)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "flaky"
    script.write_text(FLAKY % {"state": tmp_path})
    script.chmod(0o755)
    (tmp_path / "broken").touch()
    pod = netns("pod")
    conf = seed_conf(binDir=str(bin_dir), macvlan_master="nosuchdev")
    conf["delegates"].insert(1, {"name": "flaky", "type": "flaky"})  # net1; the failing macvlan is net2
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")

    added = cni_runtime("ADD", conf, **args)

    assert added.json["code"] == 999 and "(macvlan on net2) ADD failed" in added.json["msg"]
    assert "rollback incomplete" in added.json["details"] and "flaky: DEL refused" in added.json["details"]
    assert set(kernel.links(pod)) == {"lo"}  # the master was rolled back all the same
    assert reservations(tmp_path, "k8snet1") == []
    assert records(tmp_path) == ["multus-demo:c1:eth0"]

    kept = json.loads((tmp_path / "cache" / "multus-demo:c1:eth0").read_text())
    assert [a["network"]["name"] for a in kept["attachments"]] == ["flaky"]  # only what still holds resources

    failed = cni_runtime("DEL", conf, **args)
    assert failed.json["code"] == 5 and "the record is kept" in failed.json["msg"]
    assert records(tmp_path) == ["multus-demo:c1:eth0"]

    (tmp_path / "broken").unlink()
    deleted = cni_runtime("DEL", conf, **args)
    assert deleted.ok, deleted.stdout
    _assert_nothing_left(pod, node, tmp_path)


def test_a_master_result_the_runtime_cannot_read_rolls_back(netns, cni_runtime, tmp_path):
    """An L2-only master result has no 0.2.0 form: ADD fails with code 1 and undoes everything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    script = bin_dir / "l2only"
    script.write_text(f"""#!/bin/sh
cat >/dev/null
echo "$CNI_COMMAND" >> {calls}
[ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion": "1.0.0", "interfaces": [{{"name": "eth0"}}]}}'
exit 0
""")
    script.chmod(0o755)
    pod = netns("pod")
    conf = {"cniVersion": "0.2.0", "name": "meta", "type": "multus-cni", "cniDir": str(tmp_path / "cache"),
            "binDir": str(bin_dir), "delegates": [{"name": "l2", "type": "l2only", "cniVersion": "1.0.0"}]}

    added = cni_runtime("ADD", conf, container_id="c1", netns=f"/run/netns/{pod}", ifname="eth0")

    assert added.json["code"] == 1
    assert "no valid IP addresses" in added.json["msg"]
    assert calls.read_text().split() == ["ADD", "DEL"]
    assert records(tmp_path) == []
