"""multus-shim: the executable a runtime runs in thick mode; it hands each CNI request to the daemon.

It must start fast and run anywhere multipy's Python is: stdlib only, no multipy import (it is
installed as a lone file run with `python -IS`, so not even site-packages is scanned; that file holds
this module's bytecode, see multipy.cli.install_files.shim_launcher).

One request, one connection to <daemonSocketDir>/multipy.sock:
1. one byte b"\\0", carrying (SCM_RIGHTS) an open fd of CNI_NETNS when there is one: the daemon
   enters the pod's namespace through it, so it needs neither hostPID nor mount propagation;
2. POST /cni {"env": the CNI_* variables, "config": stdin}, HTTP/1.1, Connection: close;
3. 200 + result, or 204: printed, exit 0; 4xx/5xx + CNI error object: printed, exit 1.

When the daemon cannot be reached (no socket, refused, no permission, not a socket, no accept in
time), answers 503 (draining, queue full) or drops the connection before a complete answer (killed
mid-request), the request runs here in thin mode: the thin `multus-cni` next to this file is exec'd
with the same environment and stdin. DEL always does so: answering success without running the
delegates would leak every lease (Multus thick's bug). `"thinFallback": false` in the conf turns it
off for the other commands, which then fail with code 11 (STATUS: 50) naming the socket.

`multus-shim --probe healthz|readyz [--socket-dir DIR]` asks the daemon and exits 0 on HTTP 200:
an exec probe for the DaemonSet.
"""

import _json
import _socket
import posix
import sys
import time

# The C halves of json, socket and os: the Python modules cost ~16 ms of imports (re, enum, ...) per
# request, most of a shim's start, and os alone ~0.8 ms (posixpath, stat, _collections_abc). The hot
# path (decode the conf, encode the request, pass the netns fd) needs only these; the rare paths
# (VERSION, errors, the thin fallback) import json and os themselves.

# multipy.cni.version.SUPPORTED_VERSIONS (not imported: this file runs alone); a unit test keeps them equal.
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
DEFAULT_SOCKET_DIR = "/run/multipy"
SOCKET_NAME = "multipy.sock"
THIN_NAME = "multus-cni"
THIN_ENV = "MULTIPY_THIN"  # the thin executable's path, instead of the one next to this file (tests)
CONNECT_TIMEOUT = 5.0  # seconds: a daemon that does not accept by then is treated as down
RESPONSE_TIMEOUT = 150.0  # seconds for the whole answer: below kubelet's 4-minute sandbox budget
PROBE_TIMEOUT = 5.0
ENV_KEYS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")

TRY_AGAIN_LATER, STATUS_UNAVAILABLE, INTERNAL = 11, 50, 999
ABOUT = "multus-shim: multipy's thick-mode CNI executable (hands requests to `multipy daemon`)"


class _Decoding:
    """What _json's scanner reads from json.JSONDecoder: the standard decoding, no hooks."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int

    @staticmethod
    def parse_constant(name: str) -> float:
        return float(name.replace("Infinity", "inf"))  # NaN, Infinity, -Infinity as json.loads reads them


_scan = _json.make_scanner(_Decoding())


def loads(data: bytes):
    """json.loads for the conf on stdin; ValueError when it is not one JSON document."""
    text = data.decode("utf-8")
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        value, end = _scan(text, start)
        if not text[end:].strip(" \t\n\r"):
            return value
    except Exception:  # noqa: BLE001 - malformed: the scanner's error paths expect json.decoder, so ask json itself
        pass
    import json

    return json.loads(text)  # raises ValueError (or RecursionError) naming what is wrong


def request_body(env: dict, config: str) -> bytes:
    """json.dumps({"env": env, "config": config}) for string values, by the encoder json itself uses."""
    quote = _json.encode_basestring_ascii
    fields = ", ".join(f"{quote(key)}: {quote(value)}" for key, value in env.items())
    return f'{{"env": {{{fields}}}, "config": {quote(config)}}}'.encode("ascii")


class Unreachable(Exception):
    """The daemon could not take or finish the request: run it in thin mode (or say code 11)."""


class NoAnswer(Exception):
    """The daemon took the request but did not answer in time: it may still be working on it."""


def socket_path(conf: dict) -> str:
    directory = conf.get("daemonSocketDir")
    return in_directory(directory if isinstance(directory, str) and directory else DEFAULT_SOCKET_DIR, SOCKET_NAME)


def in_directory(directory: str, name: str) -> str:
    """os.path.join(directory, name) for a relative `name`."""
    return directory + name if not directory or directory.endswith("/") else f"{directory}/{name}"


def environment() -> dict[str, str]:
    """os.environ, made as os makes it: posix's bytes in the filesystem encoding, undecodable bytes kept."""
    encoding = sys.getfilesystemencoding()
    return {key.decode(encoding, "surrogateescape"): value.decode(encoding, "surrogateescape")
            for key, value in posix.environ.items()}  # fmt: skip


def connect(path: str, deadline: float) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    sock.settimeout(max(0.001, min(CONNECT_TIMEOUT, deadline - time.monotonic())))
    try:
        sock.connect(path)
    except TimeoutError:
        sock.close()
        raise Unreachable(f"{path}: no accept within {CONNECT_TIMEOUT:g} s") from None
    except OSError as error:
        # ENOENT, ECONNREFUSED, EACCES, ENOTSOCK (no daemon, or not ours), EAGAIN (backlog full): any
        # connect() failure means this request never reached a daemon, so it can run in thin mode.
        sock.close()
        raise Unreachable(f"{path}: {error.strerror or error}") from None
    return sock


def send_netns(sock: _socket.socket, netns: str) -> None:
    """The first byte, with the pod's namespace as an fd when it can be opened here."""
    handle = -1
    if netns:
        try:
            handle = posix.open(netns, posix.O_RDONLY | posix.O_CLOEXEC)
        except OSError:
            pass  # the daemon sees no fd and the path, and reports what the thin plugin would
    try:
        if handle >= 0:  # socket.send_fds, without the socket module
            rights = handle.to_bytes(4, sys.byteorder, signed=True)
            sock.sendmsg([b"\0"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        else:
            sock.sendall(b"\0")
    finally:
        if handle >= 0:
            posix.close(handle)


def http_request(method: str, target: str, body: bytes = b"") -> bytes:
    head = (f"{method} {target} HTTP/1.1\r\nHost: multipy\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode("ascii") + body


def read_response(sock: _socket.socket, deadline: float) -> tuple[int, bytes]:
    """(status, body) of the one HTTP answer on `sock`. Unreachable when the connection ends before the
    answer is complete; NoAnswer when `deadline` passes first."""
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoAnswer("no answer")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise NoAnswer("no answer") from None
        except (ConnectionResetError, BrokenPipeError) as error:
            raise Unreachable(f"connection lost: {error.strerror}") from None
        data += chunk
        parsed = _complete(data)
        if parsed is not None:
            return parsed
        if not chunk:
            raise Unreachable("the daemon closed the connection before a complete answer")


def _complete(data: bytes) -> tuple[int, bytes] | None:
    """(status, body) once `data` holds the whole answer (Content-Length bytes of body), else None."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    status_line, *fields = data[:end].decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise Unreachable(f"not an HTTP answer: {status_line[:80]!r}")
    length = 0
    for field in fields:
        name, _, value = field.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = data[end + 4 :]
    if len(body) < length:
        return None
    return int(parts[1]), body[:length]


def exchange(path: str, request: bytes, netns: str, deadline: float) -> tuple[int, bytes]:
    sock = connect(path, deadline)
    try:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            send_netns(sock, netns)
            sock.sendall(request)
        except TimeoutError:
            raise NoAnswer("request not taken") from None
        except (BrokenPipeError, ConnectionResetError) as error:
            raise Unreachable(f"connection lost: {error.strerror}") from None
        return read_response(sock, deadline)
    finally:
        sock.close()


def emit(document: dict) -> None:
    import json  # VERSION and errors only

    # As multipy's thin plugin (and Go's skel) print: 4-space indented JSON.
    sys.stdout.write(json.dumps(document, indent=4))
    sys.stdout.flush()


def error(code: int, msg: str, version: str | None) -> int:
    emit({**({"cniVersion": version} if version else {}), "code": code, "msg": msg})
    return 1


def thin_executable() -> str:
    import os  # the fallback only

    return os.environ.get(THIN_ENV) or os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), THIN_NAME)


def run_thin(stdin: bytes) -> int:
    """Replaces this process with the thin plugin, same env, same stdin bytes (a memfd: no writer to
    keep alive, whatever the size). Returns only when it cannot be executed."""
    import os

    thin = thin_executable()
    memfd = os.memfd_create("multipy-stdin", os.MFD_CLOEXEC)
    os.write(memfd, stdin)  # a memfd takes any length in one write
    os.lseek(memfd, 0, os.SEEK_SET)
    os.dup2(memfd, 0)  # inheritable: the thin plugin's stdin
    os.close(memfd)
    sys.stdout.flush()
    try:
        os.execv(thin, [thin])
    except OSError as failure:
        return error(INTERNAL, f"daemon unreachable and the thin plugin {thin} cannot be run: {failure.strerror}",
                     None)  # fmt: skip
    return 1  # not reached


def handle(environ, stdin: bytes) -> int:
    command = environ.get("CNI_COMMAND", "")
    if not command:
        sys.stderr.write(ABOUT + "\n")  # a human ran it, as Go plugins do
        return 0
    try:
        conf = loads(stdin)
        text = stdin.decode("utf-8")
    except (ValueError, RecursionError):
        conf, text = None, None  # undecodable: the thin plugin says why, exactly as it would
    requested = conf.get("cniVersion") if isinstance(conf, dict) else None
    version = requested if isinstance(requested, str) and requested else None
    if command == "VERSION":
        emit({"cniVersion": version or SUPPORTED_VERSIONS[-1], "supportedVersions": list(SUPPORTED_VERSIONS)})
        return 0
    if not isinstance(conf, dict):
        return run_thin(stdin)
    fallback = command == "DEL" or conf.get("thinFallback", True) is not False
    path = socket_path(conf)
    body = request_body({key: environ.get(key, "") for key in ENV_KEYS}, text)
    deadline = time.monotonic() + RESPONSE_TIMEOUT
    try:
        status, answer = exchange(path, http_request("POST", "/cni", body), environ.get("CNI_NETNS", ""), deadline)
    except Unreachable as why:
        if fallback:
            return run_thin(stdin)
        code = STATUS_UNAVAILABLE if command == "STATUS" else TRY_AGAIN_LATER
        return error(code, f"multipy daemon unreachable at {path} ({why}) and thinFallback is false", version)
    except NoAnswer:
        # Not a fallback: the daemon may still be running this request, and a second run beside it
        # would race it. The runtime retries the request, DEL included.
        return error(TRY_AGAIN_LATER, f"multipy daemon at {path} did not answer within {RESPONSE_TIMEOUT:g} s", version)
    if status == 503 and fallback:
        return run_thin(stdin)
    if 200 <= status < 300:
        if answer:
            sys.stdout.buffer.write(answer)
            sys.stdout.flush()
        return 0
    try:
        document = loads(answer)
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict) and "code" in document:
        sys.stdout.buffer.write(answer)
        sys.stdout.flush()
        return 1
    code = TRY_AGAIN_LATER if status == 503 else INTERNAL
    return error(code, f"multipy daemon at {path} answered HTTP {status}: {answer[:200].decode(errors='replace')}",
                 version)  # fmt: skip


def probe(argv: list[str]) -> int:
    """--probe healthz|readyz [--socket-dir DIR]: exit 0 when the daemon answers 200."""
    usage = "usage: multus-shim --probe healthz|readyz [--socket-dir DIR]\n"
    args = dict(zip(argv[0::2], argv[1::2], strict=False)) if len(argv) % 2 == 0 else {}
    which, directory = args.get("--probe"), args.get("--socket-dir", DEFAULT_SOCKET_DIR)
    if which not in ("healthz", "readyz") or set(args) - {"--probe", "--socket-dir"}:
        sys.stderr.write(usage)
        return 2
    path = in_directory(directory, SOCKET_NAME)
    try:
        status, answer = exchange(path, http_request("GET", f"/{which}"), "", time.monotonic() + PROBE_TIMEOUT)
    except (Unreachable, NoAnswer, OSError) as why:
        sys.stderr.write(f"{which}: {path}: {why}\n")
        return 1
    sys.stdout.write(f"{which}: HTTP {status} {answer[:200].decode(errors='replace')}\n")
    return 0 if status == 200 else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        return probe(argv)
    return handle(environment(), sys.stdin.buffer.read())


if __name__ == "__main__":
    sys.exit(main())
