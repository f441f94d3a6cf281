"""What the dynamic loader needs to run one ELF file: the only pyelftools user.

`multipy install` reads this from every executable and shared library of a runtime tree, to refuse
a tree that needs libraries from outside itself (install_scan.py). Only the install path imports
this module, so a CNI call never pays for pyelftools.
"""

from __future__ import annotations

from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.dynamic import DynamicSection, DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

MAGIC = b"\x7fELF"


class ElfError(Exception):
    """A file that starts like an ELF file but cannot be read as one."""


@dataclass(frozen=True)
class Elf:
    machine: str  # e_machine, e.g. "EM_X86_64"
    interpreter: str | None  # PT_INTERP: the loader an executable names, e.g. /lib64/ld-linux-x86-64.so.2
    needed: tuple[str, ...]  # DT_NEEDED sonames, in order
    rpath: tuple[str, ...]  # DT_RPATH entries, as written ($ORIGIN unexpanded)
    runpath: tuple[str, ...]  # DT_RUNPATH entries
    versions: dict[str, frozenset[str]]  # soname -> the symbol versions needed from it (GLIBC_2.34, ...)


def is_elf(path: str) -> bool:
    """Whether the regular file `path` starts with the ELF magic. OSError when it cannot be read."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def read(path: str) -> Elf | None:
    """The loader's view of `path`; None for an ELF file no loader runs (an object file, a core dump).
    ElfError when it is malformed, OSError when it cannot be read."""
    with open(path, "rb") as f:
        try:
            return _read(ELFFile(f))
        except (ELFError, ConstructError, ValueError, EOFError) as error:
            raise ElfError(f"not a readable ELF file: {error}") from None


def _read(elf: ELFFile) -> Elf | None:
    if elf.header.e_type not in ("ET_EXEC", "ET_DYN"):
        return None
    interpreter = None
    dynamic = None
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_INTERP":
            interpreter = segment.get_interp_name()
        elif isinstance(segment, DynamicSegment):
            dynamic = segment
    versions: dict[str, frozenset[str]] = {}
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            dynamic = section  # the section's string table is the one to trust when there are sections
        elif isinstance(section, GNUVerNeedSection):
            for need, entries in section.iter_versions():
                versions[need.name] = frozenset(entry.name for entry in entries)
    needed, rpath, runpath = [], [], []
    for tag in dynamic.iter_tags() if dynamic is not None else ():
        kind = tag.entry.d_tag
        if kind == "DT_NEEDED":
            needed.append(tag.needed)
        elif kind == "DT_RPATH":
            rpath += tag.rpath.split(":")
        elif kind == "DT_RUNPATH":
            runpath += tag.runpath.split(":")
    return Elf(elf["e_machine"], interpreter, tuple(needed), tuple(rpath), tuple(runpath), versions)
