"""etcd v3 for multipy: a small typed key-value surface, failover across endpoints, one error type.

pyetcd (etcd-sdk-python) supplies the generated etcd v3 gRPC stubs. Its client class is not used:
it starts on a random endpoint, marks a failed one dead for five minutes, has no per-call deadline
and turns a client certificate without a CA into a plain-text channel. grpc, protobuf and pyetcd
cost ~130 ms to import, so connect() imports them, never the import of this module.

Failover: endpoints are tried in order, starting with the last one that answered. A request moves
on to the next endpoint when it was certainly not processed (no connection, TLS refused, a member
without a leader) and, for reads, also after a timeout or a dropped connection. A write that reached
a member and then failed is not repeated elsewhere: its outcome is unknown, and the error says so.
The whole call, failover included, ends within `timeout` seconds.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

DEFAULT_PORT = 2379
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 2.0
# etcd answers "no leader" before touching raft when asked to (clientv3's WithRequireLeader), so
# a member cut off from its cluster refuses fast instead of holding the call until the deadline.
_REQUIRE_LEADER = (("hasleader", "true"),)
_NO_LEADER = "etcdserver: no leader"


class _NotSent(Exception):
    """An endpoint failed before the request was sent to it: the next endpoint may safely get it."""


class EtcdConfigError(ValueError):
    """The endpoints or TLS files cannot work. `field` is the connect() argument at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class EtcdUnavailable(Exception):
    """etcd did not serve a request: unreachable, TLS refused, no quorum, timed out or rejected it."""

    def __init__(self, endpoints: Iterable[str], operation: str, causes: list[str], outcome_unknown: bool = False):
        self.endpoints = tuple(endpoints)
        self.operation = operation
        self.causes = causes
        self.outcome_unknown = outcome_unknown
        message = f"etcd {operation} failed ({', '.join(self.endpoints)}): {'; '.join(causes)}"
        if outcome_unknown:
            message += " (the write reached etcd; whether it was applied is unknown)"
        super().__init__(message)


@dataclass(frozen=True)
class Endpoint:
    url: str
    host: str
    port: int
    secure: bool

    @property
    def target(self) -> str:
        """The gRPC target: host:port, with IPv6 literals in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class KeyValue(NamedTuple):
    key: str
    value: str
    mod_revision: int
    create_revision: int
    version: int


@dataclass(frozen=True)
class Status:
    """What one member said about itself and the cluster, after a quorum read proved it serves."""

    endpoint: str
    version: str
    member_id: int
    leader_id: int
    raft_term: int
    revision: int


# The compare vocabulary of txn(): every compare must hold for the writes to happen.
@dataclass(frozen=True)
class ValueIs:
    key: str
    value: str | bytes


@dataclass(frozen=True)
class Absent:
    key: str


@dataclass(frozen=True)
class ModRevisionIs:
    key: str
    revision: int


Compare = ValueIs | Absent | ModRevisionIs


def parse_endpoints(endpoints: str | Iterable[str]) -> tuple[Endpoint, ...]:
    """kube-ipam's etcdURL: comma-separated URLs (a list is accepted too); https:// means TLS."""
    items = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    raw = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if not raw:
        raise EtcdConfigError("endpoints", "no etcd endpoint given")
    parsed = tuple(_endpoint(url) for url in raw)
    if len({e.secure for e in parsed}) > 1:
        raise EtcdConfigError("endpoints", f"mixes http:// and https:// URLs: {', '.join(raw)}")
    return parsed


def _endpoint(url: str) -> Endpoint:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https"):
        raise EtcdConfigError("endpoints", f"{url!r}: the scheme must be http or https")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise EtcdConfigError("endpoints", f"{url!r}: invalid port") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        raise EtcdConfigError("endpoints", f"{url!r}: expected scheme://host[:port]")
    return Endpoint(url, parts.hostname, port, parts.scheme == "https")


def _tls_files(secure: bool, cert_file: str | None, key_file: str | None, ca_file: str | None) -> dict[str, bytes]:
    given = {name: path for name, path in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)) if path}
    if not secure:
        if given:
            raise EtcdConfigError(next(iter(given)), "is set but the endpoints are http://; use https:// URLs for TLS")
        return {}
    if "ca_file" not in given:
        # Without a CA pyetcd would silently talk plain text; system roots never sign an etcd cluster.
        raise EtcdConfigError("ca_file", "https:// endpoints need the CA that signed the etcd server certificate")
    for present, missing in (("cert_file", "key_file"), ("key_file", "cert_file")):
        if present in given and missing not in given:
            raise EtcdConfigError(missing, f"is required when {present} is set (a client certificate needs its key)")
    return {name: _read_pem(name, path) for name, path in given.items()}


def _read_pem(field: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise EtcdConfigError(field, f"cannot read {path}: {error.strerror}") from None
    if b"-----BEGIN " not in data:
        raise EtcdConfigError(field, f"{path} is not a PEM file")
    return data


def connect(
    endpoints: str | Iterable[str],
    cert_file: str | None = None,
    key_file: str | None = None,
    ca_file: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> Etcd:
    """A client for `endpoints`. Checks the arguments and reads the TLS files now; connects on first use.

    `timeout` bounds every call, failover included; `connect_timeout` bounds the wait for one
    endpoint's connection before the next is tried (a refused connection fails at once).
    """
    parsed = parse_endpoints(endpoints)
    files = _tls_files(parsed[0].secure, cert_file, key_file, ca_file)
    if timeout <= 0 or connect_timeout <= 0:
        raise EtcdConfigError("timeout", "must be positive")
    return Etcd(parsed, files, timeout, connect_timeout)


def _load():
    # grpc's C core logs handshake and connection failures to stderr, which a runtime shows as the
    # plugin's output; the same facts reach the caller in EtcdUnavailable. An operator may still
    # ask for them by setting GRPC_VERBOSITY.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    # pyroute2 forks to open a socket in a pod's namespace; with grpc's fork handlers on, that fork
    # now and then deadlocks in a process that has used grpc (seen in bench/seed_native.py's
    # long-lived worker). The forked child never touches grpc, so the handlers buy nothing.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    import grpc
    from pyetcd import etcdrpc

    return grpc, etcdrpc


def _unsent(error) -> bool:
    """True when grpc or etcd says the request was not processed: no connection could be made for it,
    or the member refused it for lack of a leader before proposing it."""
    details = error.details() or ""
    return details.startswith("failed to connect to all addresses") or details == _NO_LEADER


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix` (etcd's GetPrefixRangeEnd)."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"  # all keys from `prefix` on


class Etcd:
    """An etcd v3 client over one or more endpoints of the same cluster. Safe to share between threads."""

    def __init__(self, endpoints: tuple[Endpoint, ...], tls: dict[str, bytes], timeout: float, connect_timeout: float):
        self.endpoints = endpoints
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._grpc, self._pb = _load()
        self._credentials = (
            self._grpc.ssl_channel_credentials(tls["ca_file"], tls.get("key_file"), tls.get("cert_file"))
            if endpoints[0].secure
            else None
        )
        self._channels: dict[Endpoint, Any] = {}
        self._lock = threading.Lock()
        self._preferred = 0

    def __repr__(self) -> str:
        return f"Etcd({','.join(e.url for e in self.endpoints)})"

    def __enter__(self) -> Etcd:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reads

    def get(self, key: str) -> KeyValue | None:
        response = self._call(f"get {key}", "KV", "Range", self._pb.RangeRequest(key=_bytes(key)), write=False)
        return self._kv(response.kvs[0]) if response.kvs else None

    def get_prefix(self, prefix: str, keys_only: bool = False) -> list[KeyValue]:
        """Every key starting with `prefix`, in key order (values are empty with keys_only)."""
        request = self._range(prefix)
        request.keys_only = keys_only
        response = self._call(f"get prefix {prefix}", "KV", "Range", request, write=False)
        return [self._kv(kv) for kv in response.kvs]

    def status(self) -> Status:
        """Proves the cluster serves: a member's status, then a quorum read through the same member."""
        response = self._call("status", "Maintenance", "Status", self._pb.StatusRequest(), write=False)
        endpoint = self.endpoints[self._preferred]
        self._call("health read", "KV", "Range", self._pb.RangeRequest(key=b"health", count_only=True), write=False)
        return Status(
            endpoint.url, response.version, response.header.member_id, response.leader,
            response.raftTerm, response.header.revision,
        )  # fmt: skip

    # -- writes

    def put(self, key: str, value: str | bytes) -> int:
        """Unconditional write; returns the new revision."""
        request = self._pb.PutRequest(key=_bytes(key), value=_bytes(value))
        return self._call(f"put {key}", "KV", "Put", request, write=True).header.revision

    def create(self, key: str, value: str | bytes) -> bool:
        """Writes `key` only if it does not exist (create_revision == 0); False if it already did."""
        return self.txn([Absent(key)], puts={key: value})

    def txn(
        self,
        compares: Iterable[Compare],
        puts: Mapping[str, str | bytes] | Iterable[tuple[str, str | bytes]] = (),
        deletes: Iterable[str] = (),
    ) -> bool:
        """If every compare holds, apply all puts and deletes atomically and return True; else change nothing."""
        pb = self._pb
        pairs = list(puts.items() if isinstance(puts, Mapping) else puts)
        removed = list(deletes)
        operations = [pb.RequestOp(request_put=pb.PutRequest(key=_bytes(k), value=_bytes(v))) for k, v in pairs]
        operations += [pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=_bytes(k))) for k in removed]
        request = pb.TxnRequest(compare=[self._compare(c) for c in compares], success=operations)
        keys = ", ".join([k for k, _ in pairs] + removed) or "no keys"
        return self._call(f"txn on {keys}", "KV", "Txn", request, write=True).succeeded

    def delete(self, key: str) -> bool:
        """True if the key existed."""
        request = self._pb.DeleteRangeRequest(key=_bytes(key))
        return self._call(f"delete {key}", "KV", "DeleteRange", request, write=True).deleted > 0

    def delete_prefix(self, prefix: str) -> int:
        """Deletes every key starting with `prefix`; returns how many there were."""
        range_request = self._range(prefix)
        request = self._pb.DeleteRangeRequest(key=range_request.key, range_end=range_request.range_end)
        return self._call(f"delete prefix {prefix}", "KV", "DeleteRange", request, write=True).deleted

    def close(self) -> None:
        """Closes the connections; a later call connects again."""
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    # -- plumbing

    def _range(self, prefix: str):
        key = _bytes(prefix) or b"\0"
        return self._pb.RangeRequest(key=key, range_end=_prefix_end(_bytes(prefix)))

    def _kv(self, kv) -> KeyValue:
        return KeyValue(_text(kv.key), _text(kv.value), kv.mod_revision, kv.create_revision, kv.version)

    def _compare(self, compare: Compare):
        pb = self._pb.Compare
        if isinstance(compare, ValueIs):
            return pb(key=_bytes(compare.key), result=pb.EQUAL, target=pb.VALUE, value=_bytes(compare.value))
        if isinstance(compare, Absent):
            return pb(key=_bytes(compare.key), result=pb.EQUAL, target=pb.CREATE, create_revision=0)
        if isinstance(compare, ModRevisionIs):
            return pb(key=_bytes(compare.key), result=pb.EQUAL, target=pb.MOD, mod_revision=compare.revision)
        raise TypeError(f"not an etcd compare: {compare!r}")

    def _call(self, operation: str, service: str, method: str, request, *, write: bool):
        grpc = self._grpc
        deadline = time.monotonic() + self.timeout
        causes: list[str] = []
        count = len(self.endpoints)
        first = self._preferred
        for step in range(count):
            index = (first + step) % count
            endpoint = self.endpoints[index]
            if deadline - time.monotonic() <= 0:
                causes.append(f"{endpoint.url}: not tried, the {self.timeout:g} s timeout was spent")
                continue
            try:
                channel = self._connected(endpoint, deadline)
                stub = getattr(self._pb, f"{service}Stub")(channel)
                response = getattr(stub, method)(request, timeout=self._left(deadline), metadata=_REQUIRE_LEADER)
            except _NotSent as error:
                causes.append(f"{endpoint.url}: {error}")
                continue
            except grpc.RpcError as error:
                causes.append(f"{endpoint.url}: {self._describe(error, endpoint)}")
                self._drop(endpoint)
                # CANCELLED: another thread's _drop closed this shared channel under the call (a daemon).
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                        grpc.StatusCode.CANCELLED):  # fmt: skip
                    raise EtcdUnavailable(self._urls(), operation, causes) from None
                if write and not _unsent(error):
                    raise EtcdUnavailable(self._urls(), operation, causes, outcome_unknown=True) from None
                continue
            except ValueError as error:  # the channel was closed by close() in another thread
                causes.append(f"{endpoint.url}: {error}")
                self._drop(endpoint)
                continue
            self._preferred = index
            return response
        raise EtcdUnavailable(self._urls(), operation, causes)

    def _connected(self, endpoint: Endpoint, deadline: float):
        """The endpoint's channel, probed with a Status call when new: a write is only sent over a
        connection that worked, so a refused, unreachable or leaderless member never gets it.
        The probe waits at most connect_timeout, so a silent endpoint does not eat the whole timeout."""
        with self._lock:
            channel = self._channels.get(endpoint)
            if channel is not None:
                return channel
            channel = self._open(endpoint)
        try:
            self._pb.MaintenanceStub(channel).Status(
                self._pb.StatusRequest(), timeout=min(self.connect_timeout, self._left(deadline)), metadata=_REQUIRE_LEADER
            )
        except self._grpc.RpcError as error:
            channel.close()
            raise _NotSent(self._describe(error, endpoint)) from None
        with self._lock:
            kept = self._channels.setdefault(endpoint, channel)
        if kept is not channel:  # another thread connected meanwhile
            channel.close()
        return kept

    @staticmethod
    def _left(deadline: float) -> float:
        return max(deadline - time.monotonic(), 0.001)

    def _urls(self) -> list[str]:
        return [e.url for e in self.endpoints]

    def _open(self, endpoint: Endpoint):
        # etcd is cluster infrastructure: never reach it through the runtime's http(s)_proxy.
        options = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 2**31 - 1)]
        if endpoint.secure:
            return self._grpc.secure_channel(endpoint.target, self._credentials, options=options)
        return self._grpc.insecure_channel(endpoint.target, options=options)

    def _drop(self, endpoint: Endpoint) -> None:
        # The next call gets a fresh, probed channel; the old one would wait out grpc's reconnect backoff.
        with self._lock:
            channel = self._channels.pop(endpoint, None)
        if channel is not None:
            channel.close()

    def _describe(self, error, endpoint: Endpoint) -> str:
        code = error.code().name
        details = (error.details() or "").replace("failed to connect to all addresses; last error: ", "")
        details = re.sub(r"^(UNKNOWN|UNAVAILABLE): (ipv[46]:\S+: )?", "", details)
        if "Connection refused" in details:
            return "connection refused"
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in details:
            hint = "the server's certificate is not signed by ca_file"
        elif endpoint.secure and any(w in details for w in ("TSI_DATA_CORRUPTED", "BAD_CERTIFICATE", "CERTIFICATE_REQUIRED")):
            hint = "the server refused the TLS handshake (does it require a client certificate? set cert_file and key_file)"
        elif endpoint.secure and ("WRONG_VERSION_NUMBER" in details or "andshake" in details):
            hint = "TLS handshake failed (is the server serving TLS?)"
        elif not endpoint.secure and "Socket closed" in details:
            hint = "the server closed the connection (does it serve TLS? then use an https:// URL)"
        elif details == _NO_LEADER:
            return "this member has no leader (no quorum)"
        return f"{hint} ({code}: {details})" if hint else f"{code}: {details}"
