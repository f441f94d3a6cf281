"""Tiny ELF programs and roots for the tests of `multipy install`'s checks (install_scan.py,
install_verify.py): built here with gcc in milliseconds, instead of a real Python tree.

- `compile_c`: an executable or a shared library from C source, with the DT_NEEDED, DT_RPATH or
  DT_RUNPATH a test wants;
- `FAKE_PYTHON`: a stand-in for a runtime tree's interpreter that answers what multipy's launchers
  ask (CNI_COMMAND=VERSION, `multipy check-plugins`), with variants that need libm, a library of the
  tree, or fail the plugin check;
- `newer_glibc`: a copy of a stripped program whose GLIBC_2.34 need reads GLIBC_2.99, a version no
  glibc has: the loader then fails as on a node with an older glibc than the program needs;
- `glibc_root`: a node's / holding just the loader and the glibc libraries a program needs (as ldd
  lists them), minus those a test leaves out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from multipy.cli.install_scan import GLIBC

FAKE_PYTHON = r"""
/* A runtime tree's "python3" for the install tests. The launchers run it as
   <this> -I <launcher> [args...]: argv[3] is the launcher's first argument. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef NEEDS_LIBM
#include <math.h>
#endif
#ifdef NEEDS_TREE_LIB
int tree_lib(void);
#endif

int main(int argc, char **argv) {
#ifdef NEEDS_LIBM
    volatile double x = -1.0;
    if (cbrt(x) > 0) return 3;
#endif
#ifdef NEEDS_TREE_LIB
    if (tree_lib() != 42) return 3;
#endif
    const char *command = getenv("CNI_COMMAND");
    if (command && strcmp(command, "VERSION") == 0) {
#ifdef HANG
        sleep(600);
#endif
        puts("{\"cniVersion\": \"1.0.0\", \"supportedVersions\": [\"0.4.0\", \"1.0.0\", \"1.1.0\"]}");
        return 0;
    }
    if (argc > 3 && strcmp(argv[3], "check-plugins") == 0) {
#ifdef BROKEN_PLUGIN
        fputs("multipy: native plugin 'bridge' (delegates.bridge:Bridge) failed to load: "
              "ModuleNotFoundError: No module named 'delegates'\n", stderr);
        return 1;
#endif
        puts("loaded  multipy.delegates bridge");
        return 0;
    }
    if (argc > 3 && strcmp(argv[3], "where") == 0) {  /* the file that runs, as the caller sees it */
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n < 0) return 4;
        exe[n] = 0;
        puts(exe);
        return 0;
    }
    fputs("fake python: nothing asked\n", stderr);
    return 2;
}
"""

TREE_LIB = "int tree_lib(void) { return 42; }\n"
USES_LIBM = "#include <math.h>\ndouble uses_libm(double x) { return cbrt(x); }\n"


def compile_c(source: str, out: Path, *, shared: bool = False, soname: str | None = None, defines=(),
              libs=(), rpath: str | None = None, runpath: str | None = None, strip: bool = False) -> Path:  # fmt: skip
    """`out` built from the C `source`. `libs`: paths of shared libraries to link (their sonames become
    DT_NEEDED) or -l flags; `rpath`/`runpath`: the DT_RPATH or DT_RUNPATH to write ($ORIGIN as is)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is missing (make deps installs gcc and libc6-dev)")
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.parent / f".{out.name}.c"
    src.write_text(source)
    argv = [gcc, "-O1", "-o", str(out), str(src), *(f"-D{d}" for d in defines), "-Wl,--no-as-needed"]
    if shared:
        argv += ["-shared", "-fPIC"] + ([f"-Wl,-soname,{soname}"] if soname else [])
    if strip:
        argv.append("-s")
    for lib in libs:
        argv += [lib] if str(lib).startswith("-") else [f"-L{Path(lib).parent}", f"-l:{Path(lib).name}"]
    if rpath is not None:
        argv += ["-Wl,--disable-new-dtags", f"-Wl,-rpath,{rpath}"]
    if runpath is not None:
        argv += ["-Wl,--enable-new-dtags", f"-Wl,-rpath,{runpath}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    src.unlink()
    if done.returncode:
        raise RuntimeError(f"gcc failed: {done.stderr}")
    return out


def newer_glibc(program: Path, out: Path) -> Path:
    """A copy of the stripped `program` that needs GLIBC_2.99 instead of GLIBC_2.34 (same length, so the
    ELF stays valid; the loader compares the names and finds no such version in any glibc)."""
    data = program.read_bytes()
    if data.count(b"\0GLIBC_2.34\0") != 1:
        raise RuntimeError(f"{program}: not exactly one GLIBC_2.34 string (build it with strip=True)")
    out.write_bytes(data.replace(b"\0GLIBC_2.34\0", b"\0GLIBC_2.99\0"))
    out.chmod(0o755)
    return out


def glibc_root(root: Path, program: Path, leave_out=()) -> Path:
    """`root` holding the loader and the glibc libraries `program` needs, at the paths ldd gives, as files
    (the host's symlinks resolved); sonames in `leave_out` are not copied, nor any library not glibc's."""
    done = subprocess.run(["ldd", str(program)], capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"ldd {program}: {done.stderr}")
    for line in done.stdout.splitlines():
        match = re.match(r"\s*(\S+)(?: => (/\S+))? \(0x", line)
        soname = os.path.basename(match.group(1)) if match else None
        if soname not in GLIBC or soname in leave_out:
            continue
        path = match.group(2) or match.group(1)
        if not path.startswith("/"):
            continue  # linux-vdso.so.1: the kernel's
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.path.realpath(path), target)
        target.chmod(0o755)
    return root
