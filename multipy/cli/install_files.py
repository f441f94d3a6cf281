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

import os
import shlex
import stat
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


def shim_launcher(python: str) -> bytes:
    """The thick-mode executable: multipy/shim.py itself behind a #! line running `python` isolated and
    without `site` (the shim is stdlib only, so the site-packages scan would be start-up time for nothing)."""
    source = resources.files("multipy").joinpath("shim.py").read_text()
    note = f"# multus-shim, written by `multipy install --thick` (multipy {__version__}): multipy/shim.py on {python}\n"
    if _shebang_safe(python):
        return f"#!{python} {SHIM_FLAGS}\n{note}{source}".encode()
    # A path a #! line cannot hold: one file that sh and Python both read. sh runs line 2 (the empty
    # strings before `exec` vanish); Python sees a string statement there, and the shim has no
    # __future__ import that would have to come first.
    exec_line = "''''exec " + shlex.quote(python) + f' {SHIM_FLAGS} "$0" "$@" # ' + "'''"
    return f"#!/bin/sh\n{exec_line}\n{note}{source}".encode()


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
