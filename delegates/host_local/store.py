"""host-local's on-disk store, file for file what the Go plugin keeps, so either can use the other's.

In `<dataDir>/<network>/` (plugins/ipam/host-local/backend/disk):

    <ip>                  one per reserved address (Go's ip.String()), "<containerID>\\r\\n<ifname>";
                          before ifnames were recorded, just "<containerID>" (still matched)
    last_reserved_ip.<n>  the address range set n handed out last, without a newline
    lock                  flock'ed around every read-modify-write (go-filemutex)

Modes are the Go plugin's (0644 files, a 0755 directory, a 0750 lock file), so
a listing does not tell which implementation wrote it.

Unlike Go, a reservation never appears half written: Go creates the file
O_EXCL and then writes it, and a crash in between leaves an empty file that no
container owns and no DEL removes (containernetworking/plugins #498). Here the
content is written and synced under a temporary name that does not parse as an
address, and link(2) gives it its real name, failing like O_EXCL when the
address is taken. Under the lock, a temporary file can only be a crash's
leftover; reading the store sweeps them.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from multipy.cni.errors import IO_FAILURE, TRY_AGAIN_LATER, CNIError
from multipy.failpoints import failpoint
from multipy.files import create, flock_until, read_regular, unlink_quietly, write_atomic, write_temp
from multipy.ipam.ranges import IPAddress

LINE_BREAK = "\r\n"
LAST_RESERVED_PREFIX = "last_reserved_ip."
LOCK_NAME = "lock"
_TEMP_PREFIX = ".multipy-"  # never an address, so Go's GetByID skips it
_FILE_MODE = 0o644
_DIR_MODE = 0o755
_LOCK_MODE = 0o750
LOCK_TIMEOUT = 60.0
_MAX_OWNER_BYTES = 4096


@dataclass(frozen=True)
class Owner:
    """Who holds an address: `ifname` is None in a file from before ifnames were recorded."""

    container_id: str
    ifname: str | None

    @classmethod
    def parse(cls, text: str) -> Owner:
        # Go compares strings.TrimSpace(content) with "<id>\r\n<ifname>" or "<id>".
        container_id, sep, ifname = text.strip().partition(LINE_BREAK)
        return cls(container_id, ifname if sep else None)

    def is_for(self, container_id: str, ifname: str) -> bool:
        """Exactly this attachment's."""
        return self.container_id == container_id and self.ifname == ifname

    def is_legacy_for(self, container_id: str) -> bool:
        """This container's, written before ifnames were recorded."""
        return self.container_id == container_id and self.ifname is None

    def may_be_for(self, container_id: str, ifname: str) -> bool:
        """Either of the above (Go's GetByID and FindByID)."""
        return self.is_for(container_id, ifname) or self.is_legacy_for(container_id)

    def encode(self) -> bytes:
        return (self.container_id + LINE_BREAK + (self.ifname or "")).encode()

    def __str__(self) -> str:
        return f"{self.container_id}/{self.ifname}" if self.ifname is not None else self.container_id


def _io_error(action: str, path: str, exc: OSError) -> CNIError:
    return CNIError(IO_FAILURE, f"host-local store: cannot {action} {path}: {exc.strerror or exc}")


def _parse_name(name: str) -> IPAddress | None:
    # inet_pton: a store holds hundreds of names, and ipaddress's parser is ~10x slower.
    family = socket.AF_INET6 if ":" in name else socket.AF_INET
    try:
        ip = ipaddress.ip_address(socket.inet_pton(family, name))
    except (OSError, ValueError):
        return None
    return ip if str(ip) == name else None  # only Go's spelling names a reservation


class DiskStore:
    """The reservations of one network. Every method but `exists` needs `locked()` held."""

    def __init__(self, path: str, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.lock_timeout = lock_timeout

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    @contextmanager
    def locked(self) -> Iterator[DiskStore]:
        """The store's flock, shared with the Go plugin; the directory is created if need be."""
        lock_path = os.path.join(self.path, LOCK_NAME)
        try:
            os.makedirs(self.path, _DIR_MODE, exist_ok=True)
            fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, _LOCK_MODE)
        except OSError as exc:
            raise _io_error("open the lock", lock_path, exc) from None
        try:
            self._acquire(fd, lock_path)
            yield self
        finally:
            os.close(fd)  # closing drops the flock

    def _acquire(self, fd: int, lock_path: str) -> None:
        # Bounded, where Go waits forever: a stuck holder becomes a retryable error, not a hung ADD.
        try:
            taken = flock_until(fd, time.monotonic() + self.lock_timeout, max_pause=0.01)
        except OSError as exc:
            raise _io_error("lock", lock_path, exc) from None
        if not taken:
            raise CNIError(
                TRY_AGAIN_LATER,
                f"host-local store: {lock_path} stayed locked for {self.lock_timeout:g}s: "
                "another host-local is stuck holding it",
            )

    def holdings(self) -> dict[IPAddress, Owner | None]:
        """Every reserved address and its owner (None: the file cannot be read, the address stays taken)."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise _io_error("list", self.path, exc) from None
        held: dict[IPAddress, Owner | None] = {}
        for name in names:
            path = os.path.join(self.path, name)
            if name.startswith(_TEMP_PREFIX):
                unlink_quietly(path)  # a crash's leftover: we hold the lock
                continue
            ip = _parse_name(name)
            if ip is None:
                continue
            try:
                # A reservation is an ID and an ifname: 4 KiB bounds it, and a FIFO, device or symlink
                # planted under an address's name is unreadable (the address stays taken), never a hang.
                held[ip] = Owner.parse(read_regular(path, _MAX_OWNER_BYTES).decode("utf-8", "replace"))
            except FileNotFoundError:
                continue
            except OSError:
                held[ip] = None
        return held

    def reserve(self, ip: IPAddress, owner: Owner, set_index: int) -> bool:
        """Take `ip` for `owner`; False if someone holds it. Records it as set `set_index`'s last."""
        final = os.path.join(self.path, str(ip))
        try:
            created = self._create(final, owner.encode())
        except OSError as exc:
            raise _io_error("write", final, exc) from None
        if created:
            self._write_last_reserved(set_index, ip)
        return created

    def _create(self, final: str, content: bytes) -> bool:
        # Synced: a reservation's name must never point at content a power cut can lose.
        temp = write_temp(self.path, os.path.basename(final), content, _FILE_MODE, _TEMP_PREFIX)
        try:
            failpoint("host_local.reserve.before_link")
            os.link(temp, final)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP):
                raise
            return self._create_exclusive(final, content)  # a filesystem without hard links
        finally:
            unlink_quietly(temp)

    def _create_exclusive(self, final: str, content: bytes) -> bool:
        try:
            create(final, content, _FILE_MODE, exclusive=True)
        except FileExistsError:
            return False
        return True

    def _write_last_reserved(self, set_index: int, ip: IPAddress) -> None:
        final = os.path.join(self.path, f"{LAST_RESERVED_PREFIX}{set_index}")
        try:
            # Not durable: losing it only restarts the round robin, as Go does for a bad file.
            write_atomic(final, str(ip).encode(), _FILE_MODE, _TEMP_PREFIX, durable=False)
        except OSError as exc:
            raise _io_error("write", final, exc) from None

    def last_reserved(self, set_index: int) -> IPAddress | None:
        """Set `set_index`'s last handed-out address; None when missing or unreadable (round robin restarts)."""
        try:
            text = read_regular(os.path.join(self.path, f"{LAST_RESERVED_PREFIX}{set_index}"), 64).decode("ascii")
        except (OSError, UnicodeDecodeError):
            return None
        # Go's net.ParseIP(content), untrimmed: a newline makes Go restart too.
        try:
            ip = ipaddress.ip_address(text) if "%" not in text else None
        except ValueError:
            return None
        return ip.ipv4_mapped or ip if ip is not None and ip.version == 6 else ip

    def release(self, ips: Iterable[IPAddress]) -> None:
        """Remove these reservations; all are tried, then the first failure is raised."""
        failure: CNIError | None = None
        for ip in ips:
            path = os.path.join(self.path, str(ip))
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                failure = failure or _io_error("remove", path, exc)
        if failure is not None:
            raise failure

