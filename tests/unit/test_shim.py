"""multus-shim (multipy/shim.py) run as a lone file with `python -I -S`, as a node runs it: it imports
only the stdlib, answers VERSION itself, speaks the daemon's protocol (the b"\\0" carrying the netns
fd, then one HTTP request), prints the answer with the right exit code, and falls back to the thin
plugin (same env, same stdin bytes) when, and only when, the daemon cannot take the request."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from multipy import shim
from multipy.cni.version import SUPPORTED_VERSIONS

SHIM = Path(shim.__file__)
CONF = {"cniVersion": "0.3.1", "name": "multus-demo", "type": "multus-shim", "delegates": [{"type": "x"}]}
RESULT = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.0.0.2/24"}]}


def run_shim(env: dict, stdin: bytes | dict, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    data = json.dumps(stdin).encode() if isinstance(stdin, dict) else stdin
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run([sys.executable, "-I", "-S", str(SHIM), *args], input=data, capture_output=True,
                          env=environ, timeout=timeout, cwd="/")  # fmt: skip


def cni_env(command: str, **extra) -> dict:
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0",
            "CNI_ARGS": "IgnoreUnknown=1", "CNI_PATH": "/opt/cni/bin", **extra}  # fmt: skip


# ---- what it is --------------------------------------------------------------------------------


def test_the_hot_path_imports_neither_json_nor_socket():
    """Decoding the conf and encoding the request use the C halves only: json and socket cost ~16 ms of
    imports (re, enum, ...) in every request, most of what the shim adds to an interpreter's start."""
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('shim', {str(SHIM)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "body = m.request_body({'CNI_COMMAND': 'ADD', 'CNI_ARGS': 'K=\u00e9\"'}, '{\"a\": 1}')\n"
        "doc = m.loads(b' {\"a\": [1, 2.5, null, true, \"\\u00e9\"], \"b\": {}} ')\n"
        "print(sorted(k for k in ('json', 'socket', 're', 'enum') if k in sys.modules))\n"
        "print(body.decode()); print(repr(doc))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, check=True)
    loaded, body, doc = out.stdout.splitlines()
    assert loaded == "[]"
    assert json.loads(body) == {"env": {"CNI_COMMAND": "ADD", "CNI_ARGS": 'K=\u00e9"'}, "config": '{"a": 1}'}
    assert doc == repr({"a": [1, 2.5, None, True, "\u00e9"], "b": {}})


def test_a_request_through_it_loads_no_python_module_beyond_the_interpreters_own(tmp_path):
    """ADD, with the netns fd passed, to a daemon that is not there (thinFallback off): the whole hot path
    up to the daemon. os (~0.8 ms), json, socket, re and enum are never imported; only C modules are."""
    conf = {"cniVersion": "0.3.1", "name": "n", "type": "multus-shim", "daemonSocketDir": str(tmp_path),
            "thinFallback": False}  # fmt: skip
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        f"m = {{'__name__': 'shim'}}; exec(compile(open({str(SHIM)!r}).read(), 'shim.py', 'exec'), m)\n"
        f"m['path'], m['body'] = {str(tmp_path / 'no.sock')!r}, m['request_body']({{'CNI_COMMAND': 'ADD'}}, '{{}}')\n"
        "try:\n"
        "    m['exchange'](m['path'], m['http_request']('POST', '/cni', m['body']), '/proc/self/ns/net', 1e12)\n"
        "except m['Unreachable']:\n"
        "    pass\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30, cwd="/")
    assert out.returncode == 0, out.stderr
    added = set(out.stdout.split())
    assert not added & {"os", "json", "socket", "re", "enum", "posixpath"}, added
    assert environment_is_os_environ()
    assert json.loads(run_shim(cni_env("ADD"), conf).stdout)["code"] == shim.TRY_AGAIN_LATER


def environment_is_os_environ() -> bool:
    """shim.environment() is os.environ, undecodable bytes included."""
    code = ("import os, sys\n"
            f"sys.path.insert(0, {str(SHIM.parent)!r}); import shim\n"
            "print(shim.environment() == dict(os.environ))\n")  # fmt: skip
    env = {b"PATH": b"/usr/bin:/bin", b"ODD": b"caf\xe9\xff", b"CNI_ARGS": "K=\u00e9".encode()}
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, env=env, timeout=30)
    return out.stdout.strip() == "True"


def test_its_decoder_agrees_with_json_on_malformed_input():
    for bad in (b"", b"{", b"{}x", b'{"a": 1,}', b'"\\x"', b"[" * 5000 + b"]" * 5000 + b"!"):
        with pytest.raises((ValueError, RecursionError)):
            shim.loads(bad)


def test_it_imports_only_the_stdlib_and_nothing_of_multipy():
    tree = ast.parse(SHIM.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}  # fmt: skip
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and imported <= sys.stdlib_module_names
    # And at run time, alone with -I -S (no site-packages at all): every module loaded is the stdlib's.
    code = f"import runpy, sys; runpy.run_path({str(SHIM)!r}, run_name='loaded'); print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30,
                         cwd="/")  # fmt: skip
    assert out.returncode == 0, out.stderr
    loaded = {name.split(".")[0] for name in out.stdout.split()}
    assert "multipy" not in loaded and "site" not in loaded
    assert loaded <= set(sys.stdlib_module_names) | set(sys.builtin_module_names) | {"__main__"}


def test_its_versions_are_multipys():
    assert shim.SUPPORTED_VERSIONS == SUPPORTED_VERSIONS


def test_version_is_answered_without_a_daemon(tmp_path):
    out = run_shim({"CNI_COMMAND": "VERSION", shim.THIN_ENV: str(tmp_path / "no-thin")}, {"cniVersion": "0.4.0"})
    assert out.returncode == 0
    assert json.loads(out.stdout) == {"cniVersion": "0.4.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    out = run_shim({"CNI_COMMAND": "VERSION"}, b"")
    assert json.loads(out.stdout)["cniVersion"] == SUPPORTED_VERSIONS[-1]


def test_no_command_says_what_it_is():
    out = run_shim({}, b"")
    assert out.returncode == 0 and out.stdout == b"" and b"multus-shim" in out.stderr


# ---- a daemon that answers ---------------------------------------------------------------------


class FakeDaemon:
    """A unix socket server answering each connection with `answer(request) -> bytes | None` (None: hang
    up without a word). Records what each connection brought: the first byte, the fd's inode, the request."""

    def __init__(self, directory: Path, answer) -> None:
        directory.mkdir(mode=0o700, exist_ok=True)
        self.path = str(directory / shim.SOCKET_NAME)
        self.answer = answer
        self.seen: list[dict] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                first, fds, _, _ = socket.recv_fds(conn, 1, 1)
                inodes = [os.fstat(fd).st_ino for fd in fds]
                for fd in fds:
                    os.close(fd)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))  # fmt: skip
                while len(body) < length:
                    body += conn.recv(65536)
                request = {"first": first, "inodes": inodes, "line": head.split(b"\r\n")[0].decode(),
                           "head": head.decode(), "body": json.loads(body) if body else None}  # fmt: skip
                self.seen.append(request)
                reply = self.answer(request)
                if reply is not None:
                    conn.sendall(reply)

    def close(self) -> None:
        self.sock.close()


def http(status: int, body: bytes = b"", reason: str = "X") -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


@pytest.fixture
def daemon(tmp_path):
    made = []

    def start(answer) -> FakeDaemon:
        d = FakeDaemon(tmp_path / "run", answer)
        made.append(d)
        return d

    yield start
    for d in made:
        d.close()


@pytest.fixture
def thin(tmp_path):
    """A stand-in for the thin multus-cni: records its env and stdin, answers {"thin": true}."""
    script = tmp_path / "thin"
    record = tmp_path / "thin-saw"
    script.write_text(f"""#!{sys.executable} -I
import json, os, sys
data = sys.stdin.buffer.read()
with open({str(record)!r}, "w") as f:
    json.dump({{"env": {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}, "stdin": data.hex()}}, f)
print(json.dumps({{"thin": True}}))
sys.exit(0)
""")
    script.chmod(0o755)

    class Thin:
        path = str(script)

        @staticmethod
        def saw() -> dict | None:
            return json.loads(record.read_text()) if record.exists() else None

    return Thin


def conf_for(daemon_dir: Path, **extra) -> dict:
    return {**CONF, "daemonSocketDir": str(daemon_dir), **extra}


def test_add_goes_to_the_daemon_with_the_netns_fd_and_prints_its_result(daemon, tmp_path, thin):
    d = daemon(lambda request: http(200, json.dumps(RESULT).encode(), "OK"))
    conf = conf_for(tmp_path / "run")
    out = run_shim({**cni_env("ADD"), shim.THIN_ENV: thin.path}, conf)
    assert (out.returncode, json.loads(out.stdout)) == (0, RESULT), out.stderr
    assert thin.saw() is None
    (request,) = d.seen
    assert request["first"] == b"\0"
    assert request["inodes"] == [os.stat("/proc/self/ns/net").st_ino]  # the shim's namespace: this one
    assert request["line"] == "POST /cni HTTP/1.1" and "Connection: close" in request["head"]
    env = cni_env("ADD")
    assert request["body"] == {"env": {k: env[k] for k in shim.ENV_KEYS}, "config": json.dumps(conf)}


def test_no_fd_when_there_is_no_netns(daemon, tmp_path):
    d = daemon(lambda request: http(204))
    out = run_shim({**cni_env("DEL", CNI_NETNS="")}, conf_for(tmp_path / "run"))
    assert (out.returncode, out.stdout) == (0, b"")
    assert d.seen[0]["first"] == b"\0" and d.seen[0]["inodes"] == []
    assert d.seen[0]["body"]["env"]["CNI_NETNS"] == ""
    out = run_shim({**cni_env("DEL", CNI_NETNS=str(tmp_path / "gone"))}, conf_for(tmp_path / "run"))
    assert out.returncode == 0 and d.seen[1]["inodes"] == []


@pytest.mark.parametrize("status", [400, 410, 500, 504])
def test_a_cni_error_is_printed_as_the_daemon_wrote_it(daemon, tmp_path, thin, status):
    error = {"cniVersion": "0.3.1", "code": 7, "msg": "bad conf"}
    daemon(lambda request: http(status, json.dumps(error).encode()))
    out = run_shim({**cni_env("ADD"), shim.THIN_ENV: thin.path}, conf_for(tmp_path / "run"))
    assert (out.returncode, json.loads(out.stdout)) == (1, error)
    assert thin.saw() is None


def test_an_answer_that_is_no_cni_error_becomes_one(daemon, tmp_path):
    daemon(lambda request: http(404, b"no such path"))
    out = run_shim(cni_env("CHECK"), conf_for(tmp_path / "run"))
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and doc["code"] == 999 and "HTTP 404" in doc["msg"] and doc["cniVersion"] == "0.3.1"


# ---- when the daemon cannot take it: thin mode -------------------------------------------------


def _thin_got(thin, command: str, stdin: bytes) -> None:
    saw = thin.saw()
    assert saw is not None, "the thin plugin did not run"
    assert bytes.fromhex(saw["stdin"]) == stdin
    assert saw["env"] == {k: v for k, v in cni_env(command).items()}


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_no_socket_runs_thin_with_the_same_env_and_stdin(tmp_path, thin, command):
    conf = json.dumps(conf_for(tmp_path / "nowhere")).encode()
    out = run_shim({**cni_env(command), shim.THIN_ENV: thin.path}, conf)
    assert (out.returncode, json.loads(out.stdout)) == (0, {"thin": True}), out.stderr
    _thin_got(thin, command, conf)


def test_a_file_that_is_no_socket_runs_thin(tmp_path, thin):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / shim.SOCKET_NAME).write_text("")
    out = run_shim({**cni_env("ADD"), shim.THIN_ENV: thin.path}, conf_for(tmp_path / "run"))
    assert json.loads(out.stdout) == {"thin": True}


def test_a_socket_nobody_listens_on_runs_thin(tmp_path, thin):
    (tmp_path / "run").mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / "run" / shim.SOCKET_NAME))
    dead.close()  # the file stays, nobody listens: ECONNREFUSED, as after a daemon's SIGKILL
    out = run_shim({**cni_env("DEL"), shim.THIN_ENV: thin.path}, conf_for(tmp_path / "run"))
    assert json.loads(out.stdout) == {"thin": True}


def test_503_runs_thin(daemon, tmp_path, thin):
    daemon(lambda request: http(503, b'{"code": 11, "msg": "draining"}'))
    out = run_shim({**cni_env("ADD"), shim.THIN_ENV: thin.path}, conf_for(tmp_path / "run"))
    assert json.loads(out.stdout) == {"thin": True}


@pytest.mark.parametrize("partial", [b"", b"HTTP/1.1 200 OK\r\nContent-Le", http(200, b'{"cniVersion"')[:-3]])
def test_a_connection_dropped_before_a_complete_answer_runs_thin(daemon, tmp_path, thin, partial):
    daemon(lambda request: partial)
    stdin = json.dumps(conf_for(tmp_path / "run")).encode()
    out = run_shim({**cni_env("ADD"), shim.THIN_ENV: thin.path}, stdin)
    assert json.loads(out.stdout) == {"thin": True}
    _thin_got(thin, "ADD", stdin)


def test_thin_fallback_off_fails_add_with_code_11_naming_the_socket(tmp_path, thin):
    conf = conf_for(tmp_path / "nowhere", thinFallback=False)
    out = run_shim({**cni_env("ADD"), shim.THIN_ENV: thin.path}, conf)
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and doc["code"] == 11 and str(tmp_path / "nowhere" / shim.SOCKET_NAME) in doc["msg"]
    assert doc["cniVersion"] == "0.3.1" and thin.saw() is None
    out = run_shim({**cni_env("STATUS"), shim.THIN_ENV: thin.path}, dict(conf, cniVersion="1.1.0"))
    assert json.loads(out.stdout)["code"] == 50 and thin.saw() is None


def test_del_falls_back_even_with_thin_fallback_off(tmp_path, thin):
    conf = json.dumps(conf_for(tmp_path / "nowhere", thinFallback=False)).encode()
    out = run_shim({**cni_env("DEL"), shim.THIN_ENV: thin.path}, conf)
    assert json.loads(out.stdout) == {"thin": True}
    _thin_got(thin, "DEL", conf)


def test_a_conf_it_cannot_read_goes_to_thin_as_it_is(tmp_path, thin):
    for stdin in (b"{not json", b'{"cniVersion": "\xff"}', b"[]"):
        out = run_shim({**cni_env("ADD"), shim.THIN_ENV: thin.path}, stdin)
        assert json.loads(out.stdout) == {"thin": True}
        assert bytes.fromhex(thin.saw()["stdin"]) == stdin


def test_a_large_stdin_reaches_thin_intact(tmp_path, thin):
    conf = conf_for(tmp_path / "nowhere", padding="x" * 300_000)  # far past a pipe's 64 KiB
    stdin = json.dumps(conf).encode()
    out = run_shim({**cni_env("ADD"), shim.THIN_ENV: thin.path}, stdin)
    assert out.returncode == 0
    assert bytes.fromhex(thin.saw()["stdin"]) == stdin


def test_the_thin_plugin_next_to_it_is_the_default(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "multus-shim").write_bytes(SHIM.read_bytes())
    (bin_dir / "multus-cni").write_text("#!/bin/sh\necho '{\"next-to-it\": true}'\n")
    (bin_dir / "multus-cni").chmod(0o755)
    out = subprocess.run([sys.executable, "-I", "-S", str(bin_dir / "multus-shim")],
                         input=json.dumps(conf_for(tmp_path / "nowhere")).encode(), capture_output=True,
                         env=cni_env("DEL"), timeout=30)  # fmt: skip
    assert json.loads(out.stdout) == {"next-to-it": True}


def test_no_thin_plugin_is_a_cni_error(tmp_path):
    out = run_shim({**cni_env("DEL"), shim.THIN_ENV: str(tmp_path / "none")}, conf_for(tmp_path / "nowhere"))
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and doc["code"] == 999 and "cannot be run" in doc["msg"]


# ---- every wait is bounded ---------------------------------------------------------------------


def test_a_daemon_that_never_answers_is_code_11_not_a_second_run(daemon, tmp_path, monkeypatch, capsys, thin):
    hold = threading.Event()
    d = daemon(lambda request: hold.wait(10) and None)
    monkeypatch.setattr(shim, "RESPONSE_TIMEOUT", 0.5)
    monkeypatch.setenv(shim.THIN_ENV, thin.path)
    code = shim.handle(cni_env("DEL"), json.dumps(conf_for(tmp_path / "run")).encode())
    hold.set()
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["code"] == 11 and "did not answer within 0.5 s" in doc["msg"]
    assert len(d.seen) == 1 and thin.saw() is None


def test_a_daemon_that_never_accepts_counts_as_down(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "run" / shim.SOCKET_NAME))
    listener.listen(0)
    waiting = []
    try:
        with pytest.raises(shim.Unreachable):
            # Fill the backlog, then one more: connect() cannot complete (EAGAIN or the timeout).
            monkeypatch.setattr(shim, "CONNECT_TIMEOUT", 0.3)
            for _ in range(8):
                waiting.append(shim.connect(str(tmp_path / "run" / shim.SOCKET_NAME), shim.time.monotonic() + 5))
    finally:
        for sock in waiting:
            sock.close()
        listener.close()


# ---- the probe ---------------------------------------------------------------------------------


def test_probe(daemon, tmp_path):
    answers = {"/healthz": http(200, b"ok"), "/readyz": http(500, b"draining")}
    d = daemon(lambda request: answers[request["line"].split()[1]])
    run_dir = str(tmp_path / "run")
    out = run_shim({}, b"", "--probe", "healthz", "--socket-dir", run_dir)
    assert out.returncode == 0 and b"HTTP 200" in out.stdout
    out = run_shim({}, b"", "--probe", "readyz", "--socket-dir", run_dir)
    assert out.returncode == 1 and b"HTTP 500" in out.stdout
    assert [r["line"] for r in d.seen] == ["GET /healthz HTTP/1.1", "GET /readyz HTTP/1.1"]
    assert all(r["first"] == b"\0" and r["inodes"] == [] for r in d.seen)
    out = run_shim({}, b"", "--probe", "readyz", "--socket-dir", str(tmp_path / "nowhere"))
    assert out.returncode == 1 and b"nowhere" in out.stderr
    for bad in (["--probe", "metrics"], ["--probe"], ["--probe", "readyz", "--other", "x"]):
        assert run_shim({}, b"", *bad).returncode == 2
