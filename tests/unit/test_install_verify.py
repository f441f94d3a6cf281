"""install_verify.py's runs where no chroot is needed (--host-root /): the plugin check a launcher
runs, a VERSION answer that is no CNI result, and a run's output kept bounded. The runs on a node
(chrooted, with its glibc) are in tests/integration/test_cli_install_verify.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from multipy.cli import install_verify
from multipy.cli.install_verify import Launcher, Unverified

SCRIPT = Path(sys.executable).parent / "multipy"


def test_check_plugins_loads_every_plugin_and_names_the_one_that_fails(tmp_path):
    # A plugin package as pip installs it: a module and a dist-info declaring its entry point. Its
    # module needs a library the machine lacks, as a wheel's extension on a node without libstdc++.
    (tmp_path / "broken_plugin.py").write_text(
        'raise ImportError("libstdc++.so.6: cannot open shared object file: No such file or directory")\n')
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[multipy.delegates]\nbroken = broken_plugin:Plugin\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    out = subprocess.run([str(SCRIPT), "check-plugins"], capture_output=True, text=True, timeout=60, cwd="/",
                         env={**env, "PYTHONPATH": str(tmp_path)})  # fmt: skip
    assert out.returncode == 1
    assert "loaded  multipy.delegates bridge" in out.stdout and "loaded  multipy.ipam kube-ipam" in out.stdout
    assert out.stderr == ("multipy: native plugin 'broken' (broken_plugin:Plugin) failed to load: ImportError: "
                          "libstdc++.so.6: cannot open shared object file: No such file or directory\n")  # fmt: skip
    out = subprocess.run([str(SCRIPT), "check-plugins"], capture_output=True, text=True, timeout=60, cwd="/", env=env)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    hidden = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert "check-plugins" not in hidden.stdout  # for install, not for operators


def run(tmp_path, script: str, kind=install_verify.VERSION, **kwargs):
    launcher = Launcher("multus-cni", f"#!/bin/sh\n{script}\n".encode(), 0o755, kind)
    install_verify.verify("/", str(tmp_path / "bin"), [launcher], "/bin/sh", **kwargs)


def test_a_version_answer_must_be_a_cni_result(tmp_path):
    with pytest.raises(Unverified, match=r"^multus-cni \(CNI_COMMAND=VERSION\) failed on the node: no CNI version "
                                         r"result on stdout: hello$"):  # fmt: skip
        run(tmp_path, "echo hello")
    run(tmp_path, """echo '{"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]}'""")
    assert os.listdir(tmp_path / "bin") == []  # the temporary launchers are gone either way


def test_the_output_kept_is_bounded_and_ends_with_the_error(tmp_path):
    flood = "head -c 20000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'Error: the last words' >&2; exit 3"
    with pytest.raises(Unverified) as raised:
        run(tmp_path, flood, install_verify.PLUGINS)
    message = str(raised.value)
    assert message.startswith("multus-cni (`multus-cni check-plugins`) failed on the node: exit 3, ")
    assert len(message) < 1200 and "x" * 100 in message
    assert not message.endswith("the last words")  # past OUTPUT_MAX: read and dropped, never kept


def test_a_hang_is_bounded(tmp_path):
    with pytest.raises(Unverified, match=r"did not finish within 0.5 s on the node"):
        run(tmp_path, "exec sleep 60", timeout=0.5)
