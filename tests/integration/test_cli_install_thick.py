"""`multipy install --thick`: multus-shim is put next to the thin multus-cni, by rename, as the shim's own
bytecode and source behind `#!<runtime's python> -IS` (no site-packages scan); it answers VERSION, falls back to the
multus-cni next to it when no daemon is there, re-running changes nothing, and the conf's "type" must
match the mode."""

from __future__ import annotations

import binascii
import importlib.util
import json
import marshal
import os
import re
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from multipy import shim
from multipy.cli import install_files, install_runtime
from multipy.cli.commands import cli
from multipy.cni.version import SUPPORTED_VERSIONS

REPO = Path(__file__).resolve().parents[2]
THICK = REPO / "conf" / "10-multus-thick.conf"
THIN = REPO / "conf" / "10-multus.conf"


@pytest.fixture
def node(tmp_path):
    conf_dir, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    conf_dir.mkdir()
    bin_dir.mkdir()
    return tmp_path, conf_dir, bin_dir


def install(conf_dir, bin_dir, *args, conf=THICK):
    argv = ["install", "--conf", str(conf), "--conf-dir", str(conf_dir), "--bin-dir", str(bin_dir), *args]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON", "MULTIPY_"))}
    env.update(extra)
    return env


def test_thick_install_puts_the_shim_next_to_multus_cni(node):
    _, conf_dir, bin_dir = node
    code, out, err = install(conf_dir, bin_dir, "--thick")
    assert code == 0, err
    assert out.splitlines() == [
        f"created    {bin_dir}/multus-cni (0755)",
        f"created    {bin_dir}/multipy (0755)",
        f"created    {bin_dir}/multus-shim (0755)",
        f"created    {conf_dir}/10-multus.conf (0600)",
    ]
    shim_file = bin_dir / "multus-shim"
    assert stat.S_IMODE(os.stat(shim_file).st_mode) == 0o755
    text = shim_file.read_text()
    assert text.splitlines()[0] == f"#!{sys.executable} -IS"
    assert unpacked(text) == (compiled_shim(), Path(shim.__file__).read_bytes())  # byte for byte
    assert sorted(os.listdir(bin_dir)) == ["multipy", "multus-cni", "multus-shim"]  # no temporary left

    # As a runtime runs it: VERSION answered by the shim itself.
    out = subprocess.run([str(shim_file)], input=b'{"cniVersion": "1.0.0"}', capture_output=True, cwd="/",
                         env=clean_env(CNI_COMMAND="VERSION"), timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"cniVersion": "1.0.0", "supportedVersions": list(SUPPORTED_VERSIONS)}

    # Running again: nothing changes.
    code, out, _ = install(conf_dir, bin_dir, "--thick", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and [f["action"] for f in doc["files"]] == ["unchanged"] * 4


def test_with_no_daemon_the_installed_shim_runs_the_installed_multus_cni(node):
    tmp, conf_dir, bin_dir = node
    conf = {"cniVersion": "1.1.0", "name": "thick", "type": "multus-shim", "daemonSocketDir": str(tmp / "run"),
            "cniDir": str(tmp / "cache"), "delegates": [{"name": "lo", "type": "loopback"}]}  # fmt: skip
    source = tmp / "thick.conf"
    source.write_text(json.dumps(conf))
    code, _, err = install(conf_dir, bin_dir, "--thick", conf=source)
    assert code == 0, err
    # STATUS through the fallback: the thin plugin's answer (no readiness file, loopback is ready).
    out = subprocess.run([str(bin_dir / "multus-shim")], input=json.dumps(conf).encode(), capture_output=True,
                         cwd="/", env=clean_env(CNI_COMMAND="STATUS"), timeout=60)  # fmt: skip
    assert (out.returncode, out.stdout) == (0, b""), out.stdout + out.stderr
    # The same with thinFallback off: the shim says the daemon is unreachable, STATUS's code 50.
    conf["thinFallback"] = False
    out = subprocess.run([str(bin_dir / "multus-shim")], input=json.dumps(conf).encode(), capture_output=True,
                         cwd="/", env=clean_env(CNI_COMMAND="STATUS"), timeout=60)  # fmt: skip
    assert out.returncode == 1 and json.loads(out.stdout)["code"] == 50


def test_the_conf_type_must_match_the_mode(node):
    _, conf_dir, bin_dir = node
    code, out, err = install(conf_dir, bin_dir, "--thick", conf=THIN)
    assert code == 1 and out == "" and "$.type: 'multus-cni': with --thick the runtime must run the shim" in err
    code, out, err = install(conf_dir, bin_dir, conf=THICK)
    assert code == 1 and out == "" and '"multus-shim" is thick mode: install with --thick' in err
    assert os.listdir(bin_dir) == [] and os.listdir(conf_dir) == []


def test_on_a_node_the_shim_runs_the_nodes_runtime(node):
    tmp, conf_dir, bin_dir = node
    host, runtime = tmp / "host", tmp / "image-runtime"
    (runtime / "bin").mkdir(parents=True)
    (runtime / "bin" / "python3").write_text("an interpreter")
    host.mkdir()
    # --no-verify: this "interpreter" cannot run (test_cli_install_verify.py runs real launchers).
    code, _, err = install("/etc/cni/net.d", "/opt/cni/bin", "--thick", "--host-root", str(host),
                           "--runtime", str(runtime), "--runtime-dir", "/opt/multipy", "--no-verify")  # fmt: skip
    assert code == 0, err
    (digest,) = os.listdir(host / "opt/multipy")
    head = (host / "opt/cni/bin/multus-shim").read_text().splitlines()[0]
    assert head == f"#!/opt/multipy/{digest}/bin/python3 -IS"
    # --prune-runtimes sees the shim as a user of that runtime too.
    os.remove(host / "opt/cni/bin/multus-cni")
    os.remove(host / "opt/cni/bin/multipy")
    from multipy.cli import install_runtime

    assert install_runtime.referenced(str(host / "opt/cni/bin"), "/opt/multipy") == {digest}


def unpacked(launcher: str) -> tuple:
    """The code object and the source packed into a shim launcher (install_files._shim_body)."""
    blobs = re.findall(r"a2b_base64\('([A-Za-z0-9+/=]+)'\)", launcher)
    assert len(blobs) == 2
    code, source = (zlib.decompress(binascii.a2b_base64(blob)) for blob in blobs)
    return marshal.loads(code), source


def compiled_shim():
    return compile(Path(shim.__file__).read_bytes(), "multipy/shim.py", "exec", dont_inherit=True)


def test_the_shim_runs_its_bytecode_and_falls_back_to_its_source(tmp_path):
    """Same interpreter: the bytecode compiled at install (no compile per call). Another magic number (another
    minor release): the source. Either way, one file well under the bound prune reads launchers to."""
    text = install_files.shim_launcher(sys.executable).decode()
    assert len(text.encode()) < install_runtime._LAUNCHER_MAX / 2
    magic = repr(importlib.util.MAGIC_NUMBER)
    assert text.count(magic) == 1
    for name, body in (("bytecode", text), ("source", text.replace(magic, repr(b"\0\0\r\n")))):
        path = tmp_path / name
        path.write_text(body)
        path.chmod(0o755)
        out = subprocess.run([str(path)], input=b'{"cniVersion": "0.4.0"}', capture_output=True, cwd="/",
                             env=clean_env(CNI_COMMAND="VERSION"), timeout=60)  # fmt: skip
        assert out.returncode == 0, (name, out.stderr)
        assert json.loads(out.stdout) == {"cniVersion": "0.4.0", "supportedVersions": list(SUPPORTED_VERSIONS)}


def test_the_packed_shim_is_the_same_bytes_whatever_the_installing_process_holds():
    """Rerunning an install must find the shim "unchanged": the bytecode may not depend on the hash seed or
    on what else the installing process has imported (marshal's back-references follow refcounts)."""
    code = ("import hashlib, sys\n"
            "if sys.argv[1] == 'loaded':\n"
            "    import multipy.cli.commands, multipy.shim, multipy.daemon.main  # noqa\n"
            "from multipy.cli.install_files import shim_launcher\n"
            f"print(hashlib.sha256(shim_launcher({sys.executable!r})).hexdigest())\n")  # fmt: skip
    digests = set()
    for seed, state in (("1", "bare"), ("2", "loaded"), ("3", "loaded"), ("random", "bare")):
        env = {**clean_env(), "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code, state], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_an_interpreter_path_no_shebang_can_hold(node):
    tmp, conf_dir, bin_dir = node
    odd = tmp / "a python dir"
    odd.mkdir()
    # A wrapper, not a symlink: a symlinked interpreter would be outside the test's virtualenv, and the
    # install, which runs the launchers first, would refuse launchers that cannot import multipy.
    (odd / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (odd / "python3").chmod(0o755)
    code, _, err = install(conf_dir, bin_dir, "--thick", "--python", str(odd / "python3"))
    assert code == 0, err
    assert (bin_dir / "multus-shim").read_text().startswith("#!/bin/sh\n")
    out = subprocess.run([str(bin_dir / "multus-shim")], input=b'{"cniVersion": "0.4.0"}', capture_output=True,
                         cwd="/", env=clean_env(CNI_COMMAND="VERSION"), timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["cniVersion"] == "0.4.0"
    # And its fallback finds the multus-cni next to it (sh's $0 is the shim's path): a stand-in whose
    # answer shows that it is the one that ran.
    (bin_dir / "multus-cni").write_text('#!/bin/sh\necho \'{"thin": "next to the shim"}\'\n')
    out = subprocess.run([str(bin_dir / "multus-shim")], input=b"{not json", capture_output=True, cwd="/",
                         env=clean_env(CNI_COMMAND="ADD"), timeout=60)  # fmt: skip
    assert json.loads(out.stdout) == {"thin": "next to the shim"}, out.stderr
