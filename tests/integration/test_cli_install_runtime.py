"""`multipy install --runtime` with a real Python tree, this repository's .venv, into a temporary
host root, as the DaemonSet does it with the node's directories under /host. The launchers are then
run as the node runs them: in a private mount namespace where the host root's /opt is /opt, so
/opt/cni/bin/multus-cni starts /opt/multipy/<digest>/bin/python3, paths exactly as on a node.
An upgrade (a changed tree) gets a second digest directory and the launchers move to it; the first
stays until --prune-runtimes, which removes only it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from multipy.cli.commands import cli

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "conf" / "10-multus.conf"
VENV = Path(sys.prefix)

pytestmark = [
    pytest.mark.root("bind-mounts /opt in a mount namespace of its own"),
    pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="the tests must run in a virtualenv (.venv)"),
    pytest.mark.skipif(shutil.which("unshare") is None or not os.path.isdir("/opt"), reason="needs unshare and /opt"),
    pytest.mark.skipif(
        any(str(p).startswith("/opt/") for p in (sys.base_prefix, REPO)),
        reason="the interpreter or the repository is under /opt, which the node's view hides",
    ),
]


@pytest.fixture
def image(tmp_path):
    """The image's tree (a copy of .venv, hard-linked: files are replaced, never written in place)
    and an empty host root; both removed at the end (they are large for pytest to keep around)."""
    source, host = tmp_path / "image/opt/multipy", tmp_path / "host"
    source.parent.mkdir(parents=True)
    host.mkdir()
    if subprocess.run(["cp", "-al", str(VENV), str(source)], capture_output=True).returncode:
        shutil.copytree(VENV, source, symlinks=True)  # another filesystem
    yield source, host
    shutil.rmtree(tmp_path / "image", ignore_errors=True)
    shutil.rmtree(host, ignore_errors=True)


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
    assert os.readlink(tree / "bin/python3") == os.readlink(source / "bin/python3")  # symlinks stay symlinks
    for exe in ("multus-cni", "multipy"):
        # The launchers name the node's paths, not the host root's.
        head = (host / "opt/cni/bin" / exe).read_text().splitlines()[0]
        assert head == f"#!/opt/multipy/{first}/bin/python3 -I"

    out = on_node(host, "/opt/cni/bin/multus-cni", CNI_COMMAND="VERSION")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["cniVersion"] == "1.0.0" and "1.1.0" in json.loads(out.stdout)["supportedVersions"]
    out = on_node(host, "/opt/cni/bin/multipy", "versions")
    assert out.returncode == 0 and out.stdout.split()[-1] == "1.1.0", out.stderr
    out = on_node(host, f"/opt/multipy/{first}/bin/python3", "-I", "-c", "import sys, multipy; print(sys.prefix)")
    assert out.stdout == f"/opt/multipy/{first}\n", out.stderr  # the copy is the environment, not .venv

    # Again: nothing to do, the tree is not even rewritten.
    inode = os.stat(tree).st_ino
    actions, _ = install(host, source)
    assert set(actions.values()) == {"unchanged"} and os.stat(tree).st_ino == inode

    # A new image: one file changed (replaced, so .venv's own copy is untouched).
    activate = source / "bin/activate"
    original = activate.read_bytes()
    (source / "bin/activate.new").write_bytes(original + b"# rebuilt\n")
    os.replace(source / "bin/activate.new", activate)
    assert (VENV / "bin/activate").read_bytes() == original
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
    assert (host / f"opt/multipy/{second}/bin/activate").read_bytes().endswith(b"# rebuilt\n")
    assert (host / "opt/cni/bin/multus-cni").read_text().startswith(f"#!/opt/multipy/{second}/bin/python3 -I\n")
    out = on_node(host, "/opt/cni/bin/multus-cni", CNI_COMMAND="VERSION")
    assert out.returncode == 0 and json.loads(out.stdout)["cniVersion"] == "1.0.0", out.stderr

    # Pruning removes the tree no launcher runs, and only it.
    actions, doc = install(host, source, "--prune-runtimes")
    assert actions[f"/opt/multipy/{first}"] == "removed" and actions[f"/opt/multipy/{second}"] == "unchanged"
    assert os.listdir(host / "opt/multipy") == [second]
    out = on_node(host, "/opt/cni/bin/multus-cni", CNI_COMMAND="VERSION")
    assert out.returncode == 0, out.stderr
