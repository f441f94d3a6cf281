"""`multipy install --kubeconfig`: the node's kubeconfig made from a (fake) service account dir,
loaded by multipy's own client against the local API; and `--every`, which keeps it following the
rotating token until SIGTERM. The token is never printed."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from multipy.cli.commands import cli
from multipy.clients.kube import KubeUnauthorized, from_kubeconfig

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "conf" / "10-multus.conf"
SCRIPT = Path(sys.executable).parent / "multipy"
CA = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
NODE_KUBECONFIG = "/etc/cni/net.d/multipy.d/multipy.kubeconfig"


@pytest.fixture
def account(tmp_path, kube_api):
    """A service account volume as kubelet projects it, holding the token the API accepts."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    write_token(directory, kube_api.token)
    (directory / "ca.crt").write_bytes(CA)
    (directory / "namespace").write_text("kube-system")
    return directory


def write_token(directory: Path, token: str) -> None:
    # kubelet swaps the whole volume by rename; a reader sees the old token or the new one.
    (directory / "token.new").write_text(token)
    os.replace(directory / "token.new", directory / "token")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def invoke(*args, env=None):
    result = CliRunner(env=env).invoke(cli, ["install", "--conf", str(SEED), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_the_kubeconfig_is_written_and_multipys_client_uses_it(tmp_path, kube_api, account):
    kube_api.add_pod("default", "web-0")
    kubeconfig = tmp_path / "net.d/multipy.d/multipy.kubeconfig"
    code, out, err = invoke("--conf-dir", f"{tmp_path}/net.d", "--bin-dir", f"{tmp_path}/bin", "--kubeconfig",
                            str(kubeconfig), "--serviceaccount-dir", str(account), "--api-server", kube_api.url)  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [
        f"created    {kubeconfig}.ca.crt (0600)",
        f"created    {kubeconfig} (0600)",  # before the conf that names it
        f"created    {tmp_path}/bin/multus-cni (0755)",
        f"created    {tmp_path}/bin/multipy (0755)",
        f"created    {tmp_path}/net.d/10-multus.conf (0600)",
    ]
    assert kube_api.token not in out + err
    assert mode(kubeconfig) == mode(f"{kubeconfig}.ca.crt") == 0o600
    assert sorted(os.listdir(kubeconfig.parent)) == ["multipy.kubeconfig", "multipy.kubeconfig.ca.crt"]
    assert Path(f"{kubeconfig}.ca.crt").read_bytes() == CA
    doc = json.loads(kubeconfig.read_text())
    assert doc["clusters"][0]["cluster"] == {"server": kube_api.url, "certificate-authority": f"{kubeconfig}.ca.crt"}
    assert doc["contexts"][0]["context"]["namespace"] == "kube-system"
    with from_kubeconfig(str(kubeconfig), timeout=5) as client:
        assert client.get_pod("default", "web-0")["metadata"]["name"] == "web-0"

    code, out, _ = invoke("--conf-dir", f"{tmp_path}/net.d", "--bin-dir", f"{tmp_path}/bin", "--kubeconfig",
                          str(kubeconfig), "--serviceaccount-dir", str(account), "--api-server", kube_api.url)  # fmt: skip
    assert code == 0 and all(line.startswith("unchanged") for line in out.splitlines())


def test_the_in_cluster_address_and_a_host_root(tmp_path, account):
    host = tmp_path / "host"
    host.mkdir()
    # --no-verify: this host root has no interpreter to run (test_cli_install_verify.py runs them).
    args = ["--host-root", str(host), "--python", "/opt/multipy/bin/python3", "--conf-dir", "/etc/cni/net.d",
            "--bin-dir", "/opt/cni/bin", "--kubeconfig", NODE_KUBECONFIG, "--serviceaccount-dir", str(account),
            "--no-verify"]  # fmt: skip
    for address, server in (("10.96.0.1", "https://10.96.0.1:443"), ("fd00::1", "https://[fd00::1]:443")):
        code, _, err = invoke(*args, env={"KUBERNETES_SERVICE_HOST": address, "KUBERNETES_SERVICE_PORT": "443"})
        assert code == 0, err
        doc = json.loads((host / NODE_KUBECONFIG.lstrip("/")).read_text())
        # Node paths inside, whatever the host root is.
        assert doc["clusters"][0]["cluster"] == {"server": server, "certificate-authority": f"{NODE_KUBECONFIG}.ca.crt"}
    code, _, err = invoke(*args, env={"KUBERNETES_SERVICE_HOST": None, "KUBERNETES_SERVICE_PORT": None})
    assert code == 2 and "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not in a pod?)" in err


def test_a_bad_service_account_writes_nothing_and_never_shows_the_token(tmp_path, kube_api, account):
    args = ["--conf-dir", f"{tmp_path}/net.d", "--bin-dir", f"{tmp_path}/bin", "--kubeconfig",
            f"{tmp_path}/kube/config", "--serviceaccount-dir", str(account), "--api-server", kube_api.url]  # fmt: skip
    write_token(account, f"{kube_api.token}\nsecond-{kube_api.token}")
    code, out, err = invoke(*args)
    assert code == 2 and "the token file holds more than one token" in err and kube_api.token not in out + err
    write_token(account, "  \n")
    code, _, err = invoke(*args)
    assert code == 2 and f"--serviceaccount-dir {account}: the token file is empty" in err
    (account / "token").unlink()
    code, _, err = invoke(*args)
    assert code == 2 and f"--serviceaccount-dir: cannot read {account}/token: No such file or directory" in err
    write_token(account, kube_api.token)
    (account / "ca.crt").write_text("not a certificate")
    code, _, err = invoke(*args)
    assert code == 2 and "ca.crt holds no PEM certificate" in err
    assert not (tmp_path / "bin").exists() and not (tmp_path / "kube").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--kubeconfig", "/etc/cni/net.d/multipy.conf"], "the runtime would read it as a network conf"),
        (["--kubeconfig", "multipy.kubeconfig"], "'multipy.kubeconfig' is not an absolute path"),
        (["--kubeconfig", "/etc/cni/net.d/multipy.d/"], "is a directory, not a file path"),
        (["--kubeconfig", "/k", "--api-server", "10.96.0.1:443"], "'10.96.0.1:443' is not a URL"),
        (["--api-server", "https://10.96.0.1"], "Invalid value for '--api-server': only used with --kubeconfig"),
        (["--every", "0"], "Invalid value for '--every'"),
    ],
)
def test_bad_kubeconfig_arguments(tmp_path, args, fragment):
    code, _, err = invoke("--conf-dir", "/etc/cni/net.d", "--bin-dir", f"{tmp_path}/bin", *args)
    assert code == 2 and fragment in err
    assert not (tmp_path / "bin").exists()


def test_every_follows_the_rotating_token_until_sigterm(tmp_path, kube_api, account):
    kube_api.add_pod("default", "web-0")
    host = tmp_path / "host"
    host.mkdir()
    kubeconfig = host / NODE_KUBECONFIG.lstrip("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "PYTHON"))}
    proc = subprocess.Popen([str(SCRIPT), "install", "--conf", str(SEED), "--host-root", str(host), "--python",
                             sys.executable, "--conf-dir", "/etc/cni/net.d", "--bin-dir", "/opt/cni/bin",
                             "--kubeconfig", NODE_KUBECONFIG, "--serviceaccount-dir", str(account),
                             "--api-server", kube_api.url, "--every", "0.2", "--no-verify"],  # an empty host root
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert wait_for(lambda: (host / "etc/cni/net.d/10-multus.conf").exists(), 20), "the first pass did not finish"
        with from_kubeconfig(str(kubeconfig), timeout=5) as client:
            assert client.get_pod("default", "web-0")["metadata"]["name"] == "web-0"
        old = kube_api.token

        # kubelet rotates the token; the API server stops taking the old one.
        kube_api.token = new = "rotated-" + old[::-1]
        kube_api.accept_token()
        with from_kubeconfig(str(kubeconfig), timeout=5) as client, pytest.raises(KubeUnauthorized):
            client.get_pod("default", "web-0")
        write_token(account, new)
        rotated = time.monotonic()
        assert wait_for(lambda: new in kubeconfig.read_text(), 1.0), "the node's kubeconfig did not follow in 1 s"
        print(f"followed in {time.monotonic() - rotated:.2f} s")
        assert mode(kubeconfig) == 0o600
        with from_kubeconfig(str(kubeconfig), timeout=5) as client:
            assert client.get_pod("default", "web-0")["metadata"]["name"] == "web-0"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[:3] == [
        f"created    {NODE_KUBECONFIG}.ca.crt (0600)",
        f"created    {NODE_KUBECONFIG} (0600)",
        "created    /opt/cni/bin/multus-cni (0755)",
    ]
    # Later passes list only what changed: the kubeconfig, once.
    assert lines[5:] == [f"updated    {NODE_KUBECONFIG} (0600)"], out
    assert old not in out + err and new not in out + err
    assert not [name for name in os.listdir(kubeconfig.parent) if name.endswith(".tmp")]


def test_every_reports_a_failed_pass_and_goes_on(tmp_path, kube_api, account):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "PYTHON"))}
    args = [str(SCRIPT), "install", "--conf", str(SEED), "--conf-dir", f"{tmp_path}/net.d", "--bin-dir",
            f"{tmp_path}/bin", "--kubeconfig", f"{tmp_path}/kube/config", "--serviceaccount-dir", str(account),
            "--api-server", kube_api.url, "-o", "json", "--every", "0.1"]  # fmt: skip
    log = tmp_path / "passes.jsonl"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, text=True, env=env)

    def passes() -> list[dict]:
        return [json.loads(line) for line in log.read_text().split("\n")[:-1]]  # one line per pass, whole ones

    try:
        assert wait_for(lambda: len(passes()) >= 1, 20)
        assert passes()[0]["ok"] is True
        (account / "token").unlink()  # kubelet's volume gone for a moment
        assert wait_for(lambda: not passes()[-1]["ok"], 5)
        assert proc.poll() is None  # a later pass that fails is retried, not fatal
        write_token(account, kube_api.token)
        assert wait_for(lambda: passes()[-1]["ok"], 5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    failed = next(p for p in passes() if not p["ok"])
    assert failed["error"] == f"--serviceaccount-dir: cannot read {account}/token: No such file or directory"
    assert f"multipy install: {failed['error']}" in err

    # The first pass failing ends it, with that pass's exit code.
    (account / "token").unlink()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 2 and "cannot read" in proc.stderr


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
