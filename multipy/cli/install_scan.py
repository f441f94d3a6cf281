"""Whether a runtime tree is self-contained, read before `multipy install` copies it to a node.

The node runs the tree outside any container, so everything it needs must be inside it, except
glibc, which every node has (a tree carrying its own libc would still run the node's loader). A
tree built on one machine easily points back at it: a virtualenv's `bin/python3` is a symlink to
the build host's /usr/bin/python3.11; a wheel's extension needs libstdc++.so.6, found in the image's
/usr/lib, not on a minimal node. Such a tree runs in the image and fails on the node, so it is
refused here, each problem named:
- a symlink that is absolute or leads out of the tree (each step followed as the kernel would);
- an ELF executable or library (by magic, whatever its name) with a DT_NEEDED library that is not
  glibc's and not found in the tree where the loader looks for it: the object's DT_RPATH (unless it
  has a DT_RUNPATH), the interpreter's DT_RPATH (an executable's DT_RPATH applies to every library
  it loads), the object's DT_RUNPATH, each with $ORIGIN. Directories an RPATH names by absolute path
  are the node's, not the tree's, and the launchers set no LD_LIBRARY_PATH: a library the tree holds
  in no searched directory is not found on the node either.
It also reports the tree's glibc floor: the highest GLIBC_x.y symbol version any file needs.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from dataclasses import dataclass

from . import install_elf
from .install_runtime import SourceError, walk

# glibc's own libraries: the node provides these (and only these). libcrypt.so.1 is not one on
# Debian 12 and later (libxcrypt), nor libnsl.so.2 (libnsl2), so a tree needing them must carry them.
GLIBC = frozenset({
    "libc.so.6", "libm.so.6", "libmvec.so.1", "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1",
    "libresolv.so.2", "libanl.so.1", "libnsl.so.1", "libBrokenLocale.so.1", "libthread_db.so.1",
    "libc_malloc_debug.so.0", "libnss_files.so.2", "libnss_dns.so.2", "libnss_compat.so.2",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "ld-linux-armhf.so.3", "ld-linux.so.2", "ld-linux.so.3",
    "ld64.so.1", "ld64.so.2", "ld-linux-riscv64-lp64d.so.1", "ld-linux-loongarch-lp64d.so.1",
})  # fmt: skip
_GLIBC_VERSION = re.compile(r"GLIBC_(\d+(?:\.\d+)+)")
_MAX_LINKS = 40  # symlinks followed in one lookup, as the kernel's ELOOP limit


@dataclass(frozen=True)
class Scan:
    problems: tuple[str, ...]  # each "<path in the tree>: ..." (or "<link> -> <target> ...")
    elf_files: tuple[str, ...]  # dynamically linked ELF files of the interpreter's machine, tree-relative
    interpreter: str | None  # the interpreter's real path in the tree (its symlinks followed)
    loader: str | None  # the node's loader the interpreter names (PT_INTERP); None if it is no ELF
    library_path: tuple[str, ...]  # tree-relative directories the interpreter's DT_RPATH adds for every library
    glibc: str | None  # the floor, e.g. "2.36"; None when nothing needs a versioned glibc symbol
    glibc_needed_by: str | None  # a file that needs exactly that floor


class _Loop(Exception):
    pass


class _Outside(Exception):
    def __init__(self, link: str | None) -> None:
        super().__init__(link)
        self.link = link  # the symlink (tree-relative) whose own target left the tree; None: the path itself


def scan(source: str, interpreter: str) -> Scan:
    """Reads every file's first bytes and every ELF file's dynamic section under the tree `source`;
    `interpreter` is the tree-relative path the launchers run. SourceError when the tree cannot be read."""
    links: list[tuple[str, str]] = []
    elves: dict[str, install_elf.Elf] = {}
    problems: list[str] = []
    for relative, st in walk(source):
        path = os.path.join(source, relative)
        if stat.S_ISLNK(st.st_mode):
            links.append((relative, _read(path, os.readlink)))
        elif stat.S_ISREG(st.st_mode) and st.st_size >= len(install_elf.MAGIC) and _read(path, install_elf.is_elf):
            try:
                found = _read(path, install_elf.read)
            except install_elf.ElfError as error:
                problems.append(f"{relative}: {error}")
                continue
            if found is not None:
                elves[relative] = found
    problems += _links_out(source, links)
    main_path = _real(source, interpreter)
    main = elves.get(main_path) if main_path is not None else None
    missing, library_path = _libraries(source, elves, main_path)
    problems += missing
    floor, floor_file = _glibc_floor(elves)
    machine = main.machine if main is not None else None
    return Scan(
        problems=tuple(problems),
        elf_files=tuple(r for r, e in elves.items() if e.needed and (machine is None or e.machine == machine)),
        interpreter=main_path,
        loader=main.interpreter if main is not None else None,
        library_path=tuple("/".join(d) for d in library_path),
        glibc=".".join(map(str, floor)) if floor else None,
        glibc_needed_by=floor_file,
    )


def _links_out(source: str, links: list[tuple[str, str]]) -> list[str]:
    problems = []
    for relative, target in links:
        try:
            _resolve(source, _parts(posixpath.dirname(relative)), target, link=relative)
        except _Loop:
            pass  # a loop is broken, but it breaks nothing outside the tree
        except _Outside as outside:
            if outside.link == relative:  # else through another link, which is named itself
                where = "is an absolute path" if target.startswith("/") else "leads out of the tree"
                problems.append(f"{relative} -> {target}: {where}")
    return problems


def _libraries(source: str, elves: dict[str, install_elf.Elf], main_path: str | None):
    """(a problem per library not found, the tree directories every library is searched in besides its own)."""
    main = elves.get(main_path) if main_path is not None else None
    inherited: list[list[str]] = []
    if main is not None and not main.runpath:  # a DT_RUNPATH disables the executable's DT_RPATH for the others
        origin = _parts(posixpath.dirname(main_path))
        inherited = [d for d in (_directory(source, origin, entry) for entry in main.rpath) if d is not None]

    def search(relative: str, elf: install_elf.Elf) -> list[list[str]]:
        origin = _parts(posixpath.dirname(relative))
        own = (*(() if elf.runpath else elf.rpath), *elf.runpath)
        return [d for d in (_directory(source, origin, entry) for entry in own) if d is not None] + inherited

    # What the interpreter loads at start, its libraries' libraries included, is loaded for good: the
    # loader reuses a library of that soname for any later object (an extension needing libpython).
    loaded: dict[str, list[str]] = {}
    pending = [(main_path, main)] if main is not None else []
    while pending:
        relative, elf = pending.pop()
        for soname in elf.needed:
            found = None if soname in GLIBC or soname in loaded else _find(source, search(relative, elf), soname)
            if found is not None:
                loaded[soname] = found
                if "/".join(found) in elves:
                    pending.append(("/".join(found), elves["/".join(found)]))
    problems = [f"{relative} needs {soname}, which is neither in the tree nor glibc"
                for relative, elf in elves.items() for soname in elf.needed
                if soname not in GLIBC and soname not in loaded and _find(source, search(relative, elf), soname) is None]  # fmt: skip
    # The node's loader, listing one file at a time, is given the same directories (install_verify.py).
    directories = [*inherited, *(found[:-1] for found in loaded.values())]
    return problems, [d for i, d in enumerate(directories) if d not in directories[:i]]


def _glibc_floor(elves: dict[str, install_elf.Elf]) -> tuple[tuple[int, ...] | None, str | None]:
    floor, needed_by = None, None
    for relative, elf in elves.items():
        for soname, versions in elf.versions.items():
            if soname not in GLIBC:
                continue
            for version in versions:
                match = _GLIBC_VERSION.fullmatch(version)
                number = tuple(int(n) for n in match.group(1).split(".")) if match else None
                if number is not None and (floor is None or number > floor):
                    floor, needed_by = number, relative
    return floor, needed_by


def _real(source: str, relative: str) -> str | None:
    try:
        return "/".join(_resolve(source, [], relative))
    except (_Loop, _Outside):
        return None


def _directory(source: str, origin: list[str], entry: str) -> list[str] | None:
    """The tree directory an RPATH/RUNPATH `entry` of an object in `origin` names; None if it names none
    (an absolute path is the node's; a relative one without $ORIGIN is relative to the caller's cwd)."""
    for token in ("$ORIGIN", "${ORIGIN}"):
        if entry == token or entry.startswith(token + "/"):
            rest = entry[len(token):].lstrip("/")
            if "$" in rest:
                return None  # $LIB, $PLATFORM: the node's loader decides, so none is certain
            try:
                return _resolve(source, origin, rest)
            except (_Loop, _Outside):
                return None
    return None


def _find(source: str, directories: list[list[str]], soname: str) -> list[str] | None:
    """The library `soname` in the first of the tree `directories` that has it: its real path components."""
    if "/" in soname:
        return None  # a DT_NEEDED path: the node's, never the tree's
    for directory in directories:
        try:
            found = _resolve(source, directory, soname)
        except (_Loop, _Outside):
            continue
        if os.path.isfile(os.path.join(source, *found)):
            return found
    return None


def _resolve(source: str, start: list[str], target: str, hops: int = 0, link: str | None = None) -> list[str]:
    """Where `target`, looked up from the tree directory `start` (path components), leads: path
    components in the tree, every symlink followed as the kernel would. _Outside when a step leaves
    the tree (`link`: the symlink whose target `target` is), _Loop after too many symlinks. A missing
    component is kept as it is (the result then names nothing)."""
    if target.startswith("/"):
        raise _Outside(link)
    parts = list(start)
    for name in target.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if not parts:
                raise _Outside(link)
            parts.pop()
            continue
        parts.append(name)
        path = os.path.join(source, *parts)
        if os.path.islink(path):
            if hops >= _MAX_LINKS:
                raise _Loop
            parts = _resolve(source, parts[:-1], _read(path, os.readlink), hops + 1, "/".join(parts))
    return parts


def _parts(relative: str) -> list[str]:
    return [p for p in relative.split("/") if p]


def _read(path: str, operation):
    try:
        return operation(path)
    except OSError as error:
        raise SourceError(f"--runtime: cannot read {path}: {error.strerror}") from None
