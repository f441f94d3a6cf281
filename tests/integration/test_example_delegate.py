"""The example third-party delegate (examples/multipy-example-delegate): installed with pip, run by its type.

A real `pip install --target` into a temp directory, never into .venv, and the real multus-cni
executed as a runtime executes it, finding the package on PYTHONPATH through its entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multipy.testing import kernel

from .conftest import records

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multipy-example-delegate"
KINDS = ("dummy", "ifb")  # ifb where the kernel lacks the dummy driver (see the plugin)
ADDRESS = "192.0.2.10/24"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("example") / "site"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    # --no-deps: the package names no dependency, and multipy itself is the interpreter's (see its pyproject).
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(EXAMPLE)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return site


def _conf(tmp_path, example: dict) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "meta",
        "type": "multus-cni",
        "cniDir": str(tmp_path / "cache"),
        "binDir": str(tmp_path / "bin"),
        "delegates": [{"name": "lo", "type": "loopback"}, {"name": "example", "type": "example-dummy", **example}],
    }


def test_pip_installed_example_delegate_is_run_by_its_type(example_site, netns, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = _conf(tmp_path, {"address": ADDRESS})
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="lo")

    # Not installed (not on this process's path): no native plugin and no binary of that type.
    missing = cni_runtime("ADD", conf, **args)
    assert missing.json["code"] == 100, missing.stdout
    assert 'delegate "example" (example-dummy on net1) ADD failed' in missing.json["msg"]
    assert records(tmp_path) == []

    cni_runtime.env = {"PYTHONPATH": str(example_site)}
    added = cni_runtime("ADD", conf, **args)
    assert added.ok, added.stdout + added.stderr

    link = kernel.links(pod)["net1"]
    assert link["linkinfo"]["info_kind"] in KINDS
    assert "UP" in link["flags"]
    assert kernel.addresses(pod, "net1") == {"net1": [ADDRESS]}
    # Found through the entry-point index under cniDir/internal, rebuilt once the installed set changed.
    index = json.loads((tmp_path / "cache" / "internal" / "entry-points.json").read_text())
    assert index["groups"]["multipy.delegates"]["example-dummy"] == "multipy_example_delegate.plugin:ExampleDummy"

    assert cni_runtime("CHECK", conf, **args).ok
    kernel.ip_json(pod, "link", "set", "net1", "down")
    checked = cni_runtime("CHECK", conf, **args)
    assert checked.json["code"] == 999
    assert (
        checked.json["msg"]
        == "delegate \"example\" (example-dummy on net1) CHECK failed: example-dummy: 'net1' is down"
    )

    deleted = cni_runtime("DEL", conf, **args)
    assert deleted.ok, deleted.stdout + deleted.stderr
    assert "net1" not in kernel.links(pod)
    assert records(tmp_path) == []
    assert cni_runtime("DEL", conf, **args).ok  # nothing left to undo is a success


def test_example_delegate_bad_address_names_the_key_and_leaves_nothing(example_site, netns, cni_runtime, tmp_path):
    pod = netns("pod")
    conf = _conf(tmp_path, {"address": "192.0.2.300/24"})
    cni_runtime.env = {"PYTHONPATH": str(example_site)}
    args = dict(container_id="c1", netns=f"/run/netns/{pod}", ifname="lo")

    added = cni_runtime("ADD", conf, **args)

    assert added.returncode == 1
    assert added.json["code"] == 7
    assert added.json["msg"] == (
        'delegate "example" (example-dummy on net1) ADD failed: example-dummy: address: "192.0.2.300/24" '
        'is not an address with a prefix length, such as "192.0.2.10/24"'
    )
    assert "net1" not in kernel.links(pod)
    assert records(tmp_path) == []
    assert cni_runtime("DEL", conf, **args).ok


@pytest.mark.netns  # the example's own tests create namespaces, in the pytest it starts
def test_example_package_own_tests_pass_against_the_installed_copy(example_site):
    """The example's tests (docs/writing-a-delegate.md walks through them) run as its author would run them."""
    env = dict(os.environ, PYTHONPATH=str(example_site), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout
