"""`multipy install` runs what it is about to switch a node to on the node itself, chrooted into
--host-root, and switches only when it runs there (install_verify.py).

The node is a temp directory holding only the loader and the glibc libraries of this machine (as ldd
lists them), minus what a test takes away; the runtime tree is a few kilobytes of C built here with
gcc: an "interpreter" answering what the launchers ask (multipy/testing/elf_trees.py). The real
Python tree is checked by the image's test. Each refusal must name its reason and leave the node's
old executables and conf as they were, with no temporary file left."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from multipy.cli import install_verify
from multipy.cli.commands import cli
from multipy.cli.installer import EXIT_UNVERIFIED
from multipy.testing.elf_trees import FAKE_PYTHON, TREE_LIB, USES_LIBM, compile_c, glibc_root, newer_glibc

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "conf" / "10-multus.conf"
SCRIPT = Path(sys.executable).parent / "multipy"
OLD = {"opt/cni/bin/multus-cni": b"#!/bin/sh\necho old multus-cni\n", "opt/cni/bin/multipy": b"#!/bin/sh\necho old\n",
       "etc/cni/net.d/10-multus.conf": b'{"old": "conf"}\n'}  # fmt: skip

pytestmark = [
    pytest.mark.root("chroots into a temp host root"),
    pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ldd") is None, reason="needs gcc and ldd"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The programs, compiled once: interpreters needing libc + libm + a library of the tree (through
    DT_RUNPATH $ORIGIN/../lib), or libc alone, and variants that fail or hang."""
    out = tmp_path_factory.mktemp("elf")
    lib = compile_c(TREE_LIB, out / "libtree.so.1", shared=True, soname="libtree.so.1")
    tree_python = {"libs": [lib, "-lm"], "runpath": "$ORIGIN/../lib"}
    return {
        "lib": lib,
        "python": compile_c(FAKE_PYTHON, out / "python", defines=["NEEDS_LIBM", "NEEDS_TREE_LIB"], **tree_python),
        "plain": compile_c(FAKE_PYTHON, out / "plain", strip=True),
        "broken": compile_c(FAKE_PYTHON, out / "broken", defines=["BROKEN_PLUGIN"]),
        "hang": compile_c(FAKE_PYTHON, out / "hang", defines=["HANG"]),
        "ext": compile_c(USES_LIBM, out / "ext.so", shared=True, libs=["-lm"]),
    }


def make_tree(path: Path, python: Path, **extra: Path) -> Path:
    """A runtime tree: bin/python3 -> python3.11, lib/libtree.so.1, and `extra` (relative path: file)."""
    for relative, source in {"bin/python3.11": python, "lib/libtree.so.1": extra.pop("lib"), **extra}.items():
        (path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, path / relative)
    (path / "bin/python3").symlink_to("python3.11")
    return path


@pytest.fixture
def node(tmp_path, built):
    """(host root with all the glibc the interpreter needs and an old install, runtime tree)."""
    host = glibc_root(tmp_path / "host", built["python"])
    for relative, data in OLD.items():
        (host / relative).parent.mkdir(parents=True, exist_ok=True)
        (host / relative).write_bytes(data)
        (host / relative).chmod(0o755)
    return host, make_tree(tmp_path / "tree", built["python"], lib=built["lib"])


def install(host, tree, *args):
    argv = ["install", "--conf", str(SEED), "--conf-dir", "/etc/cni/net.d", "--bin-dir", "/opt/cni/bin",
            "--host-root", str(host), "--runtime-dir", "/opt/multipy", "-o", "json", *args]  # fmt: skip
    if tree is not None:
        argv += ["--runtime", str(tree)]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout), result.stderr


def with_proc(host, *argv, **env):
    """argv with this machine's /proc at the host root's /proc, as on a node, in a mount namespace of its own
    (the mount goes with it); `chroot` first in argv runs it in the host root."""
    (host / "proc").mkdir(exist_ok=True)
    script = 'mount --bind /proc "$0/proc" && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(host), *argv],
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env}, capture_output=True, timeout=60)  # fmt: skip


def state(host):
    """What the node runs and where nothing else may appear: old files (bytes, inode), directory lists."""
    files = {r: ((host / r).read_bytes(), os.stat(host / r).st_ino) for r in OLD}
    return files, sorted(os.listdir(host / "opt/cni/bin")), sorted(os.listdir(host / "etc/cni/net.d"))


def refused(host, tree, *args):
    before = state(host)
    code, doc, err = install(host, tree, *args)
    assert code == EXIT_UNVERIFIED, err
    assert doc["ok"] is False and err.endswith("; nothing switched\n")
    assert state(host) == before  # old launchers and conf untouched, no temporary launcher left
    return err


def test_a_good_install_switches(node):
    host, tree = node
    # As on a node, where /proc is there (the loader finds the interpreter's $ORIGIN through /proc/self/exe).
    out = with_proc(host, str(SCRIPT), "install", "--conf", str(SEED), "--conf-dir", "/etc/cni/net.d", "--bin-dir",
                    "/opt/cni/bin", "--host-root", str(host), "--runtime", str(tree), "-o", "json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    (runtime,) = [e for e in doc["files"] if e.get("kind") == "runtime"]
    assert runtime["glibc"] and tuple(map(int, runtime["glibc"].split("."))) >= (2, 2, 5)
    digest = runtime["digest"]
    assert {e["path"]: e["action"] for e in doc["files"] if "mode" in e} == {
        "/opt/cni/bin/multus-cni": "updated", "/opt/cni/bin/multipy": "updated",
        "/etc/cni/net.d/10-multus.conf": "updated"}  # fmt: skip
    assert sorted(os.listdir(host / "opt/cni/bin")) == ["multipy", "multus-cni"]  # no temporary launcher left
    out = with_proc(host, "chroot", str(host), "/opt/cni/bin/multus-cni", CNI_COMMAND="VERSION")
    assert out.returncode == 0 and json.loads(out.stdout)["cniVersion"] == "1.0.0", out.stderr
    out = with_proc(host, "chroot", str(host), "/opt/cni/bin/multipy", "where")
    assert out.stdout.decode() == f"/opt/multipy/{digest}/bin/python3.11\n", out.stderr
    # A second pass changes nothing, so it runs nothing either (the node runs what it ran). The other
    # tests run without /proc in the host root: then the loader is told the interpreter's directory.
    code, doc, _ = install(host, tree)
    assert code == 0 and {e["action"] for e in doc["files"]} == {"unchanged"}


def test_a_root_lacking_a_library_is_refused_and_nothing_switched(node, built):
    host, tree = node
    for found in host.rglob("libm.so.6"):
        found.unlink()
    err = refused(host, tree)
    assert "multus-cni (CNI_COMMAND=VERSION) failed on the node: the node has no libm.so.6" in err
    # The new tree may stay (content-addressed, harmless); nothing names it.
    assert len(os.listdir(host / "opt/multipy")) == 1


def test_a_newer_glibc_version_than_the_root_has_is_refused(node, built, tmp_path):
    host, _ = node
    tree = make_tree(tmp_path / "newer", newer_glibc(built["plain"], tmp_path / "python-newer"), lib=built["lib"])
    err = refused(host, tree)
    assert "the node's glibc is too old: version GLIBC_2.99 not found, needed by /opt/multipy/" in err
    assert "the runtime tree needs glibc >= 2.99 (bin/python3.11)" in err


def test_a_library_loaded_only_later_is_checked_with_the_nodes_loader(node, built, tmp_path):
    # The interpreter runs without libm; an extension module of the tree needs it, as a wheel's
    # extension needs what the interpreter does not: VERSION passes, the loader's listing does not.
    host, _ = node
    for found in host.rglob("libm.so.6"):
        found.unlink()
    tree = make_tree(tmp_path / "later", built["plain"], lib=built["lib"], **{"lib/ext/uses_libm.so": built["ext"]})
    err = refused(host, tree)
    assert "the runtime tree's lib/ext/uses_libm.so does not load on the node: the node has no libm.so.6" in err


def test_a_plugin_that_does_not_load_is_refused(node, built, tmp_path):
    host, _ = node
    tree = make_tree(tmp_path / "broken", built["broken"], lib=built["lib"])
    err = refused(host, tree)
    assert ("multipy (`multipy check-plugins`) failed on the node: exit 1, multipy: native plugin 'bridge' "
            "(delegates.bridge:Bridge) failed to load: ModuleNotFoundError: No module named 'delegates'") in err  # fmt: skip


def test_without_a_runtime_the_nodes_interpreter_is_run(node, built):
    host, _ = node
    err = refused(host, None, "--python", "/usr/bin/python3")
    assert "multus-cni cannot start on the node: there is no /usr/bin/python3" in err
    # The node's own interpreter: there, it passes (and needs the tree's library: it has it).
    (host / "usr/lib").mkdir(parents=True)
    shutil.copy2(built["lib"], host / "usr/lib/libtree.so.1")
    (host / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(built["python"], host / "usr/bin/python3")
    code, doc, err = install(host, None, "--python", "/usr/bin/python3")
    assert code == 0, err
    assert (host / "opt/cni/bin/multus-cni").read_bytes().startswith(b"#!/usr/bin/python3 -I\n")


def test_without_sys_chroot_it_fails_closed(node):
    host, tree = node
    before = state(host)
    out = subprocess.run(["setpriv", "--bounding-set", "-sys_chroot", str(SCRIPT), "install", "--conf", str(SEED),
                          "--conf-dir", "/etc/cni/net.d", "--bin-dir", "/opt/cni/bin", "--host-root", str(host),
                          "--runtime", str(tree)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == EXIT_UNVERIFIED, out.stderr
    assert f"cannot chroot into --host-root {host} to run the new executables as the node does: the installing " \
           "container needs the SYS_CHROOT capability" in out.stderr  # fmt: skip
    assert state(host) == before


def test_no_verify_switches_all_the_same(node, built, tmp_path):
    host, _ = node
    tree = make_tree(tmp_path / "broken", built["broken"], lib=built["lib"])
    code, _, err = install(host, tree, "--no-verify")
    assert code == 0, err
    assert (host / "opt/cni/bin/multus-cni").read_bytes() != OLD["opt/cni/bin/multus-cni"]


def test_a_hanging_launcher_is_killed_within_the_timeout(tmp_path, built):
    host = glibc_root(tmp_path / "host", built["hang"])
    launcher = install_verify.Launcher("multus-cni", b"#!/py -I\n", 0o755, install_verify.VERSION)
    shutil.copy2(built["hang"], host / "py")
    started = time.monotonic()
    with pytest.raises(install_verify.Unverified, match=r"multus-cni \(CNI_COMMAND=VERSION\) did not finish within 1 s"):
        install_verify.verify(str(host), "/bin", [launcher], "/py", timeout=1.0)
    assert time.monotonic() - started < 10
    assert os.listdir(host / "bin") == []
    alive = subprocess.run(["pgrep", "-f", "^/py -I /bin/"], capture_output=True)  # what it started is gone
    assert alive.returncode == 1, alive.stdout
