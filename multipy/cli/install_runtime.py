"""The Python runtime `multipy install --runtime` puts on a node, under its content digest.

A CNI plugin runs on the node, not in the DaemonSet's pod, so the interpreter the launchers run
must be on the node. The image's self-contained tree (a Python with multipy installed) is copied
to `<runtime dir>/<digest>/`, where the digest is a hash of the tree: every path, mode (permission
bits; set-id and sticky bits are never copied onto a node), symlink target and file's bytes. So:
- a directory, once there, never changes: the copy goes to a temporary directory next to it and
  is renamed into place, and a digest already there means the same tree ("unchanged");
- an upgrade is a new directory beside the old one, and the launchers are switched to it by
  rename, while a `multus-cni` started from the old tree keeps finding every module it imports
  late. Old trees are therefore never removed by an install; `prune` removes, on request, only
  those no launcher in the bin dir names.
Symlinks are copied as symlinks. The tree must be self-contained (a python-build-standalone tree
is; a virtualenv, whose `bin/python3` names its base interpreter, is not): install_scan.py refuses
one with links or libraries outside itself before anything is copied.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import tempfile
import time

from multipy import files

DIGEST_LENGTH = 32  # hex digits: 128 bits, short enough to read in `ls`, far from any accidental clash
INTERPRETERS = ("bin/python3", "bin/python", "python/bin/python3")  # venv or standalone layouts
LEFTOVER_AGE = 3600.0  # seconds: a temporary tree older than this was left by a killed install
_DIGEST = re.compile(rf"[0-9a-f]{{{DIGEST_LENGTH}}}")
_TEMPORARY = re.compile(rf"\.[0-9a-f]{{{DIGEST_LENGTH}}}\..+\.tmp")
_CHUNK = 1 << 20
_LAUNCHER_MAX = 64 * 1024  # bytes: a launcher is a few hundred; larger files in a bin dir are plugins


class SourceError(Exception):
    """The tree to install cannot be read or cannot be installed as it is."""


def interpreter(source: str, python: str | None) -> str:
    """The interpreter's path inside the tree `source`: `python` (relative) or the first of INTERPRETERS."""
    if python is not None:
        relative = os.path.normpath(python)
        if os.path.isabs(python) or relative.startswith(".."):
            raise SourceError(f"--python {python!r}: with --runtime, a path inside the runtime tree, e.g. bin/python3")
        if not os.path.lexists(os.path.join(source, relative)):
            raise SourceError(f"--python {python!r}: there is no {relative} in {source}")
        return relative
    for candidate in INTERPRETERS:
        if os.path.lexists(os.path.join(source, candidate)):
            return candidate
    raise SourceError(f"--runtime {source}: no interpreter at {', '.join(INTERPRETERS)}; name it with --python")


def digest(source: str) -> str:
    """The content digest of the tree `source` (reads every byte of it)."""
    return _tree(source, None)


def install(source: str, root: str, wanted: str) -> str:
    """The tree `source`, whose digest is `wanted`, at `root/wanted`: "created", or "unchanged" when
    that digest is there already. OSError: `root` cannot be written."""
    final = os.path.join(root, wanted)
    if os.path.isdir(final):
        return "unchanged"
    os.makedirs(root, mode=0o755, exist_ok=True)
    _remove_leftovers(root)
    temp = tempfile.mkdtemp(prefix=f".{wanted}.", suffix=".tmp", dir=root)
    try:
        if _tree(source, temp) != wanted:
            raise SourceError(f"--runtime {source} changed while it was being copied")
        # One sync for the whole tree: the rename must never reach the disk before the files do,
        # or a power cut leaves launchers pointing at empty files. Only paid when a tree is new.
        os.sync()
        try:
            os.rename(temp, final)
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST) and os.path.isdir(final):
                _remove(temp)  # another install put the same tree there meanwhile
                return "unchanged"
            raise
    except BaseException:
        _remove(temp)
        raise
    files.sync_directory(root)
    return "created"


def referenced(bin_dir: str, runtime_dir: str) -> set[str]:
    """The digests under the node path `runtime_dir` that a script in `bin_dir` names. A script that
    cannot be read raises OSError: better to keep every tree than to remove one still in use."""
    prefix = os.fsencode(runtime_dir.rstrip("/") + "/")
    pattern = re.compile(re.escape(prefix) + rb"([0-9a-f]{%d})(?![0-9a-f])" % DIGEST_LENGTH)
    found: set[str] = set()
    with os.scandir(bin_dir) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_size > _LAUNCHER_MAX:
                continue
            with open(entry.path, "rb") as f:
                data = f.read()
            if data.startswith(b"#!"):
                found.update(match.group(1).decode() for match in pattern.finditer(data))
    return found


def prune(root: str, keep: set[str]) -> list[str]:
    """Removes every digest directory in `root` that is not in `keep`; the names removed."""
    removed = []
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return removed
    for name in names:
        path = os.path.join(root, name)
        if name in keep or not _DIGEST.fullmatch(name) or os.path.islink(path) or not os.path.isdir(path):
            continue
        # Gone from its name at once; the deletion itself may take a while, or be cut short.
        doomed = os.path.join(root, f".{name}.{secrets.token_hex(4)}.tmp")
        os.rename(path, doomed)
        _remove(doomed)
        removed.append(name)
    if removed:
        files.sync_directory(root)
    return removed


def _tree(source: str, dest: str | None) -> str:
    """Hashes the tree `source` and, given `dest` (an empty directory), copies it there as it reads."""
    h = hashlib.sha256(b"multipy runtime tree 1\0")

    def field(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)

    top = _read(source, os.stat)
    if not stat.S_ISDIR(top.st_mode):
        raise SourceError(f"--runtime {source}: not a directory")
    field(b"d")
    field(b"")
    field(_mode(top).to_bytes(2, "big"))
    directories = []
    for relative, st in walk(source):
        path = os.path.join(source, relative)
        target = os.path.join(dest, relative) if dest else None
        if stat.S_ISLNK(st.st_mode):
            link = _read(path, os.readlink)
            field(b"l")
            field(os.fsencode(relative))
            field(os.fsencode(link))
            if target:
                os.symlink(link, target)
        elif stat.S_ISDIR(st.st_mode):
            field(b"d")
            field(os.fsencode(relative))
            field(_mode(st).to_bytes(2, "big"))
            if target:
                os.mkdir(target, 0o700)
                directories.append((target, st))
        elif stat.S_ISREG(st.st_mode):
            field(b"f")
            field(os.fsencode(relative))
            field(_mode(st).to_bytes(2, "big"))
            _file(path, target, h)
            if target:
                os.chmod(target, _mode(st))
                # Kept so that the tree's bytecode (which records its source's mtime) stays valid.
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            raise SourceError(f"--runtime {source}: {relative} is not a file, directory or symlink")
    if dest:
        # Modes last, deepest first: a read-only directory must be filled before it is made so.
        for target, st in reversed(directories):
            os.chmod(target, _mode(st))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.chmod(dest, _mode(top))
    return h.hexdigest()[:DIGEST_LENGTH]


def _file(path: str, target: str | None, h) -> None:
    try:
        f = open(path, "rb")  # closed by the with below, which also holds the copy
    except OSError as error:
        raise SourceError(f"--runtime: cannot read {path}: {error.strerror}") from None
    with f, open(target, "xb") if target else _Discard() as out:
        size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "big"))
        length = 0
        while True:
            try:
                chunk = f.read(_CHUNK)
            except OSError as error:
                raise SourceError(f"--runtime: cannot read {path}: {error.strerror}") from None
            if not chunk:
                break
            length += len(chunk)
            h.update(chunk)
            out.write(chunk)
    if length != size:
        raise SourceError(f"--runtime: {path} changed while it was being read")


class _Discard:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass


def walk(root: str, relative: str = ""):
    """(relative path, lstat) of everything under `root`, a directory before its entries, names in
    byte order: the same tree always gives the same sequence."""
    directory = os.path.join(root, relative) if relative else root
    entries = _read(directory, lambda path: sorted(os.scandir(path), key=lambda e: os.fsencode(e.name)))
    for entry in entries:
        child = os.path.join(relative, entry.name) if relative else entry.name
        st = _read(entry.path, os.lstat)
        yield child, st
        if stat.S_ISDIR(st.st_mode):
            yield from walk(root, child)


def _read(path: str, operation):
    try:
        return operation(path)
    except OSError as error:
        raise SourceError(f"--runtime: cannot read {path}: {error.strerror}") from None


def _mode(st: os.stat_result) -> int:
    return stat.S_IMODE(st.st_mode) & 0o777


def _remove_leftovers(root: str) -> None:
    now = time.time()
    with os.scandir(root) as entries:
        stale = [e.path for e in entries if _TEMPORARY.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
                 and now - e.stat(follow_symlinks=False).st_mtime > LEFTOVER_AGE]  # fmt: skip
    for path in stale:
        _remove(path)


def _remove(path: str) -> None:
    """Removes the tree `path`, read-only directories included, never following a symlink."""
    pending = [path]
    while pending:
        directory = pending.pop()
        try:
            os.chmod(directory, 0o700)
            with os.scandir(directory) as entries:
                pending.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    shutil.rmtree(path, ignore_errors=True)
