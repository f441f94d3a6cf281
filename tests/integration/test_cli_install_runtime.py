"""`multipy install --runtime` with a runtime tree, into a temporary host root, as the DaemonSet does
it with the node's directories under /host. The launchers are then run as the node runs them: in a
private mount namespace where the host root's /opt is /opt, so /opt/cni/bin/multus-cni starts
/opt/multipy/<digest>/bin/python3, paths exactly as on a node. An upgrade (a changed tree) gets a
second digest directory and the launchers move to it; the first stays until --prune-runtimes, which
removes only it.

The tree must be self-contained: a virtualenv (this repository's .venv) is refused, naming what it
needs from outside. So the tree here is a small self-contained one built with gcc, whose interpreter
answers what the launchers ask (multipy/testing/elf_trees.py); the host root holds the glibc it needs,
since the install runs the new launchers there first (test_cli_install_verify.py). The real Python
tree is checked by the image's test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from multipy.cli.commands import cli
from multipy.cli.installer import EXIT_NOT_SELF_CONTAINED
from multipy.testing.elf_trees import FAKE_PYTHON, TREE_LIB, compile_c, glibc_root

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "conf" / "10-multus.conf"
VENV = Path(sys.prefix)

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


@pytest.fixture
def image(tmp_path):
    """The image's tree (an interpreter needing libm and lib/libtree.so.1 through DT_RUNPATH
    $ORIGIN/../lib) and a host root holding the glibc it needs."""
    source = tmp_path / "image/opt/multipy"
    lib = compile_c(TREE_LIB, source / "lib/libtree.so.1", shared=True, soname="libtree.so.1")
    python = compile_c(FAKE_PYTHON, source / "bin/python3.11", defines=["NEEDS_LIBM", "NEEDS_TREE_LIB"],
                       libs=[lib, "-lm"], runpath="$ORIGIN/../lib")  # fmt: skip
    (source / "bin/python3").symlink_to("python3.11")
    (source / "lib/data.txt").write_text("data\n")
    return source, glibc_root(tmp_path / "host", python)


def install(host, source, *args):
    argv = ["install", "--conf", str(SEED), "--conf-dir", "/etc/cni/net.d", "--bin-dir", "/opt/cni/bin",
            "--host-root", str(host), "--runtime", str(source), "--runtime-dir", "/opt/multipy", "-o", "json", *args]  # fmt: skip
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    return {entry["path"]: entry["action"] for entry in doc["files"]}, doc


def on_node(host, *argv, **env):
    """argv as the node runs it: the host root's /opt at /opt, in a mount namespace of its own."""
    script = 'mount --bind "$1/opt" /opt && shift && exec "$@"'
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    environment.update(env)
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(host), *argv],
                          input='{"cniVersion": "1.0.0"}', capture_output=True, text=True, env=environment, cwd="/",
                          timeout=60)  # fmt: skip


def runtime_of(doc) -> str:
    (entry,) = [e for e in doc["files"] if e.get("kind") == "runtime" and e["action"] != "removed"]
    return entry["digest"]


@needs_gcc
@pytest.mark.root("bind-mounts /opt in a mount namespace of its own; chroots into the host root")
@pytest.mark.skipif(shutil.which("unshare") is None or not os.path.isdir("/opt"), reason="needs unshare and /opt")
@pytest.mark.skipif(str(REPO).startswith("/opt/"), reason="the repository is under /opt, which the node's view hides")
def test_the_runtime_goes_to_the_node_and_the_launchers_run_it(image):
    source, host = image
    actions, doc = install(host, source)
    first = runtime_of(doc)
    assert doc["hostRoot"] == str(host)
    assert actions == {
        f"/opt/multipy/{first}": "created",
        "/opt/cni/bin/multus-cni": "created",
        "/opt/cni/bin/multipy": "created",
        "/etc/cni/net.d/10-multus.conf": "created",
    }
    tree = host / "opt/multipy" / first
    assert os.listdir(host / "opt/multipy") == [first]  # no temporary directory left
    assert os.readlink(tree / "bin/python3") == "python3.11"  # symlinks stay symlinks
    for exe in ("multus-cni", "multipy"):
        # The launchers name the node's paths, not the host root's.
        head = (host / "opt/cni/bin" / exe).read_text().splitlines()[0]
        assert head == f"#!/opt/multipy/{first}/bin/python3 -I"

    out = on_node(host, "/opt/cni/bin/multus-cni", CNI_COMMAND="VERSION")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["cniVersion"] == "1.0.0" and "1.1.0" in json.loads(out.stdout)["supportedVersions"]
    out = on_node(host, "/opt/cni/bin/multipy", "where")
    assert out.stdout == f"/opt/multipy/{first}/bin/python3.11\n", out.stderr  # the copy runs, not the image's

    # Again: nothing to do, the tree is not even rewritten.
    inode = os.stat(tree).st_ino
    actions, _ = install(host, source)
    assert set(actions.values()) == {"unchanged"} and os.stat(tree).st_ino == inode

    # A new image: one file changed.
    (source / "lib/data.txt").write_text("data, rebuilt\n")
    actions, doc = install(host, source)
    second = runtime_of(doc)
    assert second != first
    assert actions == {
        f"/opt/multipy/{second}": "created",
        "/opt/cni/bin/multus-cni": "updated",
        "/opt/cni/bin/multipy": "updated",
        "/etc/cni/net.d/10-multus.conf": "unchanged",
    }
    assert sorted(os.listdir(host / "opt/multipy")) == sorted([first, second])  # the old tree stays
    assert (host / f"opt/multipy/{second}/lib/data.txt").read_text() == "data, rebuilt\n"
    assert (host / "opt/cni/bin/multus-cni").read_text().startswith(f"#!/opt/multipy/{second}/bin/python3 -I\n")
    out = on_node(host, "/opt/cni/bin/multus-cni", CNI_COMMAND="VERSION")
    assert out.returncode == 0 and json.loads(out.stdout)["cniVersion"] == "1.0.0", out.stderr
    out = on_node(host, "/opt/cni/bin/multipy", "where")
    assert out.stdout == f"/opt/multipy/{second}/bin/python3.11\n", out.stderr

    # Pruning removes the tree no launcher runs, and only it.
    actions, doc = install(host, source, "--prune-runtimes")
    assert actions[f"/opt/multipy/{first}"] == "removed" and actions[f"/opt/multipy/{second}"] == "unchanged"
    assert os.listdir(host / "opt/multipy") == [second]
    out = on_node(host, "/opt/cni/bin/multus-cni", CNI_COMMAND="VERSION")
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="the tests must run in a virtualenv (.venv)")
def test_a_virtualenv_is_refused_naming_what_it_needs_from_outside(tmp_path):
    # A virtualenv's interpreter is a symlink to the build host's; its wheels need libstdc++ and libgcc_s
    # from the build host's /usr/lib. On a node without them, multus-cni could not start.
    host = tmp_path / "host"
    host.mkdir()
    argv = ["install", "--conf", str(SEED), "--conf-dir", "/etc/cni/net.d", "--bin-dir", "/opt/cni/bin",
            "--host-root", str(host), "--runtime", str(VENV), "--runtime-dir", "/opt/multipy"]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == EXIT_NOT_SELF_CONTAINED, result.output
    lines = result.stderr.splitlines()
    link = os.readlink(VENV / "bin/python3")
    if os.path.isabs(link):
        assert f"--runtime {VENV}: bin/python3 -> {link}: is an absolute path" in lines
    grpc = re.compile(rf"--runtime {re.escape(str(VENV))}: lib/python3\.\d+/site-packages/grpc/_cython/cygrpc\..*\.so "
                      r"needs libstdc\+\+\.so\.6, which is neither in the tree nor glibc")  # fmt: skip
    assert any(grpc.fullmatch(line) for line in lines), lines
    assert re.fullmatch(rf"multipy install: --runtime {re.escape(str(VENV))} is not self-contained \(\d+ problem\(s\)\): "
                        r"a node without those would not run it; nothing written", lines[-1])  # fmt: skip
    assert os.listdir(host) == []
