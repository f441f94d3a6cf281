"""Issue 13's defects in the orchestrator and its files, each reproduced: GC and valid attachments (1),
files in cniDir (5), a killed writer's temp files (6), IDs no record can be named after (7), and one
container's requests serialized by its lock (8). Hermetic: FakeDelegates, no root."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from test_orchestrator import CID, Env, added, delegate, request  # noqa: F401 (Env: the fixture's type)

from multipy import files
from multipy.cni.errors import INVALID_ENVIRONMENT, TRY_AGAIN_LATER, CNIError
from multipy.orchestrator import lock
from multipy.orchestrator.commands import Request
from multipy.orchestrator.record import CorruptRecord


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def _gc_valid_lists(env: Env) -> dict[str, set[tuple[str, str]]]:
    return {c.plugin_type: {(v["containerID"], v["ifname"]) for v in c.conf["cni.dev/valid-attachments"]}
            for c in env.fake.calls if c.command == "GC"}  # fmt: skip


def _released_by_gc(env: Env) -> set[tuple[str, str, str]]:
    """What each delegate's GC would release: held by it, and not in the valid list it was given."""
    lists = _gc_valid_lists(env)
    return {h for h in env.fake.held if h[0] in lists and (h[1], h[2]) not in lists[h[0]]}


# ---- 1: GC never releases what the runtime says is valid ---------------------------------------------


def _truncate(path):
    with open(path, "wb") as f:
        f.write(b'{"kind": "multipyAttach')


def _fifo(path):
    os.unlink(path)
    os.mkfifo(path)


@pytest.mark.parametrize("damage", [_truncate, os.unlink, _fifo], ids=["truncated", "missing", "fifo"])
def test_gc_keeps_every_delegates_addresses_of_a_valid_attachment_without_a_readable_record(env, damage):
    orch = added(env, cid="live")
    orch.add(request("other"))
    orch.add(request("gone"))
    damage(os.path.join(env.cni_dir, "meta:live:eth0"))
    env.fake.calls.clear()

    orch.gc({("live", "eth0"), ("other", "eth0")})

    assert env.fake.commands("gone") == [("fake-b", "DEL"), ("fake-a", "DEL")]  # stale: still removed
    assert _released_by_gc(env) == set()
    assert {h for h in env.fake.held if h[1] == "live"} == {("fake-a", "live", "eth0"), ("fake-b", "live", "net1")}
    assert any(level == "warning" and "live/eth0" in line and "delegates are unknown" in line
               for level, line in env.log.lines)  # fmt: skip


def test_gc_with_every_valid_attachment_recorded_still_gcs_the_delegates(env):
    orch = added(env, cid="live")
    env.fake.calls.clear()
    orch.gc({("live", "eth0")})
    assert _gc_valid_lists(env) == {"fake-a": {("live", "eth0")}, "fake-b": {("live", "net1")}}


# ---- 5: files in cniDir --------------------------------------------------------------------------------


def test_read_regular_refuses_fifos_symlinks_devices_and_oversized_files(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to("/dev/zero")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    started = time.monotonic()
    for path, why in ((fifo, "not a regular file"), (link, "symbolic link"), ("/dev/zero", "not a regular file"),
                      (big, "larger than 100 bytes")):  # fmt: skip
        with pytest.raises(files.UnsafeFile, match=why):
            files.read_regular(str(path), 100)
    assert time.monotonic() - started < 2
    (tmp_path / "ok").write_bytes(b"x" * 100)
    assert files.read_regular(str(tmp_path / "ok"), 100) == b"x" * 100


def test_create_never_writes_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "outside"
    victim.write_text("precious")
    (tmp_path / "dir").mkdir()
    planted = tmp_path / "dir" / "record"
    planted.symlink_to(victim)
    with pytest.raises(OSError) as info:
        files.create(str(planted), b"overwritten")
    assert info.value.errno == errno.ELOOP
    assert victim.read_text() == "precious"


def _in_thread(fn, timeout: float = 5.0):
    outcome: list = []

    def run():
        try:
            outcome.append(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001
            outcome.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return thread, outcome


def test_a_fifo_at_a_record_path_hangs_neither_del_nor_gc(env):
    orch = added(env)
    path = os.path.join(env.cni_dir, f"meta:{CID}:eth0")
    _fifo(path)
    try:
        thread, outcome = _in_thread(lambda: orch.delete(request()))
        assert not thread.is_alive(), "DEL hung on a FIFO at the record's path"
        assert outcome[0][0] == "ok"
        assert env.fake.held == set()  # deleted by the current conf, as for any unreadable record
        orch.add(request())
        _fifo(path)
        thread, outcome = _in_thread(lambda: orch.gc({(CID, "eth0")}))
        assert not thread.is_alive(), "GC hung on a FIFO at the record's path"
    finally:
        # a reader stuck in open() (the old code) is released by a writer
        if thread.is_alive():
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)


def test_a_symlinked_record_is_refused_not_followed(env):
    orch = added(env)
    path = os.path.join(env.cni_dir, f"meta:{CID}:eth0")
    elsewhere = os.path.join(env.tmp_path, "planted")
    os.rename(path, elsewhere)
    os.symlink(elsewhere, path)
    with pytest.raises(CorruptRecord, match="symbolic link"):
        env.store.load("meta", CID, "eth0")
    assert orch.store.all("meta") == []


def test_a_record_symlinked_to_dev_zero_is_not_read_without_bound(env, tmp_path):
    added(env)
    path = os.path.join(env.cni_dir, f"meta:{CID}:eth0")
    os.unlink(path)
    os.symlink("/dev/zero", path)
    # In a child with 1 GiB of address space: an unbounded read dies of MemoryError or runs past the timeout.
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from multipy.orchestrator.record import RecordStore, CorruptRecord
        store = RecordStore({env.cni_dir!r})
        try:
            store.load("meta", {CID!r}, "eth0")
        except CorruptRecord as exc:
            print("refused:", exc)
        store.all("meta")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused:" in proc.stdout


# ---- 6: a killed writer's temp files --------------------------------------------------------------------


def _plant_temp(env: Env, name: str, age: float = 0.0) -> str:
    os.makedirs(env.cni_dir, exist_ok=True)
    path = os.path.join(env.cni_dir, f".{name}.4242-0123456789ab.tmp")
    with open(path, "wb") as f:
        f.write(b'{"kind": "multipyAttachmentV1"')
    if age:
        past = time.time() - age
        os.utime(path, (past, past))
    return path


def test_del_removes_the_temp_files_a_killed_add_left_for_that_attachment(env):
    orch = added(env)
    mine = _plant_temp(env, f"meta:{CID}:eth0")
    theirs = _plant_temp(env, "meta:other:eth0")
    orch.delete(request())
    assert not os.path.exists(mine)
    assert os.path.exists(theirs)  # another attachment's: it may be a live writer's


def test_del_of_a_sandbox_killed_before_its_record_was_renamed_removes_the_temp_file(env):
    orch = env.orchestrator()
    mine = _plant_temp(env, f"meta:{CID}:eth0")
    orch.delete(request())
    assert not os.path.exists(mine)


def test_gc_removes_old_temp_files_and_keeps_young_ones(env):
    orch = added(env)
    old = _plant_temp(env, "meta:gone:eth0", age=3600)
    young = _plant_temp(env, "meta:busy:eth0")
    with lock.held(env.cni_dir, "busy"):  # its writer is live: it holds the container's lock
        orch.gc({(CID, "eth0")})
    assert not os.path.exists(old)
    assert os.path.exists(young)


def test_gc_of_a_stale_attachment_removes_its_young_temp_files_too(env):
    """Found by the SIGKILL suite: a kill before the final record write's rename, then GC (not DEL):
    the record is GCed under its container's lock, so its temp file, however young, goes with it."""
    orch = added(env)
    young = _plant_temp(env, f"meta:{CID}:eth0")
    orch.gc(set())
    assert not os.path.exists(young)
    assert env.records() == []


def test_gc_removes_the_young_temp_file_of_an_add_killed_before_its_first_record(env):
    """Found by the SIGKILL suite in CI: a kill before the write-ahead record's rename leaves a temp
    file and no record; the runtime's GC (instead of its DEL) must still remove it: its container's
    lock is free, so no writer is live. A busy container's temp file stays."""
    orch = env.orchestrator()
    killed = _plant_temp(env, "meta:killed:eth0")
    busy = _plant_temp(env, "meta:busy:eth0")
    with lock.held(env.cni_dir, "busy"):
        orch.gc(set())
    assert not os.path.exists(killed)
    assert os.path.exists(busy)


# ---- 7: IDs no record can be named after -----------------------------------------------------------------


@pytest.mark.parametrize("cid, ifname, field", [
    ("c" * 250, "eth0", "CNI_CONTAINERID"),
    (CID, ".hidden", "CNI_IFNAME"),
])  # fmt: skip
def test_an_add_no_record_can_be_named_for_fails_with_4_and_every_del_succeeds(env, cid, ifname, field):
    orch = env.orchestrator()
    req = Request(cid, ifname, "/run/netns/pod", "", None, "1.1.0")
    with pytest.raises(CNIError) as info:
        orch.add(req)
    assert info.value.code == INVALID_ENVIRONMENT
    assert field in info.value.msg
    assert env.fake.calls == []  # refused before anything was made
    for _ in range(2):
        orch.delete(req)
    assert env.fake.held == set()
    assert env.records() == []


def test_the_longest_nameable_container_id_adds_and_deletes(env):
    orch = env.orchestrator()
    longest = "c" * (files.NAME_MAX - files.TEMP_OVERHEAD - len("meta::eth0"))
    req = Request(longest, "eth0", "/run/netns/pod", "", None, "1.1.0")
    orch.add(req)
    assert env.records() == [f"meta:{longest}:eth0"]
    orch.delete(req)
    assert env.records() == [] and env.fake.held == set()


def test_entry_refuses_an_unnameable_add_with_4_and_accepts_its_del(tmp_path):
    """End to end through the skeleton and entry.build: the runtime's view of the pair."""
    from multipy import entry
    from multipy.cni import skel

    conf = {"cniVersion": "1.0.0", "name": "meta", "type": "multus-cni", "cniDir": str(tmp_path / "cache"),
            "binDir": str(tmp_path / "bin"), "delegates": [{"cniVersion": "1.0.0", "name": "a", "type": "nope"}]}
    for cid, ifname in (("c" * 250, "eth0"), ("c1", ".x")):
        outcomes = []
        for command in ("ADD", "DEL", "DEL"):
            environ = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_IFNAME": ifname,
                       "CNI_NETNS": "/run/netns/none", "CNI_PATH": str(tmp_path / "bin")}
            out = io.StringIO()
            code = skel.run(entry.build, environ=environ, stdin=io.BytesIO(json.dumps(conf).encode()), stdout=out)
            outcomes.append((code, json.loads(out.getvalue()).get("code") if out.getvalue() else None))
        assert outcomes == [(1, INVALID_ENVIRONMENT), (0, None), (0, None)], (cid[:10], ifname)


# ---- 8: one container, one request at a time -------------------------------------------------------------


def test_a_second_add_of_the_same_container_waits_for_the_first_then_fails_with_11(env):
    entered, release = threading.Event(), threading.Event()

    def slow(call):
        entered.set()
        release.wait(10)
        return env.fake._default(call)

    env.fake.on("fake-a", "ADD", slow, times=1)
    first = env.orchestrator()
    thread, outcome = None, []
    try:
        thread = threading.Thread(target=lambda: outcome.append(first.add(request())), daemon=True)
        thread.start()
        assert entered.wait(5)
        second = env.orchestrator()
        second.lock_wait = 0.3
        with pytest.raises(CNIError) as info:
            second.add(request())
        assert info.value.code == TRY_AGAIN_LATER
        assert "another request for container" in info.value.msg
        with pytest.raises(CNIError) as info:
            second.delete(request())  # the pod's DEL racing a hot-plug: it waits its turn too
        assert info.value.code == TRY_AGAIN_LATER
    finally:
        release.set()
        if thread is not None:
            thread.join(10)
    assert outcome and env.fake.commands() == [("fake-a", "ADD"), ("fake-b", "ADD")]
    env.orchestrator().delete(request())
    assert env.fake.held == set()
    assert not os.path.exists(lock.path_for(env.cni_dir, CID))  # the DEL dropped the lock file


def test_concurrent_adds_and_dels_of_one_container_never_leave_two_sets_of_addresses(env):
    errors: list = []

    def worker(op):
        try:
            getattr(env.orchestrator(), op)(request())
        except CNIError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(op,)) for op in ["add", "add", "delete", "add"] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    held = {h for h in env.fake.held}
    assert held in (set(), {("fake-a", CID, "eth0"), ("fake-b", CID, "net1")})
    record = env.record()
    assert (record is None) == (held == set())


def test_the_lock_is_shared_with_another_process(env):
    path = lock.path_for(env.cni_dir, CID)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({path!r}, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        orch = env.orchestrator()
        orch.lock_wait = 0.3
        with pytest.raises(CNIError) as info:
            orch.add(request())
        assert info.value.code == TRY_AGAIN_LATER
        assert env.fake.calls == []
    finally:
        holder.stdin.close()
        holder.wait(10)
    env.orchestrator().add(request())  # its holder gone, the lock is free
    assert env.fake.commands() == [("fake-a", "ADD"), ("fake-b", "ADD")]


def test_gc_skips_a_stale_attachment_whose_container_is_busy(env):
    orch = added(env, cid="stale")
    env.fake.calls.clear()
    with lock.held(env.cni_dir, "stale"):
        orch.gc(set())
    assert [c for c in env.fake.commands() if c[1] == "DEL"] == []
    assert env.records() == ["meta:stale:eth0"]
    assert env.log.has("info", "busy; left for the next GC")
