"""`multipy install` as a DaemonSet's init container runs it: the executables work, re-running
is a no-op, the conf is refused when invalid, files are replaced by rename (never "text file
busy" while the old executable runs), modes hold under any umask, nothing is deleted, and node
paths land under --host-root. The runtime tree and the kubeconfig have their own test files."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from multipy.cli.commands import cli
from multipy.cli.install_files import launcher

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "conf" / "10-multus.conf"
SCRIPT = Path(sys.executable).parent / "multipy"
VERSIONS_LINE = "0.1.0 0.2.0 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0"


@pytest.fixture
def node(tmp_path):
    """A node's /etc/cni/net.d and /opt/cni/bin, each already holding something of someone else's."""
    conf_dir, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    conf_dir.mkdir()
    bin_dir.mkdir()
    (conf_dir / "99-other.conflist").write_text("{}")
    (bin_dir / "bridge").write_bytes(b"\x7fELF...")
    return tmp_path, conf_dir, bin_dir


def install(conf_dir, bin_dir, *args, conf=SEED):
    argv = ["install", "--conf", str(conf), "--conf-dir", str(conf_dir), "--bin-dir", str(bin_dir), *args]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    env.update(extra)
    return env


def test_fresh_install_and_the_executables_work(node):
    _, conf_dir, bin_dir = node
    code, out, err = install(conf_dir, bin_dir)
    assert code == 0, err
    assert out.splitlines() == [
        f"created    {bin_dir}/multus-cni (0755)",
        f"created    {bin_dir}/multipy (0755)",
        f"created    {conf_dir}/10-multus.conf (0600)",
    ]
    assert (conf_dir / "10-multus.conf").read_bytes() == SEED.read_bytes()
    assert mode(conf_dir / "10-multus.conf") == 0o600
    assert mode(bin_dir / "multus-cni") == mode(bin_dir / "multipy") == 0o755
    # Nothing else was touched, no temporary file is left.
    assert sorted(os.listdir(conf_dir)) == ["10-multus.conf", "99-other.conflist"]
    assert sorted(os.listdir(bin_dir)) == ["bridge", "multipy", "multus-cni"]

    head = (bin_dir / "multus-cni").read_text().splitlines()[0]
    assert head == f"#!{sys.executable} -I"
    out = subprocess.run([str(bin_dir / "multipy"), "versions"], capture_output=True, text=True, env=clean_env(),
                         cwd="/", timeout=60)  # fmt: skip
    assert (out.returncode, out.stdout) == (0, VERSIONS_LINE + "\n"), out.stderr
    out = subprocess.run([str(bin_dir / "multus-cni")], input='{"cniVersion": "1.0.0"}', capture_output=True,
                         text=True, env=clean_env(CNI_COMMAND="VERSION"), cwd="/", timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["cniVersion"] == "1.0.0"
    # `multipy` run by a runtime is the plugin too.
    out = subprocess.run([str(bin_dir / "multipy")], input="{}", capture_output=True, text=True,
                         env=clean_env(CNI_COMMAND="VERSION"), timeout=60)  # fmt: skip
    assert out.returncode == 0 and "supportedVersions" in out.stdout


def test_running_again_changes_nothing(node):
    _, conf_dir, bin_dir = node
    install(conf_dir, bin_dir)
    paths = [bin_dir / "multus-cni", bin_dir / "multipy", conf_dir / "10-multus.conf"]
    before = [(os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in paths]
    time.sleep(0.01)
    code, out, _ = install(conf_dir, bin_dir, "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and [f["action"] for f in doc["files"]] == ["unchanged"] * 3
    assert [f["mode"] for f in doc["files"]] == ["0755", "0755", "0600"]
    assert [(os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in paths] == before


def test_a_changed_conf_or_mode_is_rewritten_by_rename(node):
    tmp, conf_dir, bin_dir = node
    install(conf_dir, bin_dir)
    target = conf_dir / "10-multus.conf"
    inode = os.stat(target).st_ino
    changed = json.loads(SEED.read_text())
    changed["logLevel"] = "debug"
    source = tmp / "new.conf"
    source.write_text(json.dumps(changed))
    code, out, _ = install(conf_dir, bin_dir, conf=source)
    assert code == 0 and out.splitlines()[2] == f"updated    {target} (0600)"
    assert out.splitlines()[:2] == [f"unchanged  {bin_dir}/multus-cni (0755)", f"unchanged  {bin_dir}/multipy (0755)"]
    assert json.loads(target.read_text())["logLevel"] == "debug" and os.stat(target).st_ino != inode
    (bin_dir / "multipy").chmod(0o777)
    code, out, _ = install(conf_dir, bin_dir, conf=source)
    assert code == 0 and f"updated    {bin_dir}/multipy (0755)" in out and mode(bin_dir / "multipy") == 0o755


def test_replacing_a_running_executable_never_hits_text_file_busy(node):
    _, conf_dir, bin_dir = node
    running = bin_dir / "multus-cni"
    shutil.copy("/bin/sleep", running)
    proc = subprocess.Popen([str(running), "30"])
    try:
        time.sleep(0.2)
        assert proc.poll() is None
        # The hazard: writing the running executable in place is refused by the kernel.
        with pytest.raises(OSError) as busy:
            os.close(os.open(running, os.O_WRONLY))
        assert busy.value.errno == errno.ETXTBSY

        code, out, err = install(conf_dir, bin_dir)
        assert code == 0, err
        assert out.splitlines()[0] == f"updated    {running} (0755)"
        assert running.read_bytes().startswith(f"#!{sys.executable} -I\n".encode())
        # The old process runs on from the old file.
        assert proc.poll() is None
        assert os.readlink(f"/proc/{proc.pid}/exe").endswith("(deleted)")
    finally:
        proc.kill()
        proc.wait()


def test_an_invalid_conf_writes_nothing(node):
    tmp, conf_dir, bin_dir = node
    bad = tmp / "bad.conf"
    doc = json.loads(SEED.read_text())
    doc["delegates"][0]["masterplugin"] = "yes"
    bad.write_text(json.dumps(doc))
    code, out, err = install(conf_dir, bin_dir, conf=bad)
    assert code == 1 and out == ""
    assert f"{bad}: $.delegates[0].masterplugin: 'yes' is not of type 'boolean'" in err
    assert f"multipy install: {bad} is invalid (1 problem(s)); nothing written" in err
    assert sorted(os.listdir(conf_dir)) == ["99-other.conflist"] and sorted(os.listdir(bin_dir)) == ["bridge"]
    bad.write_text("{not json")
    code, _, err = install(conf_dir, bin_dir, conf=bad)
    assert code == 1 and "$: not valid JSON" in err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--name", "../10-multus.conf"], "Invalid value for '--name': '../10-multus.conf' is not a conf file name"),
        (["--name", "10-multus.conflist"], "is not a conf file name"),
        (["--file", "/etc/hostname"], "Invalid value for '--file': '/etc/hostname' is not SOURCE:DEST"),
        (["--python", "python3"], "Invalid value for '--python': 'python3' is not an absolute path"),
        (["--conf-dir", "net.d"], "Invalid value for '--conf-dir': 'net.d' is not an absolute path (a path as the node"),
        (["--file", "/etc/hostname:etc/hostname"], "DEST 'etc/hostname' is not an absolute path"),
        (["--host-root", "/nonexistent"], "Invalid value for '--host-root': Directory '/nonexistent' does not exist"),
        (["--runtime", "/nonexistent"], "Invalid value for '--runtime': Directory '/nonexistent' does not exist"),
        (["-o", "yaml"], "Invalid value for '--output'"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(node, args, fragment):
    _, conf_dir, bin_dir = node
    result = CliRunner().invoke(cli, ["install", "--conf", str(SEED), "--conf-dir", str(conf_dir),
                                      "--bin-dir", str(bin_dir), *args])  # fmt: skip
    assert result.exit_code == 2 and fragment in result.stderr
    assert sorted(os.listdir(bin_dir)) == ["bridge"]


def test_missing_options_and_unreadable_sources(node):
    tmp, conf_dir, bin_dir = node
    result = CliRunner().invoke(cli, ["install", "--conf", str(SEED), "--conf-dir", str(conf_dir)])
    assert result.exit_code == 2 and "Missing option '--bin-dir'" in result.stderr
    code, _, err = install(conf_dir, bin_dir, conf=tmp / "missing.conf")
    assert code == 2 and f"--conf {tmp}/missing.conf: cannot read: No such file or directory" in err
    code, _, err = install(conf_dir, bin_dir, "--file", f"{tmp}/no-ca.crt:{tmp}/etc/ca.crt")
    assert code == 2 and f"--file {tmp}/no-ca.crt: cannot read" in err
    assert sorted(os.listdir(bin_dir)) == ["bridge"] and not (tmp / "etc").exists()


def test_extra_files_come_first_and_private(node):
    tmp, conf_dir, bin_dir = node
    secrets = tmp / "secret"
    secrets.mkdir()
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (secrets / name).write_text(f"-----BEGIN {name}-----\n")
    args = [arg for name in ("ca.crt", "tls.key") for arg in ("--file", f"{secrets}/{name}:{tmp}/host/etcd/{name}")]
    code, out, _ = install(conf_dir, bin_dir, *args)
    assert code == 0
    assert out.splitlines()[:2] == [
        f"created    {tmp}/host/etcd/ca.crt (0600)",
        f"created    {tmp}/host/etcd/tls.key (0600)",
    ]
    assert out.splitlines()[-1].endswith("10-multus.conf (0600)")  # the conf last: it makes the runtime use multipy
    assert (
        mode(tmp / "host/etcd/tls.key") == 0o600
        and (tmp / "host/etcd/tls.key").read_text() == "-----BEGIN tls.key-----\n"
    )
    code, out, _ = install(conf_dir, bin_dir, *args)
    assert all(line.startswith("unchanged") for line in out.splitlines())


def test_a_file_that_cannot_be_written_exits_3_and_the_conf_is_not_installed(node):
    _, conf_dir, bin_dir = node
    (bin_dir / "multipy").mkdir()  # something in the way that a rename cannot replace
    code, out, err = install(conf_dir, bin_dir, "-o", "json")
    assert code == 3
    assert f"multipy install: cannot write {bin_dir}/multipy: Is a directory" in err
    doc = json.loads(out)
    assert doc["ok"] is False and [f["path"] for f in doc["files"]] == [f"{bin_dir}/multus-cni"]
    assert not (conf_dir / "10-multus.conf").exists()
    assert not [n for n in os.listdir(bin_dir) if n.endswith(".tmp")]


def test_modes_hold_under_a_strict_umask(node):
    _, conf_dir, bin_dir = node
    out = subprocess.run(["sh", "-c", f'umask 077; exec "$0" install --conf {SEED} --conf-dir {conf_dir} '
                          f"--bin-dir {bin_dir}", str(SCRIPT)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert mode(bin_dir / "multus-cni") == 0o755 and mode(conf_dir / "10-multus.conf") == 0o600


def test_an_interpreter_path_a_shebang_cannot_hold_goes_through_sh(node):
    tmp, conf_dir, bin_dir = node
    odd = tmp / "py env" / "bin"
    odd.mkdir(parents=True)
    python = odd / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    assert launcher("multipy", "multipy.cli.main", "/x" * 200).startswith(b"#!/bin/sh\n")  # too long a #! line
    code, _, err = install(conf_dir, bin_dir, "--python", str(python))
    assert code == 0, err
    text = (bin_dir / "multipy").read_text()
    assert text.startswith("#!/bin/sh\n") and f"exec '{python}' -I -c " in text
    out = subprocess.run([str(bin_dir / "multipy"), "--help"], capture_output=True, text=True, env=clean_env(),
                         timeout=60)  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith("Usage: multipy ")
    out = subprocess.run([str(bin_dir / "multus-cni")], input="{}", capture_output=True, text=True,
                         env=clean_env(CNI_COMMAND="VERSION"), timeout=60)  # fmt: skip
    assert out.returncode == 0 and "supportedVersions" in out.stdout


def test_node_paths_land_under_the_host_root(tmp_path):
    host, secret = tmp_path / "host", tmp_path / "ca.crt"
    host.mkdir()
    secret.write_text("ca")
    args = ["--host-root", str(host), "--python", "/opt/multipy/bin/python3", "--conf-dir", "/etc/cni/net.d",
            "--bin-dir", "/opt/cni/bin", "--file", f"{secret}:/etc/multipy/etcd/ca.crt"]  # fmt: skip
    # Without a node interpreter under this host root, the launchers cannot run there: refused, nothing written.
    result = CliRunner().invoke(cli, ["install", "--conf", str(SEED), *args], catch_exceptions=False)
    assert result.exit_code == 5 and "multus-cni cannot start on the node: there is no /opt/multipy/bin/python3; " \
        "nothing switched" in result.stderr  # fmt: skip
    assert os.listdir(host) == ["opt"] and os.listdir(host / "opt/cni/bin") == []  # the bin dir, empty
    args.append("--no-verify")  # what is written where, then (test_cli_install_verify.py runs real launchers)
    result = CliRunner().invoke(cli, ["install", "--conf", str(SEED), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    # Reported as the node sees them...
    assert result.stdout.splitlines() == [
        "created    /etc/multipy/etcd/ca.crt (0600)",
        "created    /opt/cni/bin/multus-cni (0755)",
        "created    /opt/cni/bin/multipy (0755)",
        "created    /etc/cni/net.d/10-multus.conf (0600)",
    ]
    # ...written under the host root, and the launchers name the node's interpreter.
    assert (host / "etc/multipy/etcd/ca.crt").read_text() == "ca"
    assert (host / "opt/cni/bin/multus-cni").read_text().startswith("#!/opt/multipy/bin/python3 -I\n")
    assert (host / "etc/cni/net.d/10-multus.conf").read_bytes() == SEED.read_bytes()
    result = CliRunner().invoke(cli, ["install", "--conf", str(SEED), *args, "-o", "json"])
    doc = json.loads(result.stdout)
    assert doc["hostRoot"] == str(host) and {f["action"] for f in doc["files"]} == {"unchanged"}


def test_a_host_root_needs_the_nodes_interpreter(tmp_path):
    # This machine's interpreter is the pod's, in a DaemonSet: the node may not have it.
    result = CliRunner().invoke(cli, ["install", "--conf", str(SEED), "--host-root", str(tmp_path), "--conf-dir",
                                      "/etc/cni/net.d", "--bin-dir", "/opt/cni/bin"])  # fmt: skip
    assert result.exit_code == 2
    assert f"Invalid value for '--python': this interpreter ({sys.executable}) is this machine's" in result.stderr
    assert f"with --host-root {tmp_path}, give --runtime (or the node's interpreter with --python)" in result.stderr
    assert os.listdir(tmp_path) == []
