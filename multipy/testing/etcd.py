"""Real etcd servers for tests and the demo: one member or a three-member cluster on loopback, plain or TLS.

Runs the `etcd` binary (Debian's etcd-server, or ETCD_BIN) on free loopback ports with its own data
directory (on /dev/shm when possible: tmpfs makes etcd's fsyncs free). Members can be stopped and
started again to inject faults. Only the processes started here are ever signalled, and close()
removes every file, also after a failed start.

    with EtcdCluster() as etcd:                      # or EtcdCluster(members=3, tls=True)
        client = connect(**etcd.client_args())
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass

from . import certs
from .runtime import unique

ETCD_BIN = os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL_BIN = os.environ.get("ETCDCTL_BIN") or shutil.which("etcdctl") or "/usr/bin/etcdctl"
# Half etcd's defaults (100/1000 ms): loopback is fast, so leaders are found sooner and a stopped
# member noticed sooner, while 500 ms stays above the stalls of a two-core machine running ADD
# storms from many processes (a spurious election would fail writes in flight).
HEARTBEAT_MS = 50
ELECTION_MS = 500
START_TIMEOUT = 20.0


class EtcdStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scratch_root() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: str
    log_file: str
    secure: bool
    process: subprocess.Popen | None = None

    @property
    def client_url(self) -> str:
        return f"{'https' if self.secure else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running else None


class EtcdCluster:
    """`members` real etcd processes forming one cluster; `tls` serves clients over TLS with client certificates."""

    def __init__(self, members: int = 1, tls: bool = False, binary: str = ETCD_BIN):
        if members < 1:
            raise ValueError("an etcd cluster needs at least one member")
        self.size = members
        self.tls = tls
        self.binary = binary
        self.directory = tempfile.mkdtemp(prefix="multipy-etcd-", dir=_scratch_root())
        self.members: list[Member] = []
        self._initial_cluster = self._token = ""
        self.ca_file = self.cert_file = self.key_file = None
        self._server_pair: certs.KeyPair | None = None
        if tls:
            try:
                authority = certs.authority(os.path.join(self.directory, "pki"))
                self._server_pair = authority.server("etcd-server")
                client = authority.client("etcd-client")
            except BaseException:
                shutil.rmtree(self.directory, ignore_errors=True)
                raise
            self.ca_file, self.cert_file, self.key_file = authority.cert, client.cert, client.key

    # -- lifecycle

    def start(self) -> EtcdCluster:
        """Starts every member and waits until the cluster serves; retries on a port taken meanwhile.
        On failure nothing is left running or on disk."""
        try:
            for _attempt in range(3):
                self._layout()
                try:
                    for member in self.members:
                        self._spawn(member)
                    for member in self.members:
                        self._wait_healthy(member)
                    return self
                except EtcdStartError:
                    self._stop_all(signal.SIGKILL)
                    if not any("address already in use" in self._log_tail(m) for m in self.members):
                        raise
            raise EtcdStartError("etcd found its ports taken three times")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stops the members this object started and removes every file it made.

        SIGKILL: the data is thrown away, and a member that lost its peers can spend seconds on a
        graceful stop (leadership transfer to members that are gone)."""
        try:
            self._stop_all(signal.SIGKILL)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- fault injection

    def stop_member(self, index: int, kill: bool = False) -> None:
        """Stops one member (SIGTERM, or SIGKILL for a crash); its data stays for start_member()."""
        self._stop(self.members[index], signal.SIGKILL if kill else signal.SIGTERM)

    def start_member(self, index: int, wait: bool = True) -> None:
        """Starts a stopped member again with its data; waits until it serves, if the cluster has quorum."""
        member = self.members[index]
        if member.running:
            return
        self._spawn(member)
        if wait:
            self._wait_healthy(member)

    # -- for clients

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def url(self) -> str:
        """kube-ipam's etcdURL: every member's client URL, comma-separated."""
        return ",".join(self.endpoints)

    def client_args(self) -> dict:
        """Keyword arguments for multipy.clients.etcd.connect()."""
        return {"endpoints": self.endpoints, "ca_file": self.ca_file, "cert_file": self.cert_file, "key_file": self.key_file}

    def etcd_config(self) -> dict:
        """kube-ipam's `etcdConfig` block for this cluster."""
        conf = {"etcdURL": self.url}
        if self.tls:
            conf.update(etcdCertFile=self.cert_file, etcdKeyFile=self.key_file, etcdTrustedCAFileFile=self.ca_file)
        return conf

    def etcdctl(self, *args: str, endpoints: list[str] | None = None) -> str:
        """Runs etcdctl (v3 API) against the cluster: an independent client to check what ours wrote."""
        argv = [ETCDCTL_BIN, f"--endpoints={','.join(endpoints or self.endpoints)}", "--command-timeout=5s"]
        if self.tls:
            argv += [f"--cacert={self.ca_file}", f"--cert={self.cert_file}", f"--key={self.key_file}"]
        proc = subprocess.run([*argv, *args], capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"})
        if proc.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def keys(self, prefix: str = "") -> dict[str, str]:
        """Every key under `prefix` and its value, read with etcdctl."""
        out = self.etcdctl("get", prefix, "--prefix" if prefix else "--from-key", "-w", "json")
        kvs = json.loads(out).get("kvs", [])
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode() for kv in kvs}

    # -- internals

    def _layout(self) -> None:
        """Fresh ports and data directories for every member (also for a retried start)."""
        token = unique("mp-etcd-")
        self.members = []
        for i in range(self.size):
            name = f"m{i}"
            data_dir = os.path.join(self.directory, name)
            shutil.rmtree(data_dir, ignore_errors=True)
            os.makedirs(data_dir, mode=0o700)
            self.members.append(
                Member(name, free_port(), free_port(), data_dir, os.path.join(data_dir, "etcd.log"), self.tls)
            )
        self._initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        self._token = token

    def _argv(self, member: Member) -> list[str]:
        argv = [
            self.binary, "--name", member.name, "--data-dir", os.path.join(member.data_dir, "data"),
            "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", self._initial_cluster, "--initial-cluster-token", self._token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]  # fmt: skip
        if self.tls:
            pair = self._server_pair
            argv += ["--cert-file", pair.cert, "--key-file", pair.key, "--client-cert-auth", "--trusted-ca-file", self.ca_file]
        return argv

    def _spawn(self, member: Member) -> None:
        with open(member.log_file, "ab") as log:
            try:
                # Its own session: a Ctrl-C aimed at pytest must not kill etcd before teardown stops it.
                member.process = subprocess.Popen(
                    self._argv(member), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
                )
            except OSError as error:
                raise EtcdStartError(f"cannot run {self.binary}: {error.strerror} (install Debian's etcd-server)") from None

    def _stop(self, member: Member, sig: int = signal.SIGTERM) -> None:
        process = member.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        member.process = None

    def _stop_all(self, sig: int = signal.SIGTERM) -> None:
        for member in self.members:
            self._stop(member, sig)

    def _wait_healthy(self, member: Member) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer"
        # /health blocks until a leader exists: ask with a short timeout first, so a check sent
        # before the election does not hold the start up for long; longer ones for a loaded machine.
        wait = 0.1
        while time.monotonic() < deadline:
            if not member.running:
                raise EtcdStartError(f"etcd {member.name} exited: {self._log_tail(member)}")
            try:
                wait = min(wait * 1.5, 2.0)
                if self._health(member, wait):
                    return
                last = "not healthy yet"
            except (OSError, http.client.HTTPException) as error:
                last = str(error)
            time.sleep(0.01)
        raise EtcdStartError(f"etcd {member.name} not healthy within {START_TIMEOUT:g} s ({last}): {self._log_tail(member)}")

    def _health(self, member: Member, timeout: float) -> bool:
        if self.tls:
            context = ssl.create_default_context(cafile=self.ca_file)
            context.load_cert_chain(self.cert_file, self.key_file)
            conn = http.client.HTTPSConnection("127.0.0.1", member.client_port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", member.client_port, timeout=timeout)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            return response.status == 200 and json.loads(response.read()).get("health") == "true"
        finally:
            conn.close()

    def _log_tail(self, member: Member, lines: int = 5) -> str:
        try:
            with open(member.log_file, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""
