"""The unix socket: accept, queue, a bounded pool of workers, HTTP/1.1 with one request per connection.

One thread accepts and queues connections; `workers` threads serve them. A full queue is
answered 503 at once by the accepting thread (the shim then runs the request in thin mode), so
a burst costs bounded memory instead of an OOM kill (Multus #1346). Nothing forks: the only
processes are the delegate binaries a request runs.

A connection from the shim starts with one byte b"\\0" carrying the pod's netns fd (SCM_RIGHTS),
then the HTTP request; anything else (curl, a probe) is plain HTTP. The fd is the request's and
is closed when it ends.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from http.server import BaseHTTPRequestHandler

from .routes import UNAVAILABLE, Reply

READ_TIMEOUT = 30.0  # seconds a client may take to send its request
_MAX_BODY = 16 * 1024 * 1024  # a conf with its prevResult is kilobytes; bound what one request may hold


def _take_fds(conn: socket.socket) -> list[int]:
    """The fds the shim sent with its leading b"\\0"; [] for plain HTTP."""
    first = conn.recv(1, socket.MSG_PEEK)
    if first != b"\0":
        return []
    _, fds, _, _ = socket.recv_fds(conn, 1, 1)
    return list(fds)


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class _Handler(BaseHTTPRequestHandler):
    """One HTTP request on an accepted connection; `routes` answers it."""

    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT
    server_version = "multipy"

    def __init__(self, conn, routes, fds: list[int], probes_only: bool = False) -> None:
        self.routes, self.fds, self.probes_only = routes, fds, probes_only
        super().__init__(conn, "", None)

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass

    def _serve(self) -> None:
        self.close_connection = True
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._reply(Reply.json(413, {"code": 4, "msg": f"request body of {length} bytes is over {_MAX_BODY}"}))
            return
        body = self.rfile.read(length) if length else b""
        if self.probes_only:
            reply = self.routes.probe(self.command, self.path)
        else:
            reply = self.routes.handle(self.command, self.path, body, self.fds)
        self._reply(reply)

    def _reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if reply.body:  # a 204's empty write fails with EPIPE once the shim, answered, has closed
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


def reject(conn: socket.socket) -> None:
    """503 without reading the request: the client sees it and falls back."""
    body = UNAVAILABLE.body
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    try:
        conn.settimeout(1.0)
        conn.sendall(head + body)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        conn.close()


class UnixServer:
    def __init__(self, path: str, routes, metrics, workers: int, queue_size: int, log) -> None:
        self.path = path
        self.routes = routes
        self.metrics = metrics
        self.log = log
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._idle = threading.Condition()
        self._pending = 0  # accepted and not yet answered: queued or being served
        self._accepting = threading.Event()
        self._listener: socket.socket | None = None
        self._threads = [threading.Thread(target=self._work, name=f"worker-{i}", daemon=True) for i in range(workers)]
        self._acceptor = threading.Thread(target=self._accept, name="accept", daemon=True)
        metrics.watch_queue(self._queue.qsize)

    # -- lifecycle

    def start(self) -> None:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # an existing directory too: only root reaches the socket
        try:
            os.unlink(self.path)  # a killed daemon's socket: nobody listens on it
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window with a wider mode
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        listener.listen(128)
        listener.settimeout(0.2)  # accept() wakes up to notice stop_accepting()
        self._listener = listener
        self._accepting.set()
        for thread in self._threads:
            thread.start()
        self._acceptor.start()

    def stop_accepting(self) -> None:
        """Close the listener and remove the socket: shims that connect now fall back to thin mode."""
        self._accepting.clear()
        self._acceptor.join(2.0)
        if self._listener is not None:
            self._listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def drain(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until every accepted connection is served; then stop the workers."""
        with self._idle:
            done = self._idle.wait_for(lambda: self._pending == 0, timeout)
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break  # not drained: the workers are daemon threads and go with the process
        return done

    # -- threads

    def _accept(self) -> None:
        while self._accepting.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._accepting.is_set():
                    self.log.error("accept failed on %s", self.path)
                continue
            conn.settimeout(None)
            try:
                with self._idle:
                    self._queue.put_nowait(conn)
                    self._pending += 1
            except queue.Full:
                self.metrics.rejected.inc()
                reject(conn)

    def _work(self) -> None:
        while True:
            conn = self._queue.get()
            if conn is None:
                return
            try:
                self._serve(conn)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _serve(self, conn: socket.socket) -> None:
        fds: list[int] = []
        self.metrics.in_flight.inc()
        try:
            conn.settimeout(READ_TIMEOUT)
            fds = _take_fds(conn)
            _Handler(conn, self.routes, fds)
        except Exception:  # noqa: BLE001 - one broken connection must not cost a worker
            self.log.exception("serving a connection failed")
        finally:
            # Before the close: the client's next request must not see this one still counted.
            self.metrics.in_flight.dec()
            _close_fds(fds)
            try:
                conn.close()
            except OSError:
                pass


def probe_server(address: tuple[str, int], routes):
    """/healthz, /readyz and /metrics on a loopback TCP address, served apart from the CNI queue so a
    busy daemon still answers kubelet's probes."""
    from http.server import ThreadingHTTPServer

    class Probes(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET

        def finish_request(self, request, client_address) -> None:
            request.settimeout(READ_TIMEOUT)
            _Handler(request, routes, [], probes_only=True)

    server = Probes(address, _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), name="probes", daemon=True)
    thread.start()
    return server
