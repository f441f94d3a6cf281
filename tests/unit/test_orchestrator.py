"""The orchestrator's every path, hermetic: delegates are FakeDelegates behind the Exec seam and the
cluster is a pair of fake ports, so nothing here needs root, a namespace, a binary or an API."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest

import multipy.orchestrator as orchestrator_package
from multipy.cni.errors import (
    INCOMPATIBLE_VERSION,
    INTERNAL,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    NO_ATTACHMENT_RECORD,
    STATUS_UNAVAILABLE,
    STATUS_UNAVAILABLE_EXISTING_AFFECTED,
    TRY_AGAIN_LATER,
    CNIError,
)
from multipy.config import multus
from multipy.config.network import from_dict
from multipy.orchestrator import commands
from multipy.orchestrator.commands import Orchestrator, Request
from multipy.orchestrator.plan import Wanted
from multipy.orchestrator.ports import PodSelection
from multipy.orchestrator.record import Record, RecordStore
from multipy.plugins.contract import Services
from multipy.testing.fake_delegates import FakeDelegates

CID = "c1"
NETNS = "/run/netns/pod"
POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;IP=10.9.9.9"


class RecordingLog:
    """A request log that keeps its lines, to assert what an operator would read."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _add(self, level: str, msg: str, args: tuple) -> None:
        self.lines.append((level, msg % args if args else msg))

    def debug(self, msg, *args):
        self._add("debug", msg, args)

    def info(self, msg, *args):
        self._add("info", msg, args)

    def warning(self, msg, *args):
        self._add("warning", msg, args)

    def error(self, msg, *args):
        self._add("error", msg, args)

    def exception(self, msg, *args):
        self._add("exception", msg, args)

    def has(self, level: str, text: str) -> bool:
        return any(lvl == level and text in line for lvl, line in self.lines)


class FakePods:
    """The PodNetworks port: the networks "the API" gives the pod, or an error."""

    def __init__(self, wanted: list[Wanted] | None = None, error: CNIError | None = None) -> None:
        self.wanted, self.error = wanted, error
        self.asked: list[str] = []

    def select(self, cni_args: str) -> PodSelection | None:
        self.asked.append(cni_args)
        if self.error is not None:
            raise self.error
        return None if self.wanted is None else PodSelection("pod-handle", self.wanted)


class FakeReporter:
    """The Reporter port: what was published, or an error for the status."""

    def __init__(self, error: CNIError | None = None) -> None:
        self.error = error
        self.statuses: list[tuple] = []
        self.events: list[tuple] = []

    def network_status(self, pod, record, netns):
        if self.error is not None:
            raise self.error
        self.statuses.append((pod, [a.ifname for a in record.attachments], netns))

    def added_interfaces(self, pod, record):
        self.events.append((pod, [a.ifname for a in record.attachments]))


def delegate(name: str, plugin_type: str | None = None, **extra) -> dict:
    return {"name": name, "type": plugin_type or f"fake-{name}", **extra}


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


class Env:
    """One node's worth of state: a cniDir, fake delegates, a log; builds confs and orchestrators."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.cni_dir = str(tmp_path / "cache")
        self.store = RecordStore(self.cni_dir)
        self.fake = FakeDelegates()
        self.log = RecordingLog()

    def conf(self, *delegates, version: str = "1.1.0", **keys) -> multus.MultusConf:
        doc = {"cniVersion": version, "name": "meta", "type": "multus-cni", "cniDir": self.cni_dir, **keys}
        if "clusterNetwork" not in keys:
            doc["delegates"] = list(delegates or (delegate("a"), delegate("b")))
        return multus.load(doc)

    def orchestrator(self, conf=None, services=None, **kw) -> Orchestrator:
        conf = conf or self.conf()
        chain = self.fake.chain(self.log, binary_types=conf.binary_types, services=services)
        return Orchestrator(conf, chain, self.store, self.log, **kw)

    def records(self) -> list[str]:
        # internal/: the validated-conf stamps and the containers' locks (orchestrator/lock.py)
        return sorted(n for n in os.listdir(self.cni_dir) if not n.startswith(".") and n != "internal") \
            if os.path.isdir(self.cni_dir) else []

    def record(self, ifname: str = "eth0", cid: str = CID) -> Record | None:
        return self.store.load("meta", cid, ifname)


def request(cid: str = CID, version: str | None = "1.1.0", cni_args: str = POD_ARGS, **kw) -> Request:
    return Request(cid, "eth0", NETNS, cni_args, kw.pop("capability_args", None), version, **kw)


def added(env: Env, conf=None, cid: str = CID) -> Orchestrator:
    """An orchestrator whose ADD for `cid` has succeeded."""
    orch = env.orchestrator(conf)
    orch.add(request(cid))
    return orch


# ---- ADD ------------------------------------------------------------------------------------------


def test_add_runs_the_master_first_and_records_every_result(env):
    conf = env.conf(delegate("a"), delegate("m", masterplugin=True), delegate("c", interface="ext0"))

    answer = env.orchestrator(conf).add(request(version="0.4.0"))

    assert env.fake.commands() == [("fake-m", "ADD"), ("fake-a", "ADD"), ("fake-c", "ADD")]
    assert [(c.ifname, c.netns, c.container_id) for c in env.fake.calls] == [
        ("eth0", NETNS, CID), ("net1", NETNS, CID), ("ext0", NETNS, CID)]  # fmt: skip
    # The runtime's IP= is for its own interface: only the master sees it.
    without_ip = POD_ARGS.replace(";IP=10.9.9.9", "")
    assert [c.args for c in env.fake.calls] == [POD_ARGS, without_ip, without_ip]
    assert answer.cni_version == "0.4.0"
    assert str(answer.ips[0].address) == "10.0.0.2/8"  # the master's
    record = env.record()
    assert [(a.name, a.ifname, a.result["ips"][0]["address"]) for a in record.attachments] == [
        ("m", "eth0", "10.0.0.2/8"), ("a", "net1", "10.0.0.3/8"), ("c", "ext0", "10.0.0.4/8")]  # fmt: skip
    assert env.fake.held == {("fake-m", CID, "eth0"), ("fake-a", CID, "net1"), ("fake-c", CID, "ext0")}


def test_add_without_a_runtime_version_answers_in_the_masters(env):
    answer = env.orchestrator().add(request(version=None))
    assert answer.cni_version == "1.1.0"


def test_add_passes_declared_capabilities_and_the_pods_cni_args(env):
    conf = env.conf(delegate("a", capabilities={"portMappings": True}), delegate("b"))
    mappings = [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]
    env.orchestrator(conf).add(request(capability_args={"portMappings": mappings}))
    master, other = env.fake.calls
    assert master.conf["runtimeConfig"] == {"portMappings": mappings}
    assert "runtimeConfig" not in other.conf  # b does not declare it


def test_a_failed_add_dels_in_reverse_the_failed_one_included(env):
    conf = env.conf(delegate("a"), delegate("b"), delegate("c"))
    env.fake.on("fake-c", "ADD", CNIError(999, "Link not found"))

    with pytest.raises(CNIError) as info:
        env.orchestrator(conf).add(request())

    assert info.value.code == 999
    assert info.value.msg == 'delegate "c" (fake-c on net2) ADD failed: Link not found'
    assert info.value.details == ""  # every DEL succeeded
    assert env.fake.commands() == [("fake-a", "ADD"), ("fake-b", "ADD"), ("fake-c", "ADD"),
                                   ("fake-c", "DEL"), ("fake-b", "DEL"), ("fake-a", "DEL")]  # fmt: skip
    assert env.fake.held == set()
    assert env.records() == []
    assert env.log.has("warning", "rolling back 3 delegate(s)")


def test_a_missing_binary_is_code_100_and_rolls_back(env):
    env.fake.missing = frozenset({"fake-b"})
    with pytest.raises(CNIError) as info:
        env.orchestrator().add(request())
    assert info.value.code == 100 and 'failed to find plugin "fake-b"' in info.value.msg
    assert env.fake.held == set() and env.records() == []


def test_a_rollback_that_fails_keeps_the_record_with_what_still_holds(env):
    conf = env.conf(delegate("a"), delegate("b"), delegate("c"))
    env.fake.on("fake-c", "ADD", CNIError(999, "Link not found"))
    env.fake.on("fake-c", "DEL", CNIError(999, "master gone"))  # the failed one: holds nothing
    env.fake.on("fake-b", "DEL", CNIError(5, "flaky: DEL refused"))

    with pytest.raises(CNIError) as info:
        env.orchestrator(conf).add(request())

    assert info.value.msg.endswith("ADD failed: Link not found")
    assert info.value.details == (
        'rollback incomplete: delegate "c" (fake-c on net2) DEL failed: master gone; '
        'delegate "b" (fake-b on net1) DEL failed: flaky: DEL refused'
    )
    assert [a.name for a in env.record().attachments] == ["b"]  # only what finished ADD and still holds
    assert env.log.has("error", 'delegate "b" (fake-b on net1) DEL failed: flaky: DEL refused')

    # The runtime's DEL finishes the job once b's DEL works.
    env.fake.reset("fake-b", "DEL")
    env.orchestrator(conf).delete(request())
    assert env.records() == [] and env.fake.held == set()


def test_a_rollback_keeps_every_holder_in_plan_order(env):
    conf = env.conf(delegate("a"), delegate("b"), delegate("c"))
    env.fake.on("fake-c", "ADD", CNIError(7, "bad"))
    env.fake.on("fake-a", "DEL", CNIError(5, "a stuck"))
    env.fake.on("fake-b", "DEL", CNIError(5, "b stuck"))
    with pytest.raises(CNIError):
        env.orchestrator(conf).add(request())
    assert [a.name for a in env.record().attachments] == ["a", "b"]


def test_a_delegate_del_that_crashes_is_reported_as_internal(env):
    env.fake.on("fake-b", "ADD", CNIError(999, "no"))
    env.fake.on("fake-a", "DEL", RuntimeError("boom"))
    with pytest.raises(CNIError) as info:
        env.orchestrator().add(request())
    assert info.value.details == 'rollback incomplete: delegate "a" (fake-a on eth0) DEL failed: RuntimeError: boom'
    assert env.log.has("exception", 'delegate "a" (fake-a on eth0) DEL crashed')
    assert [a.name for a in env.record().attachments] == ["a"]


def test_a_crash_in_a_delegate_add_rolls_back_too(env):
    env.fake.on("fake-b", "ADD", ValueError("unexpected"))
    with pytest.raises(ValueError):
        env.orchestrator().add(request())
    assert env.fake.commands() == [("fake-a", "ADD"), ("fake-b", "ADD"), ("fake-b", "DEL"), ("fake-a", "DEL")]
    assert env.records() == []


def test_a_master_result_the_runtime_cannot_read_rolls_back(env):
    conf = env.conf(delegate("l2"), version="1.0.0")
    env.fake.on("fake-l2", "ADD", {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}]})
    with pytest.raises(CNIError) as info:
        env.orchestrator(conf).add(request(version="0.2.0"))
    assert info.value.code == INCOMPATIBLE_VERSION
    assert env.fake.commands() == [("fake-l2", "ADD"), ("fake-l2", "DEL")]
    assert env.records() == []


def test_a_rollback_whose_record_cannot_be_updated_still_reports_the_cause(env, monkeypatch):
    env.fake.on("fake-b", "ADD", CNIError(999, "Link not found"))

    def refuse(*args):
        raise CNIError(IO_FAILURE, "cannot remove attachment record: Read-only file system")

    monkeypatch.setattr(env.store, "remove", refuse)
    with pytest.raises(CNIError) as info:
        env.orchestrator().add(request())
    assert info.value.msg.endswith("Link not found")
    assert info.value.details == "attachment record not updated: cannot remove attachment record: Read-only file system"
    assert env.log.has("error", "after the rollback")


def test_a_broken_conf_fails_every_command_but_del(env):
    broken = CNIError(INVALID_NETWORK_CONFIG, "invalid network configuration: $: additional key 'logfile'")
    orch = env.orchestrator(conf_error=broken)
    for run in (lambda: orch.add(request()), lambda: orch.check(request()), lambda: orch.gc(set()), orch.status):
        with pytest.raises(CNIError) as info:
            run()
        assert info.value is broken
    assert env.fake.calls == []


# ---- ADD: a retried ADD after an unfinished one -------------------------------------------------------


def test_a_retried_add_first_removes_what_the_unfinished_one_recorded(env):
    conf = env.conf(delegate("a"), delegate("b"))
    env.fake.on("fake-b", "ADD", CNIError(999, "crash"), times=1)
    env.fake.on("fake-a", "DEL", CNIError(5, "busy"), times=1)
    with pytest.raises(CNIError):
        env.orchestrator(conf).add(request())
    assert [a.name for a in env.record().attachments] == ["a"]
    env.fake.calls.clear()

    env.orchestrator(conf).add(request())

    assert env.fake.commands() == [("fake-a", "DEL"), ("fake-a", "ADD"), ("fake-b", "ADD")]
    assert env.log.has("warning", "found the record of an unfinished ADD")
    assert [a.name for a in env.record().attachments] == ["a", "b"]


def test_an_unreadable_leftover_record_is_replaced_by_the_conf_delegates(env):
    os.makedirs(env.cni_dir)
    with open(env.store.path("meta", CID, "eth0"), "w") as f:
        f.write("{torn")
    env.orchestrator().add(request())
    assert env.fake.commands() == [("fake-b", "DEL"), ("fake-a", "DEL"), ("fake-a", "ADD"), ("fake-b", "ADD")]
    assert env.log.has("warning", "ignoring unreadable attachment record")


def test_leftovers_that_cannot_be_removed_stop_the_add_with_try_again_later(env):
    added(env)
    env.fake.on("fake-b", "DEL", CNIError(5, "busy"))
    env.fake.calls.clear()
    with pytest.raises(CNIError) as info:
        env.orchestrator().add(request())
    assert info.value.code == TRY_AGAIN_LATER
    assert info.value.msg.endswith('could not be removed: delegate "b" (fake-b on net1) DEL failed: busy')
    assert ("fake-a", "ADD") not in env.fake.commands()
    assert env.record() is not None  # the first ADD's record still says what to delete


# ---- ADD: readiness ----------------------------------------------------------------------------------


def test_add_waits_for_the_readiness_file(env, monkeypatch):
    ready = env.tmp_path / "ready"
    conf = env.conf(readinessindicatorfile=str(ready), readinessTimeout=30)
    polls = []

    class Clock:
        monotonic = staticmethod(lambda: 0.0)

        @staticmethod
        def sleep(seconds):
            polls.append(seconds)
            ready.touch()  # the default network comes up while ADD waits

    monkeypatch.setattr(commands, "time", Clock)
    env.orchestrator(conf).add(request())
    assert polls == [commands._READINESS_POLL]


def test_add_gives_up_on_a_readiness_file_that_never_appears(env, monkeypatch):
    conf = env.conf(readinessindicatorfile=str(env.tmp_path / "never"), readinessTimeout=2)
    now = iter([0.0, 1.0, 2.5])  # start, one poll, past the deadline
    monkeypatch.setattr(commands, "time", types.SimpleNamespace(monotonic=lambda: next(now), sleep=lambda s: None))
    with pytest.raises(CNIError) as info:
        env.orchestrator(conf).add(request())
    assert info.value.code == TRY_AGAIN_LATER and "did not appear within 2s" in info.value.msg
    assert env.fake.calls == [] and env.records() == []


# ---- ADD: the cluster's ports and the default route --------------------------------------------------


def wanted(name: str, master: bool = False, **extra) -> Wanted:
    return Wanted(from_dict(delegate(name), inherited_version="1.1.0"), master=master, **extra)


def test_add_uses_the_pods_networks_and_reports_them(env):
    pods = FakePods([wanted("podnet", master=True), wanted("storage", source="ns/storage", interface="stor0")])
    reporter = FakeReporter()

    env.orchestrator(pods=pods, reporter=reporter).add(request())

    assert pods.asked == [POD_ARGS]
    assert env.fake.commands() == [("fake-podnet", "ADD"), ("fake-storage", "ADD")]
    assert reporter.statuses == [("pod-handle", ["eth0", "stor0"], NETNS)]
    assert reporter.events == [("pod-handle", ["eth0", "stor0"])]
    assert env.record().attachments[1].source == "ns/storage"


def test_a_request_naming_no_pod_gets_the_conf_delegates_and_no_report(env):
    reporter = FakeReporter()
    env.orchestrator(pods=FakePods(None), reporter=reporter).add(request(cni_args=""))
    assert env.fake.commands() == [("fake-a", "ADD"), ("fake-b", "ADD")]
    assert reporter.statuses == reporter.events == []


def test_pods_without_a_reporter_are_wired_unreported(env):
    env.orchestrator(pods=FakePods([wanted("podnet", master=True)])).add(request())
    assert env.fake.commands() == [("fake-podnet", "ADD")]


def test_a_pod_that_cannot_be_read_runs_nothing(env):
    pods = FakePods(error=CNIError(3, "pod ns/web does not exist"))
    with pytest.raises(CNIError) as info:
        env.orchestrator(pods=pods, reporter=FakeReporter()).add(request())
    assert info.value.code == 3
    assert env.fake.calls == [] and env.records() == []


def test_a_status_that_cannot_be_written_rolls_the_add_back(env):
    reporter = FakeReporter(error=CNIError(TRY_AGAIN_LATER, "API unreachable"))
    pods = FakePods([wanted("podnet", master=True)])
    with pytest.raises(CNIError) as info:
        env.orchestrator(pods=pods, reporter=reporter).add(request())
    assert info.value.code == TRY_AGAIN_LATER
    assert env.fake.commands() == [("fake-podnet", "ADD"), ("fake-podnet", "DEL")]
    assert env.records() == [] and reporter.events == []


@pytest.fixture
def default_route(monkeypatch):
    """Stands in for orchestrator/default_route.py (netlink in the pod's namespace)."""
    moved: list[tuple] = []
    fake = types.SimpleNamespace(failure=None)

    def apply(attachments, netlink, netns):
        moved.append(([a.ifname for a in attachments if a.default_route], netlink, netns))
        if fake.failure is not None:
            raise fake.failure

    fake.apply, fake.moved = apply, moved
    monkeypatch.setitem(sys.modules, "multipy.orchestrator.default_route", fake)
    monkeypatch.setattr(orchestrator_package, "default_route", fake, raising=False)
    return fake


def test_a_default_route_request_moves_it(env, default_route):
    netlink = object()
    pods = FakePods([wanted("podnet", master=True), wanted("ext", default_route=("10.0.0.1",))])
    env.orchestrator(services=Services(netlink=netlink), pods=pods).add(request())
    assert default_route.moved == [(["net1"], netlink, NETNS)]


def test_no_default_route_request_leaves_routes_alone(env, default_route):
    env.orchestrator().add(request())
    assert default_route.moved == []


def test_a_default_route_that_cannot_move_rolls_back(env, default_route):
    default_route.failure = CNIError(INTERNAL, "cannot move the default route to net1")
    pods = FakePods([wanted("podnet", master=True), wanted("ext", default_route=("10.0.0.1",))])
    with pytest.raises(CNIError):
        env.orchestrator(pods=pods).add(request())
    assert env.fake.held == set() and env.records() == []


# ---- DEL ------------------------------------------------------------------------------------------------


def test_del_from_the_record_in_reverse_with_each_result_as_prev_result(env):
    conf = env.conf(delegate("a", capabilities={"portMappings": True}), delegate("b"))
    mappings = [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]
    env.orchestrator(conf).add(request(capability_args={"portMappings": mappings}))
    results = {a.name: a.result for a in env.record().attachments}
    env.fake.calls.clear()

    # A conf changed since ADD does not matter: DEL uses what the record says.
    env.orchestrator(env.conf(delegate("other"))).delete(request())

    assert env.fake.commands() == [("fake-b", "DEL"), ("fake-a", "DEL")]
    b, a = env.fake.calls
    assert (a.conf["prevResult"], b.conf["prevResult"]) == (results["a"], results["b"])
    assert a.conf["runtimeConfig"] == {"portMappings": mappings}
    assert (b.ifname, b.args) == ("net1", POD_ARGS.replace(";IP=10.9.9.9", ""))
    assert env.records() == [] and env.fake.held == set()


def test_del_of_an_attachment_whose_result_is_damaged_still_runs_without_prev_result(env):
    added(env)
    record = env.record()
    record.attachments[1].result = {"cniVersion": "1.1.0", "ips": "not a list"}
    env.store.save(record)
    env.orchestrator().delete(request())
    assert "prevResult" not in env.fake.calls[-2].conf
    assert env.records() == []


def test_a_failed_del_keeps_the_record_for_a_retry(env):
    added(env)
    env.fake.on("fake-a", "DEL", CNIError(5, "a refused"))
    env.fake.on("fake-b", "DEL", CNIError(11, "b refused"))

    with pytest.raises(CNIError) as info:
        env.orchestrator().delete(request())

    assert info.value.code == 11  # the first failure's (b is DELed first)
    assert info.value.msg == ('DEL of 2 delegate(s) failed; the record is kept for a retry: '
                              'delegate "b" (fake-b on net1) DEL failed: b refused (and 1 more)')  # fmt: skip
    assert info.value.details == 'delegate "a" (fake-a on eth0) DEL failed: a refused'
    assert env.record() is not None

    env.fake.reset("fake-a", "DEL")
    env.fake.reset("fake-b", "DEL")
    env.orchestrator().delete(request())
    assert env.records() == [] and env.fake.held == set()


def test_one_failed_del_names_no_others(env):
    added(env)
    env.fake.on("fake-a", "DEL", RuntimeError("boom"))
    with pytest.raises(CNIError) as info:
        env.orchestrator().delete(request())
    assert info.value.code == INTERNAL
    assert info.value.msg.endswith('delegate "a" (fake-a on eth0) DEL failed: RuntimeError: boom')
    assert "more" not in info.value.msg


@pytest.mark.parametrize("retry, kept", [(None, True), (True, True), (False, False)])
def test_retry_delete_on_error(env, retry, kept):
    keys = {} if retry is None else {"retryDeleteOnError": retry}
    conf = env.conf(**keys)
    added(env, conf)
    env.fake.on("fake-b", "DEL", CNIError(5, "refused"))

    with pytest.raises(CNIError) as info:  # the failure is reported either way
        env.orchestrator(conf).delete(request())

    assert (env.record() is not None) is kept
    assert ("the record is kept for a retry" if kept else "the record is removed (retryDeleteOnError is false)") in (
        info.value.msg
    )


def test_del_without_a_record_dels_the_current_confs_delegates(env):
    env.orchestrator().delete(request())
    assert env.fake.commands() == [("fake-b", "DEL"), ("fake-a", "DEL")]
    assert "prevResult" not in env.fake.calls[0].conf
    assert env.log.has("info", "deleting by the current config")


def test_del_with_an_unreadable_record_dels_the_current_confs_delegates(env):
    os.makedirs(env.cni_dir)
    with open(env.store.path("meta", CID, "eth0"), "w") as f:
        f.write("[]")
    env.orchestrator().delete(request())
    assert env.fake.commands() == [("fake-b", "DEL"), ("fake-a", "DEL")]
    assert env.log.has("warning", "ignoring unreadable attachment record") and env.records() == []


def test_del_without_a_record_and_a_conf_naming_only_nads_finds_nothing_to_do(env):
    conf = env.conf(clusterNetwork="podnet", kubeconfig="/nonexistent", confDir=str(env.tmp_path))
    env.orchestrator(conf).delete(request())
    assert env.fake.calls == []
    assert env.log.has("warning", "nothing is known to delete")


BROKEN = CNIError(INVALID_NETWORK_CONFIG, "invalid network configuration: $.logfile: unknown key")


def stand_in(env) -> multus.MultusConf:
    """What entry.py builds for DEL when the conf is refused: its name and cniDir only."""
    return multus.MultusConf(cni_version="1.1.0", name="meta", delegates=(), cni_dir=env.cni_dir)


def test_del_without_a_record_and_with_a_broken_conf_succeeds(env):
    env.orchestrator(stand_in(env), conf_error=BROKEN).delete(request())
    assert env.fake.calls == []
    assert env.log.has("warning", "nothing to delete") and env.log.has("warning", BROKEN.msg)


def test_del_with_a_record_and_a_broken_conf_runs_from_the_record(env):
    added(env)
    env.fake.calls.clear()
    env.orchestrator(stand_in(env), conf_error=BROKEN).delete(request())
    assert env.fake.commands() == [("fake-b", "DEL"), ("fake-a", "DEL")]
    assert env.records() == []


def test_del_with_an_unreadable_record_and_a_broken_conf_fails(env):
    """Something may be attached and nothing says what: succeeding would leak it (Multus #1087)."""
    os.makedirs(env.cni_dir)
    with open(env.store.path("meta", CID, "eth0"), "w") as f:
        f.write("{torn")
    with pytest.raises(CNIError) as info:
        env.orchestrator(stand_in(env), conf_error=BROKEN).delete(request())
    assert info.value.code == INVALID_NETWORK_CONFIG
    assert "attachment record unreadable" in info.value.msg and BROKEN.msg in info.value.msg


def _nameless(env: Env) -> multus.MultusConf:
    """What entry.py builds for DEL from a conf with no usable name."""
    return multus.MultusConf(cni_version="1.1.0", name="", delegates=(), cni_dir=env.cni_dir)


def test_del_with_a_nameless_broken_conf_and_no_record_succeeds(env):
    env.orchestrator(_nameless(env), conf_error=BROKEN).delete(request())
    assert env.fake.calls == []
    assert env.log.has("warning", "nothing was added, nothing to delete")


def test_del_with_a_nameless_broken_conf_finds_the_record_by_the_attachment(env):
    added(env)
    env.fake.calls.clear()
    env.orchestrator(_nameless(env), conf_error=BROKEN).delete(request())
    assert env.fake.commands() == [("fake-b", "DEL"), ("fake-a", "DEL")]
    assert env.records() == []


def test_del_with_a_nameless_broken_conf_and_two_matching_records_fails(env):
    added(env)
    other = env.conf()
    env.store.save(Record(**{**env.record().__dict__, "network_name": "other"}))
    with pytest.raises(CNIError) as info:
        env.orchestrator(_nameless(env), conf_error=BROKEN).delete(request())
    assert "meta, other" in info.value.msg and other.name == "meta"
    assert len(env.records()) == 2  # nothing guessed, nothing removed


def test_del_of_an_attachment_no_record_could_be_named_after_succeeds(env):
    """ADD writes the record before any delegate runs, so an unnameable one means nothing ran."""
    env.orchestrator().delete(request(cid=".hidden"))
    assert env.fake.calls == []


# ---- CHECK --------------------------------------------------------------------------------------------


def test_check_runs_each_delegates_check_with_its_own_result(env):
    added(env)
    results = [a.result for a in env.record().attachments]
    env.fake.calls.clear()
    env.orchestrator().check(request())
    assert env.fake.commands() == [("fake-a", "CHECK"), ("fake-b", "CHECK")]
    assert [c.conf["prevResult"] for c in env.fake.calls] == results


def test_check_failure_names_the_delegate(env):
    added(env)
    env.fake.on("fake-b", "CHECK", CNIError(999, "address missing"))
    with pytest.raises(CNIError) as info:
        env.orchestrator().check(request())
    assert info.value.msg == 'delegate "b" (fake-b on net1) CHECK failed: address missing'


def test_check_without_a_record_is_code_103(env):
    with pytest.raises(CNIError) as info:
        env.orchestrator().check(request())
    assert info.value.code == NO_ATTACHMENT_RECORD and "nothing was added" in info.value.msg


def test_check_with_an_unreadable_record_is_code_103(env):
    os.makedirs(env.cni_dir)
    with open(env.store.path("meta", CID, "eth0"), "w") as f:
        f.write("{torn")
    with pytest.raises(CNIError) as info:
        env.orchestrator().check(request())
    assert info.value.code == NO_ATTACHMENT_RECORD and "unreadable" in info.value.msg


def test_check_of_an_unfinished_add_is_code_103(env):
    added(env)
    record = env.record()
    record.attachments[1].result = None
    env.store.save(record)
    with pytest.raises(CNIError) as info:
        env.orchestrator().check(request())
    assert info.value.code == NO_ATTACHMENT_RECORD and 'delegate "b" has no ADD result' in info.value.msg


def test_check_reaches_the_implementation_the_add_used(env):
    """binaryDelegates at ADD time wins over today's conf: the record's binary_types choose."""
    conf = env.conf(binaryDelegates=["fake-a"])
    added(env, conf)
    orch = env.orchestrator()  # today's conf lists no binaryDelegates
    assert orch._chain(env.record()).binary_types == {"fake-a"}
    assert orch.chain.binary_types == frozenset()
    orch.check(request())


# ---- GC -----------------------------------------------------------------------------------------------


def test_gc_dels_stale_attachments_and_tells_each_delegate_what_is_valid(env):
    orch = added(env, cid="live")
    orch.add(request("stale"))
    env.fake.calls.clear()

    orch.gc({("live", "eth0")})

    assert env.fake.commands("stale") == [("fake-b", "DEL"), ("fake-a", "DEL")]
    assert env.records() == ["meta:live:eth0"]
    gcs = [c for c in env.fake.calls if c.command == "GC"]
    assert [(c.plugin_type, c.conf["cni.dev/valid-attachments"]) for c in gcs] == [
        ("fake-a", [{"containerID": "live", "ifname": "eth0"}]),
        ("fake-b", [{"containerID": "live", "ifname": "net1"}]),
    ]
    assert env.log.has("info", "GC: removing stale attachment stale/eth0")


def test_gc_keeps_what_it_could_not_remove_and_reports_every_error(env):
    orch = added(env, cid="stale")
    env.fake.on("fake-b", "DEL", CNIError(5, "busy"))
    env.fake.on("fake-a", "GC", CNIError(5, "store locked"))

    with pytest.raises(CNIError) as info:
        orch.gc(set())

    assert info.value.msg.startswith("GC finished with 2 error(s): delegate \"b\" (fake-b on net1) DEL failed: busy")
    assert info.value.details == 'delegate "a" GC failed: store locked'
    assert env.records() == ["meta:stale:eth0"]
    gcs = {c.plugin_type: c.conf["cni.dev/valid-attachments"] for c in env.fake.calls if c.command == "GC"}
    assert gcs["fake-b"] == [{"containerID": "stale", "ifname": "net1"}]  # still held: still valid


def test_gc_of_nothing_is_quiet(env):
    env.orchestrator().gc(set())
    assert env.fake.commands() == [("fake-a", "GC"), ("fake-b", "GC")]


# ---- STATUS -------------------------------------------------------------------------------------------


def test_status_asks_every_delegate(env):
    ready = env.tmp_path / "ready"
    ready.touch()
    env.orchestrator(env.conf(readinessindicatorfile=str(ready))).status()
    assert env.fake.commands() == [("fake-a", "STATUS"), ("fake-b", "STATUS")]


def test_status_without_the_readiness_file_is_50(env):
    conf = env.conf(readinessindicatorfile=str(env.tmp_path / "missing"))
    with pytest.raises(CNIError) as info:
        env.orchestrator(conf).status()
    assert info.value.code == STATUS_UNAVAILABLE and env.fake.calls == []


@pytest.mark.parametrize(
    "code, reported", [(STATUS_UNAVAILABLE_EXISTING_AFFECTED, 51), (STATUS_UNAVAILABLE, 50), (IO_FAILURE, 50)]
)
def test_a_delegate_not_ready_makes_status_50_or_its_own_51(env, code, reported):
    env.fake.on("fake-b", "STATUS", CNIError(code, "store unreachable", "details"))
    with pytest.raises(CNIError) as info:
        env.orchestrator().status()
    assert (info.value.code, info.value.msg, info.value.details) == (
        reported, 'delegate "b" is not ready: store unreachable', "details")  # fmt: skip


# ---- labels ------------------------------------------------------------------------------------------


def test_a_conflist_delegate_is_labelled_as_one(env):
    conflist = {"name": "chain", "plugins": [{"type": "fake-x"}, {"type": "fake-y"}]}
    env.fake.on("fake-y", "ADD", CNIError(7, "no"))
    with pytest.raises(CNIError) as info:
        env.orchestrator(env.conf(conflist)).add(request())
    assert info.value.msg == 'delegate "chain" (conflist on eth0) ADD failed: no'
    # The chain's DEL runs its plugins in reverse.
    assert env.fake.commands() == [("fake-x", "ADD"), ("fake-y", "ADD"), ("fake-y", "DEL"), ("fake-x", "DEL")]


def test_records_are_plain_json_the_next_process_can_read(env):
    added(env)
    with open(env.store.path("meta", CID, "eth0")) as f:
        doc = json.load(f)
    assert [a["network"]["name"] for a in doc["attachments"]] == ["a", "b"]
