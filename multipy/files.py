"""Files written so that a reader, a crash or a power cut never sees them half written.

The content goes to a temporary name in the same directory first (same filesystem,
so the final rename or link is atomic); that name starts with `tmp_prefix`, which
lets a directory's readers tell a leftover apart from a real entry. `create` is the
step under both: a file made, written and synced, removed again if that fails.
OSError is raised as is: each caller words it as its own CNI error.

Temporary names are unique per call, not per process: a daemon's threads write the
same files at once, and two writers sharing a temporary file would publish a mix.
"""

from __future__ import annotations

import os

_TEMP_ATTEMPTS = 8  # a name already taken is a crash's leftover: pick another


def create(path: str, data: bytes, mode: int = 0o600, sync: bool = True, exclusive: bool = False) -> None:
    """`path` holding `data`, synced unless `sync` is False; on failure it is removed again.

    `exclusive`: FileExistsError if `path` exists (O_EXCL), else a file there is overwritten:
    only for names the caller owns, such as its temporary files.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    try:
        view = memoryview(data)
        while view:  # a write may be short; the next one finishes it or raises (ENOSPC, ...)
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except OSError:
        os.close(fd)
        unlink_quietly(path)
        raise
    os.close(fd)


def write_temp(directory: str, name: str, data: bytes, mode: int = 0o600, tmp_prefix: str = ".",
               sync: bool = True) -> str:
    """A new file `<directory>/<tmp_prefix><name>.<pid>-<random>.tmp` holding `data` (see `create`); its path.

    Created O_EXCL under a name no other call uses (the pid says which process left a
    leftover behind, the random part keeps threads and calls apart).
    """
    attempts_left = _TEMP_ATTEMPTS
    while True:
        temp = os.path.join(directory, f"{tmp_prefix}{name}.{os.getpid()}-{os.urandom(6).hex()}.tmp")
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
        os.replace(temp, path)
    except OSError:
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
