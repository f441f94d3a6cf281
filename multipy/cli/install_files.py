"""How `multipy install` writes one file on a node, and the launchers it writes.

A file is written under a temporary name in its own directory, synced, given its mode and renamed
over the old one, so:
- a runtime never reads a half-written conf or executes a half-written plugin;
- replacing an executable that is running works: the rename swaps the directory entry and the
  running process keeps the old file, where opening that file for writing would fail with
  ETXTBSY ("text file busy");
- a file already as wanted is not touched ("unchanged"), so running it again is a no-op.
"""

from __future__ import annotations

import binascii
import importlib.util
import marshal
import os
import shlex
import stat
import zlib
from importlib import resources

from multipy import __version__, files

SHEBANG_MAX = 255  # bytes of a #! line Linux reads (BINPRM_BUF_SIZE is 256 since 5.1)


def _shebang_safe(python: str) -> bool:
    line = f"#!{python} -I".encode()
    return python.startswith("/") and not any(c.isspace() for c in python) and len(line) <= SHEBANG_MAX


def launcher(name: str, module: str, python: str) -> bytes:
    """The executable `name`: runs `module`'s main() with `python`, isolated (-I) from the caller's
    PYTHON* variables and working directory, which a runtime's environment does not control."""
    note = f"# {name}, written by `multipy install` (multipy {__version__}): {module}:main on {python}\n"
    if _shebang_safe(python):
        return f"#!{python} -I\n{note}import sys\n\nfrom {module} import main\n\nsys.exit(main())\n".encode()
    # A path a #! line cannot hold (blanks, too long) goes through the shell.
    code = f"import sys; sys.argv[0] = {name!r}; from {module} import main; sys.exit(main())"
    return f'#!/bin/sh\n{note}exec {shlex.quote(python)} -I -c {shlex.quote(code)} "$@"\n'.encode()


SHIM_FLAGS = "-IS"  # -I -S in one word: a #! line hands everything after the interpreter over as one argument
SHIM_SOURCE = "multipy/shim.py"


def _packed(data: bytes) -> str:
    """`data` as base64 of its zlib: a str literal a launcher decodes with two built-in modules."""
    return binascii.b2a_base64(zlib.compress(data, 9), newline=False).decode("ascii")


def _shim_body() -> str:
    """Python that runs multipy/shim.py: from the bytecode compiled here when the interpreter reading it has
    this one's magic number (the same minor release), else from the source.

    Compiling the 300-line shim costs ~2 ms on every call, a fifth of what the shim adds to an
    interpreter's start; a runtime runs it per pod. The bytecode is in the file itself (base64 of
    zlib of marshal, ~13 KB), not beside it: the shim stays one file that needs no path of a tree,
    and well under install_runtime's launcher bound, so prune still reads which tree it names.
    """
    source = resources.files("multipy").joinpath("shim.py").read_bytes()
    # dont_inherit: this module's `from __future__ import annotations` is not the shim's. marshal format 2
    # has no back-references, which format 3+ writes or not by each object's refcount, i.e. by whatever
    # else this process has loaded: the same release must always give the same bytes, or every install
    # pass would see a changed shim and rewrite it.
    code = marshal.dumps(compile(source, SHIM_SOURCE, "exec", dont_inherit=True), 2)
    magic = importlib.util.MAGIC_NUMBER
    return (
        "import binascii, marshal, sys, zlib  # built into Debian's python3.11: no file to load\n"
        f"if sys.modules['_frozen_importlib_external'].MAGIC_NUMBER == {magic!r}:\n"
        f"    exec(marshal.loads(zlib.decompress(binascii.a2b_base64('{_packed(code)}'))))\n"
        "else:  # another interpreter's bytecode would not load: compile the source\n"
        f"    exec(compile(zlib.decompress(binascii.a2b_base64('{_packed(source)}')), {SHIM_SOURCE!r}, 'exec'))\n"
    )


def shim_launcher(python: str) -> bytes:
    """The thick-mode executable: multipy/shim.py (as bytecode, see _shim_body) behind a #! line running
    `python` isolated and without `site` (the shim is stdlib only, so the site-packages scan would be
    start-up time for nothing)."""
    note = (f"# multus-shim, written by `multipy install --thick` (multipy {__version__}): {SHIM_SOURCE} on {python}"
            ", packed below\n")  # fmt: skip
    if _shebang_safe(python):
        return f"#!{python} {SHIM_FLAGS}\n{note}{_shim_body()}".encode()
    # A path a #! line cannot hold: one file that sh and Python both read. sh runs line 2 (the empty
    # strings before `exec` vanish); Python sees a string statement there.
    exec_line = "''''exec " + shlex.quote(python) + f' {SHIM_FLAGS} "$0" "$@" # ' + "'''"
    return f"#!/bin/sh\n{exec_line}\n{note}{_shim_body()}".encode()


def _same(path: str, data: bytes, mode: int, st: os.stat_result) -> bool:
    if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(data):
        return False
    with open(path, "rb") as f:
        return f.read() == data


def unchanged(path: str, data: bytes, mode: int) -> bool:
    """Whether `path` already holds `data` with `mode` (what place() would leave as it is)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return _same(path, data, mode, st)


def place(path: str, data: bytes, mode: int) -> str:
    """`path` holds `data` with `mode` when this returns: "created", "updated" or "unchanged".
    Its directory is created (0755) when missing."""
    directory, name = os.path.split(path)
    directory = directory or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and _same(path, data, mode, st):
        return "unchanged"
    temp = files.write_temp(directory, name, data, mode, sync=False)
    try:
        os.chmod(temp, mode)  # the umask may have taken bits off at creation
        fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError:
        files.unlink_quietly(temp)
        raise
    files.sync_directory(directory)
    return "created" if st is None else "updated"
