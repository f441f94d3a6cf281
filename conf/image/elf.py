"""The shared libraries of a runtime tree: which it needs and copying them in (the check that the result
needs nothing else, and its glibc floor, are `multipy install`'s own: multipy/cli/install_scan.py).

A node lends the tree nothing but glibc, so every other library any ELF file of the tree needs (the
interpreter, its extension modules, the wheels' .so files, and the libraries copied for them) is
copied into `<tree>/lib`, and each ELF file that needs one gets an RPATH relative to itself
($ORIGIN/...). Found from the files themselves (readelf for DT_NEEDED, ldd for where the build root
resolves each one), never from a hand list; glibc is what Debian's libc6 package ships.

DT_RPATH, not DT_RUNPATH (patchelf --force-rpath): a RUNPATH only serves the object's own
DT_NEEDED, while the executable's RPATH also serves what is loaded later without a path of its own.
glibc dlopen()s libgcc_s.so.1 (pthread_exit and cancellation unwind through it: a thread ending at
interpreter exit), and that lookup only finds the tree's copy through bin/python3.11's RPATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

ELF_MAGIC = b"\x7fELF"
# Loaded with dlopen() rather than named in any DT_NEEDED, so not found by reading the files:
# glibc's unwinder for pthread_exit/pthread_cancel.
DLOPENED = ("libgcc_s.so.1",)
# dlopen()ed by glibc itself (getpwuid, getaddrinfo): glibc's, needed in an image that has only glibc.
NSS_MODULES = ("libnss_files.so.2", "libnss_dns.so.2")

_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[(.+)\]")
_PATHS = re.compile(r"\((RPATH|RUNPATH)\)\s+Library (?:rpath|runpath): \[(.*)\]")
_LDD = re.compile(r"^\s*(\S+) => (\S+|not found)")


class ElfError(Exception):
    pass


def is_elf(path: str) -> bool:
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(4) == ELF_MAGIC


def elf_files(tree: str) -> list[str]:
    return sorted(os.path.join(d, name) for d, _, names in os.walk(tree) for name in names
                  if is_elf(os.path.join(d, name)))  # fmt: skip


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise ElfError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def dynamic(path: str) -> tuple[list[str], list[str]]:
    """(DT_NEEDED names, RPATH/RUNPATH entries) of `path`."""
    out = _run("readelf", "-dW", path)
    needed = _NEEDED.findall(out)
    paths = [p for _, value in _PATHS.findall(out) for p in value.split(":") if p]
    return needed, paths


def resolved(path: str) -> dict[str, str]:
    """Where the dynamic loader finds each library `path` needs (ldd: its RPATHs, then the system)."""
    found = {}
    for line in _run("ldd", path).splitlines():
        match = _LDD.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def strip(tree: str) -> list[str]:
    """Strips symbol tables and debug info where a file still has them (some wheels' .so files do;
    Debian's are stripped): nothing the loader or a traceback uses. The files stripped."""
    stripped = []
    for path in elf_files(tree):
        sections = _run("readelf", "-SW", path)
        if ".symtab" in sections or ".debug_" in sections:
            _run("strip", "--strip-unneeded", path)
            stripped.append(os.path.relpath(path, tree))
    return stripped


def glibc_names() -> set[str]:
    """The file names of glibc's shared libraries: what Debian's libc6 package installs."""
    names = set()
    for line in _run("dpkg", "-L", "libc6").splitlines():
        name = os.path.basename(line)
        if ".so" in name and "/gconv/" not in line:
            names.add(name)
    if "libc.so.6" not in names:
        raise ElfError("dpkg -L libc6 lists no libc.so.6")
    return names


def system_library(name: str) -> str:
    """The build root's file for the library `name` (for those no DT_NEEDED names)."""
    for line in _run("ldconfig", "-p").splitlines():
        fields = line.split(" => ")
        if len(fields) == 2 and fields[0].split()[0] == name and "x86-64" in fields[0]:
            return fields[1].strip()
    raise ElfError(f"{name}: not in the build root's ld.so cache")


def bundle(tree: str, glibc: set[str]) -> dict[str, str]:
    """Copies into <tree>/lib every non-glibc library the tree's ELF files need, transitively, and
    points each ELF file that needs one (and the interpreter) at it by RPATH. {library: its source}."""
    libdir = os.path.join(tree, "lib")
    copied: dict[str, str] = {}
    for name in DLOPENED:
        _copy(system_library(name), libdir, name, copied)
    pending, seen, pointed = elf_files(tree), set(), {os.path.join(tree, "bin", _interpreter(tree))}
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        where = resolved(path)
        for name in dynamic(path)[0]:
            source = where.get(name, "not found")
            if name in glibc or (source.startswith(tree + "/") and not source.startswith(libdir + "/")):
                continue  # the node's, or a wheel's own bundled library (auditwheel's <package>.libs, by its RPATH)
            if not os.path.exists(os.path.join(libdir, name)):
                if source == "not found":
                    raise ElfError(f"{os.path.relpath(path, tree)} needs {name}, which the build root does not have")
                pending.append(_copy(source, libdir, name, copied))
            pointed.add(path)
    for path in sorted(pointed):
        _point_at(path, libdir)
    return copied


def _interpreter(tree: str) -> str:
    return os.path.basename(os.path.realpath(os.path.join(tree, "bin", "python3")))


def _copy(source: str, libdir: str, name: str, copied: dict[str, str]) -> str:
    os.makedirs(libdir, exist_ok=True)
    target = os.path.join(libdir, name)  # by its soname: the name DT_NEEDED asks for
    shutil.copyfile(os.path.realpath(source), target)
    os.chmod(target, 0o644)
    copied[name] = os.path.realpath(source)
    return target


def _point_at(path: str, libdir: str) -> None:
    """RPATH of `path`: its own $ORIGIN-relative entries (a wheel's .libs), then the tree's lib dir."""
    _, current = dynamic(path)
    relative = os.path.relpath(libdir, os.path.dirname(path))
    ours = "$ORIGIN" if relative == "." else f"$ORIGIN/{relative}"
    entries = [p for p in current if p.startswith("$ORIGIN")]
    if ours not in entries:
        entries.append(ours)
    _run("patchelf", "--force-rpath", "--set-rpath", ":".join(entries), path)


def glibc_closure(tree: str, glibc: set[str]) -> set[str]:
    """glibc's libraries the tree loads (DT_NEEDED, transitively through glibc itself), plus its NSS
    modules: what an image holding only glibc and the tree must have."""
    wanted = set(NSS_MODULES)
    for path in elf_files(tree):
        wanted.update(n for n in dynamic(path)[0] if n in glibc)
    pending = list(wanted)
    while pending:
        for name in dynamic(system_library(pending.pop()))[0]:
            if name in glibc and name not in wanted:
                wanted.add(name)
                pending.append(name)
    return wanted
