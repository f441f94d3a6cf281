"""Files written so that a reader, a crash or a power cut never sees them half written.

The content goes to a temporary name in the same directory first (same filesystem,
so the final rename or link is atomic); that name starts with `tmp_prefix`, which
lets a directory's readers tell a leftover apart from a real entry. `create` is the
step under both: a file made, written and synced, removed again if that fails.
OSError is raised as is: each caller words it as its own CNI error.

Temporary names are unique per call, not per process: a daemon's threads write the
same files at once, and two writers sharing a temporary file would publish a mix.

Nothing here follows a symbolic link at the last component (O_NOFOLLOW): a link planted
in cniDir or dataDir at a temporary or final name is never written through. Reads of
multipy's own state (`read_regular`) accept a regular file only, opened without blocking
(a FIFO planted at a record's name would hang an open or a read forever) and read up to a
bound (a record symlinked or hard-linked to something huge is refused, not swallowed).
"""

from __future__ import annotations

import errno
import os
import stat

from multipy.failpoints import failpoint

_TEMP_ATTEMPTS = 8  # a name already taken is a crash's leftover: pick another
TEMP_SUFFIX = ".tmp"
# What write_temp adds to a name: "." + pid (at most 7 digits, pid_max 4194304) + "-" + 12 hex + ".tmp",
# plus a one-character prefix. A name longer than NAME_MAX minus this cannot be written atomically.
TEMP_OVERHEAD = 1 + 1 + 7 + 1 + 12 + len(TEMP_SUFFIX)
NAME_MAX = 255  # bytes in one path component (Linux, every filesystem multipy writes to)
MIB = 1024 * 1024


class UnsafeFile(OSError):
    """A file `read_regular` refuses: a symlink, not a regular file, or larger than the bound."""


def read_regular(path: str, limit: int = MIB, follow_symlinks: bool = False) -> bytes:
    """The content of the regular file `path`, at most `limit` bytes; UnsafeFile otherwise.

    The last component is not followed (O_NOFOLLOW), the open never blocks (O_NONBLOCK: a
    FIFO answers at once, and is then refused by fstat), and no more than `limit` + 1 bytes are
    read whatever the file claims to be. Other OSErrors (FileNotFoundError, ...) are raised as is.
    `follow_symlinks`: for files an operator names (/etc/resolv.conf is often a link), not multipy's own.
    """
    nofollow = 0 if follow_symlinks else os.O_NOFOLLOW
    try:
        fd = os.open(path, os.O_RDONLY | nofollow | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(errno.ELOOP, "is a symbolic link, refused", path) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(errno.EINVAL, "is not a regular file, refused", path)
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnsafeFile(errno.EFBIG, f"is larger than {limit} bytes, refused", path)
    return data


def create(path: str, data: bytes, mode: int = 0o600, sync: bool = True, exclusive: bool = False) -> None:
    """`path` holding `data`, synced unless `sync` is False; on failure it is removed again.

    `exclusive`: FileExistsError if `path` exists (O_EXCL), else a file there is overwritten:
    only for names the caller owns, such as its temporary files.
    """
    # O_NOFOLLOW: a symlink planted at `path` is refused (ELOOP), never written through.
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    except OSError:
        os.close(fd)
        unlink_quietly(path)
        raise
    os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd`: a write may be short; the next one finishes it or raises (ENOSPC, ...)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_temp(directory: str, name: str, data: bytes, mode: int = 0o600, tmp_prefix: str = ".",
               sync: bool = True) -> str:
    """A new file `<directory>/<tmp_prefix><name>.<pid>-<random>.tmp` holding `data` (see `create`); its path.

    Created O_EXCL under a name no other call uses (the pid says which process left a
    leftover behind, the random part keeps threads and calls apart).
    """
    attempts_left = _TEMP_ATTEMPTS
    while True:
        temp = os.path.join(directory, f"{tmp_prefix}{name}.{os.getpid()}-{os.urandom(6).hex()}{TEMP_SUFFIX}")
        try:
            create(temp, data, mode, sync, exclusive=True)
            return temp
        except FileExistsError:
            attempts_left -= 1
            if not attempts_left:
                raise


def write_atomic(path: str, data: bytes, mode: int = 0o600, tmp_prefix: str = ".", durable: bool = True) -> None:
    """Replace `path` with `data`, all or nothing. The directory must exist.

    `durable`: the file and the directory entry are synced, so that once this returns
    the new content survives a power cut; without it a crash may bring back the old one.
    """
    directory, name = os.path.split(path)
    temp = write_temp(directory, name, data, mode, tmp_prefix, sync=durable)
    try:
        failpoint("files.write_atomic.before_rename")
        os.replace(temp, path)
    except BaseException:  # whatever stops the rename, the temp file goes (only SIGKILL leaves it)
        unlink_quietly(temp)
        raise
    if durable:
        sync_directory(directory)


def sync_directory(directory: str) -> None:
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def stale_temps(directory: str, name: str = "", tmp_prefix: str = ".", older_than: float | None = None) -> list[str]:
    """write_temp's leftovers in `directory`: of `name` only when given, else of any name; with
    `older_than` (seconds), only those not modified for that long (a live writer's file is young)."""
    import time

    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    head = f"{tmp_prefix}{name}." if name else tmp_prefix
    now = time.time()
    found = []
    for entry in entries:
        if not (entry.startswith(head) and entry.endswith(TEMP_SUFFIX)):
            continue
        rest = entry[len(head):-len(TEMP_SUFFIX)] if name else entry[len(tmp_prefix):-len(TEMP_SUFFIX)].rpartition(".")[2]
        pid, dash, rand = rest.partition("-")
        if not (dash and pid.isdigit() and len(rand) == 12):
            continue  # not a name write_temp makes (for `name`, a longer name's temp file never matches)
        path = os.path.join(directory, entry)
        if older_than is not None:
            try:
                if now - os.lstat(path).st_mtime < older_than:
                    continue
            except OSError:
                continue
        found.append(path)
    return sorted(found)


def flock_until(fd: int, deadline: float, max_pause: float = 0.05) -> bool:
    """Take an exclusive flock on `fd`, polling until `deadline` (time.monotonic()); False if it stayed
    taken. Polled rather than blocking, so a stuck holder becomes a retryable error, never a hung
    request. Any other OSError is raised."""
    import fcntl
    import time

    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, max_pause)
