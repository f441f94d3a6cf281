"""Disk faults: cniDir or dataDir full (a 64 KiB tmpfs) or read-only (a read-only bind mount), each in a
private mount namespace (unshare -m: nothing is mounted on the host); and symlinks, FIFOs and device
files planted at the record, temp and lease paths. ADD fails cleanly or succeeds without following
them; nothing outside the node's state is touched, nothing hangs, DEL leaves nothing."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from .conftest import BOUND, TALLY, cni_error

MOUNTS = {
    # where -> shell run in the private mount namespace before the plugin
    "cniDir full": "mount -t tmpfs -o size=64k none {cache} && (dd if=/dev/zero of={cache}/fill bs=4k 2>/dev/null; true)",
    "dataDir full": "mount -t tmpfs -o size=64k none {data} && (dd if=/dev/zero of={data}/fill bs=4k 2>/dev/null; true)",
    "cniDir read-only": "mount --bind {cache} {cache} && mount -o remount,bind,ro {cache}",
    "dataDir read-only": "mount --bind {data} {data} && mount -o remount,bind,ro {data}",
}


@pytest.mark.parametrize("fault", sorted(MOUNTS))
def test_full_or_read_only(local_world, fault):
    figures = TALLY.of("disk full / read-only")
    world = local_world
    os.makedirs(world.cache, exist_ok=True)
    os.makedirs(world.data, exist_ok=True)
    argv, env = world.argv_env("ADD", "d1", None)
    setup = MOUNTS[fault].format(cache=shlex.quote(world.cache), data=shlex.quote(world.data))
    script = f"{setup} && exec {' '.join(map(shlex.quote, argv))}"
    import json

    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          input=json.dumps(world.conf()).encode(), capture_output=True, env=env, timeout=BOUND)
    figures.runs += 1
    figures.faults += 1
    from multipy.testing.runtime import Outcome

    outcome = Outcome(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    doc = cni_error(outcome)
    assert doc["code"] in (5, 999) and doc["code"] == 5 or "No space" in doc["msg"] or "Read-only" in doc["msg"], doc
    problems = []
    if "dataDir" in fault:  # cniDir is real: the rollback must have left no record, and no link anywhere
        problems += world.check(figures, what=fault)
    assert world.run("DEL", "d1").ok
    world.forget("d1")
    problems += world.check(figures, what=f"{fault}: after DEL")
    assert not problems, "\n".join(problems)


def _plant(kind: str, path: str, victim: str) -> None:
    if kind == "symlink":
        os.symlink(victim, path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.mknod(path, 0o600 | 0o020000, os.makedev(1, 5))  # a char device: /dev/zero's numbers


@pytest.mark.parametrize("kind", ["symlink", "fifo", "device"])
@pytest.mark.parametrize("where", ["record", "lease", "stale temp"])
def test_planted_file(local_world, tmp_path, kind, where):
    figures = TALLY.of("planted files")
    world = local_world
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.makedirs(world.cache, exist_ok=True)
    lease_dir = os.path.join(world.data, "k8snet1")
    os.makedirs(lease_dir, exist_ok=True)
    path = {
        "record": os.path.join(world.cache, "multus-fault:p1:eth0"),
        "lease": os.path.join(lease_dir, "10.244.1.2"),  # the first address host-local hands out
        "stale temp": os.path.join(world.cache, ".multus-fault:p1:eth0.1-000000000000.tmp"),
    }[where]
    _plant(kind, path, str(victim))
    figures.faults += 1
    added = world.run("ADD", "p1")
    figures.runs += 1
    if not added.ok:
        doc = cni_error(added)
        assert doc["code"] != 999, doc
    assert victim.read_text() == "precious\n", "a file outside the node's state was written through a planted path"
    deleted = world.run("DEL", "p1")
    if not deleted.ok:  # a planted record the plugin refuses to read is reported; the operator removes it
        doc = cni_error(deleted)
        assert doc["code"] != 999, doc
    if os.path.lexists(path) and not os.path.isfile(path) or os.path.islink(path):
        os.unlink(path)  # the planted entry itself is the test's, not a leak of the plugin
    world.forget("p1")
    if not deleted.ok:
        assert world.run("DEL", "p1").ok
    problems = world.check(figures, what=f"{kind} at the {where} path")
    assert victim.read_text() == "precious\n"
    assert not problems, "\n".join(problems)
