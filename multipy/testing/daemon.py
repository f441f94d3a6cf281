"""A real `multipy daemon` process for tests and benches, and a tiny stdlib client for its unix socket.

    with DaemonProcess(tmp_path) as daemon:          # socket dir tmp_path/run, waits for the socket
        reply = daemon.request("POST", "/cni", {"env": {...}, "config": conf_text}, netns="/run/netns/x")
        reply.status, reply.json
    # leaving the block: SIGTERM, wait; SIGKILL only if it does not exit

`request` speaks as the shim does: one connection per request, and with `netns` (a path) or
`netns_fd` the leading b"\\0" carrying that namespace's fd (SCM_RIGHTS); without either, plain HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

from .runtime import executable


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body) if self.body else None


def request(socket_path: str, method: str, path: str, body=None, *, netns: str | None = None,
            netns_fd: int | None = None, timeout: float = 120.0, fd_byte: bool | None = None) -> Reply:  # fmt: skip
    """One HTTP/1.1 request over the unix socket; `body` a dict is sent as JSON."""
    payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    opened = None
    if netns:
        try:
            opened = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd_byte = True  # as the shim: the byte goes, with no fd, and the daemon finds no namespace
    fd = opened if opened is not None else netns_fd
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(socket_path)
            if fd is not None or fd_byte:
                socket.send_fds(conn, [b"\0"], [fd] if fd is not None else [])
            head = (f"{method} {path} HTTP/1.1\r\nHost: multipy\r\nConnection: close\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")  # fmt: skip
            conn.sendall(head.encode() + payload)
            raw = b""
            while chunk := conn.recv(65536):
                raw += chunk
    finally:
        if opened is not None:
            os.close(opened)
    return parse(raw)


def parse(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return Reply(status, headers, body)


def cni_body(command: str, conf, *, container_id: str = "", netns: str = "", ifname: str = "",
             cni_args: str = "", cni_path: str = "/usr/lib/cni") -> dict:  # fmt: skip
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
           "CNI_ARGS": cni_args, "CNI_PATH": cni_path}  # fmt: skip
    return {"env": {k: v for k, v in env.items() if v}, "config": conf if isinstance(conf, str) else json.dumps(conf)}


class DaemonProcess:
    """`multipy daemon` in its own process, with its socket in `<directory>/run`."""

    def __init__(self, directory, *args: str, env: dict | None = None, log_level: str = "debug",
                 host_netns: str | None = None) -> None:  # fmt: skip
        # host_netns: a named namespace (`ip netns`) the daemon runs in, as a node's stand-in
        self.directory = str(directory)
        self.socket_dir = os.path.join(self.directory, "run")
        self.socket_path = os.path.join(self.socket_dir, "multipy.sock")
        self.log_path = os.path.join(self.directory, "daemon.log")
        self.args = ["--socket-dir", self.socket_dir, "--log-level", log_level, *args]
        self.env = env
        self.host_netns = host_netns
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        argv = [executable("multipy"), "daemon", *self.args]
        if self.host_netns:
            argv = ["ip", "netns", "exec", self.host_netns, *argv]  # ip execs: the pid is the daemon's
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        environ.update(self.env or {})
        os.makedirs(self.directory, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=environ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"multipy daemon exited with {self.proc.returncode}: {self.log()}")
            if os.path.exists(self.socket_path):
                try:
                    if self.request("GET", "/healthz", timeout=5).status == 200:
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"multipy daemon did not serve within {timeout:g}s: {self.log()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def request(self, method: str, path: str, body=None, **kwargs) -> Reply:
        return request(self.socket_path, method, path, body, **kwargs)

    def cni(self, command: str, conf, **kwargs) -> Reply:
        netns = kwargs.get("netns", "")
        fd_kwargs = {k: kwargs.pop(k) for k in ("netns_fd",) if k in kwargs}
        if "netns_fd" not in fd_kwargs and netns:
            fd_kwargs["netns"] = netns
        return self.request("POST", "/cni", cni_body(command, conf, **kwargs), **fd_kwargs)

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it is still there. Its exit code (None if never started)."""
        if self.proc is None:
            return None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            return self.proc.returncode
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
