"""The image's recipe: builds its root filesystem in --out, run by Debian's python3.11 in a Debian
bookworm build root. `make image` (conf/image/build-image.sh) and conf/image/Containerfile both run
it, so the image tested here is the image that ships.

The root filesystem holds:
- /opt/multipy, the runtime tree that `multipy install --runtime /opt/multipy` copies to every node
  (as /opt/multipy/<digest>/) and whose bin/python3 the node's CNI executables run. It must run from
  any directory on any node that has glibc >= its GLIBC_FLOOR and nothing else: Debian's
  interpreter and standard library, multipy and its dependencies from wheels, and every shared
  library any of that needs but glibc, by $ORIGIN-relative RPATH (elf.py);
- glibc (the libraries the tree loads, and its NSS modules) and /etc/passwd, group and nsswitch.conf:
  all the container itself needs to run `multipy install` and `multipy daemon` (but for programs its
  delegates may execute, such as iptables for ipMasq: there is no other executable in the image);
- /usr/local/bin/multipy, the image's command (on the image's PATH).

Debian's site.py finds the tree's packages by itself: it adds <prefix>/lib/python3/dist-packages,
and the interpreter computes <prefix> from its own location (the directory above bin/ that holds
lib/python3.11/os.py), so nothing in the tree names the path it was built at.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import elf

PREFIX = "/opt/multipy"
VERSION_DIR = f"python{sys.version_info[0]}.{sys.version_info[1]}"
SITE = "lib/python3/dist-packages"  # where Debian's site.py looks under the prefix
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")

# Top-level names of the standard library left out of the tree, and why.
STDLIB_EXCLUDED = {
    "test": "CPython's own test suite",
    "idlelib": "the IDLE editor",
    "tkinter": "Tk GUI",
    "turtle.py": "Tk GUI",
    "turtledemo": "Tk GUI",
    "ensurepip": "bootstraps pip, which the tree does not carry",
    "venv": "creates environments with ensurepip",
    "lib2to3": "Python 2 source converter",
    "distutils": "build tooling (Debian's python3-distutils, pulled in by pip in the build root)",
    "pydoc_data": "help() topics",
    "dbm": "its extensions are left out (libdb, libgdbm)",
    "curses": "its extension is left out (libncursesw)",
    "crypt.py": "its extension is left out (libcrypt)",
    "sitecustomize.py": "Debian's absolute symlink to /etc/python3.11/sitecustomize.py: the node's file, not the tree's",
    "EXTERNALLY-MANAGED": "Debian's pip policy for /usr",
    "__pycache__": "Debian's bytecode of the whole stdlib; the tree's is compiled below",
}
# Extension modules (lib-dynload) left out: each would bring a library into the tree that no code
# path of multipy uses (readline, ncurses, Berkeley DB, NIS with libtirpc and Kerberos, libcrypt), or
# is CPython's test support. Not _sqlite3: pyroute2's package __init__ imports its NDB, and so sqlite3.
EXTENSIONS_EXCLUDED = ("_curses", "_curses_panel", "readline", "_dbm", "_gdbm", "nis", "_crypt",
                       "ossaudiodev", "_ctypes_test", "_testbuffer", "_testcapi", "_testclinic",
                       "_testimportmultiple", "_testinternalcapi", "_testmultiphase", "_xxsubinterpreters",
                       "_xxtestfuzz", "xxlimited", "xxlimited_35")  # fmt: skip
# Parts of installed packages that multipy never imports.
PRUNED = {
    "kubernetes/aio": "kubernetes' asyncio client (67 MB); multipy's client is the synchronous one",
}
# And the test suites that some packages ship inside themselves (never our own: multipy, delegates).
TEST_DIRS = ("tests", "test", "benchmarks")
OURS = ("multipy", "delegates")
# Packages shipped as bytecode only (a .pyc where each .py was): kubernetes' client is generated
# OpenAPI code, 57 MB of .py and .pyc, whose source lines say little in a traceback (which still
# names file and line of the pinned release). Saves 1.7 MB of the compressed image.
SOURCELESS = ("kubernetes",)


class BuildError(Exception):
    pass


def run(*argv: str, text: bool = True, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=text, **kwargs)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


def copy_interpreter(tree: str) -> None:
    binary = os.path.realpath(sys.executable)  # /usr/bin/python3.11
    os.makedirs(os.path.join(tree, "bin"))
    shutil.copy2(binary, os.path.join(tree, "bin", os.path.basename(binary)))
    os.symlink(os.path.basename(binary), os.path.join(tree, "bin", "python3"))  # relative, inside the tree


def copy_stdlib(tree: str) -> None:
    stdlib = sysconfig.get_paths()["stdlib"]  # /usr/lib/python3.11, lib-dynload inside it

    def ignore(directory: str, names: list[str]) -> set[str]:
        if os.path.realpath(directory) == os.path.realpath(stdlib):
            return {n for n in names if n in STDLIB_EXCLUDED}
        left = {n for n in names if n == "__pycache__"}
        if os.path.basename(directory) == "lib-dynload":
            left |= {n for n in names if n.split(".")[0] in EXTENSIONS_EXCLUDED}
        return left

    shutil.copytree(stdlib, os.path.join(tree, "lib", VERSION_DIR), symlinks=True, ignore=ignore)


def install_wheels(tree: str, wheels: str, requirements: str) -> None:
    """multipy's wheel and the pinned requirements, exactly (--no-deps), from local files only."""
    (own,) = glob.glob(os.path.join(wheels, "multipy-*.whl"))
    site = os.path.join(tree, SITE)
    run(sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "install", "--no-index",
        "--find-links", wheels, "--no-deps", "--no-compile", "--root-user-action=ignore", "--target", site,
        "-r", requirements, own)  # fmt: skip
    # Console scripts with a #! line naming the build root's interpreter; the image's own is written below.
    shutil.rmtree(os.path.join(site, "bin"), ignore_errors=True)


def _is_test(name: str) -> bool:
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def prune(tree: str) -> None:
    site = os.path.join(tree, SITE)
    for relative in PRUNED:
        path = os.path.join(site, relative)
        if not os.path.isdir(path):
            raise BuildError(f"{relative}: not in the installed packages (update PRUNED)")
        shutil.rmtree(path)
    for top in os.listdir(site):
        if top in OURS or not os.path.isdir(os.path.join(site, top)):
            continue
        for directory, dirs, files in os.walk(os.path.join(site, top)):
            for name in [d for d in dirs if d in TEST_DIRS]:
                dirs.remove(name)
                shutil.rmtree(os.path.join(directory, name))
            for name in filter(_is_test, files):
                os.unlink(os.path.join(directory, name))
    for directory, dirs, _ in os.walk(tree):
        if "__pycache__" in dirs:
            dirs.remove("__pycache__")
            shutil.rmtree(os.path.join(directory, "__pycache__"))


def compile_bytecode(tree: str) -> None:
    """Bytecode for every module: a CNI call never compiles, and never writes into the node's tree.
    unchecked-hash: the tree never changes once built (its digest names it on the node), so the
    interpreter never stats a source to validate its .pyc, wherever the tree is copied."""
    python = os.path.join(tree, "bin", "python3")
    site = os.path.join(tree, SITE)
    sourceless = [os.path.join(site, name) for name in SOURCELESS]
    common = ("-I", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash")
    run(python, *common, "-x", "|".join(f"^{re.escape(p)}/" for p in sourceless), os.path.join(tree, "lib"))
    run(python, *common, "-b", *sourceless)  # -b: the .pyc beside its .py, where it loads without it
    for top in sourceless:
        for directory, _, files in os.walk(top):
            for name in files:
                if name.endswith(".py"):
                    os.unlink(os.path.join(directory, name))


def distributions(site: str) -> dict[str, set[str]]:
    """{distribution: the top-level names its files install}, from each .dist-info/RECORD."""
    found = {}
    for record in glob.glob(os.path.join(site, "*.dist-info", "RECORD")):
        name = os.path.basename(os.path.dirname(record)).rsplit("-", 1)[0]
        tops = set()
        with open(record) as f:
            for line in f:
                first = line.split(",", 1)[0].split("/", 1)[0]
                if first and not first.endswith(".dist-info") and first not in ("..", "bin", "__pycache__"):
                    tops.add(first.removesuffix(".py").split(".")[0])
        found[name] = tops
    return found


def check(tree: str, work: str) -> dict:
    """The tree copied elsewhere, as a node gets it: `multipy install`'s own check of a runtime tree finds
    no link or library outside it (install_scan: the verdict a node's install will reach, and the glibc
    floor it reports), everything multipy imports imports, a CNI VERSION through a launcher answers.
    The probe's report, with the scan's floor and the file that needs it."""
    elsewhere = os.path.join(work, "elsewhere")
    shutil.copytree(tree, elsewhere, symlinks=True)
    python = os.path.join(elsewhere, "bin", "python3")
    scan = ("import json, sys; from multipy.cli import install_scan; s = install_scan.scan(sys.argv[1], 'bin/python3'); "
            "print(json.dumps({'problems': s.problems, 'glibc': s.glibc, 'needed_by': s.glibc_needed_by}))")  # fmt: skip
    found = json.loads(run(python, "-I", "-B", "-c", scan, elsewhere, env={}).stdout)
    if found["problems"]:
        raise BuildError("the tree is not self-contained:\n  " + "\n  ".join(found["problems"]))
    report = json.loads(run(python, "-I", "-B", PROBE, env={}).stdout)
    if report["failures"]:
        raise BuildError(
            "imports fail in the tree:\n  " + "\n  ".join(f"{k}: {v}" for k, v in report["failures"].items())
        )
    launcher = os.path.join(work, "multus-cni")
    code = ("import sys; from multipy.cli.install_files import launcher; "
            "sys.stdout.buffer.write(launcher('multus-cni', 'multipy.entry', sys.argv[1]))")  # fmt: skip
    with open(launcher, "wb") as f:
        f.write(run(python, "-I", "-B", "-c", code, python, text=False).stdout)
    os.chmod(launcher, 0o755)
    answer = json.loads(run(launcher, env={"CNI_COMMAND": "VERSION"}, input="").stdout)
    if "supportedVersions" not in answer:
        raise BuildError(f"CNI VERSION through the tree's launcher: {answer}")
    return {**report, "glibc": found["glibc"], "glibc_needed_by": found["needed_by"]}


def check_distributions(tree: str, report: dict) -> None:
    unused = {name: tops for name, tops in distributions(os.path.join(tree, SITE)).items()
              if name != "multipy" and not tops & set(report["imported"])}  # fmt: skip
    if unused:
        raise BuildError(f"installed but never imported by multipy: {sorted(unused)}; drop them from requirements.txt")


def copy_system_path(path: str, rootfs: str) -> None:
    """`path` of the build root into `rootfs` as the build root has it: every symlink met on the way
    (/lib -> usr/lib, ...) recreated as a symlink, and the file at the end copied."""
    current = "/"
    parts = path.strip("/").split("/")
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        target = rootfs + current
        if os.path.islink(current):
            link = os.readlink(current)
            if not os.path.lexists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.symlink(link, target)
            resolved = os.path.normpath(os.path.join(os.path.dirname(current), link))
            copy_system_path(os.path.join(resolved, *parts[i + 1 :]), rootfs)
            return
    if not os.path.lexists(rootfs + current):
        os.makedirs(os.path.dirname(rootfs + current), exist_ok=True)
        shutil.copy2(current, rootfs + current)


def glibc_base(rootfs: str, tree: str, names: set[str]) -> None:
    interpreter = os.path.join(tree, "bin", os.readlink(os.path.join(tree, "bin", "python3")))
    loader = run("readelf", "-lW", interpreter).stdout.split("program interpreter: ", 1)[1].split("]")[0]
    for path in sorted({loader} | {elf.system_library(name) for name in names}):
        copy_system_path(path, rootfs)
    etc = os.path.join(rootfs, "etc")
    os.makedirs(etc, exist_ok=True)
    for name, text in (("passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
                       ("group", "root:x:0:\nnogroup:x:65534:\n"),
                       ("nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")):  # fmt: skip
        with open(os.path.join(etc, name), "w") as f:
            f.write(text)
    for directory, mode in (("tmp", 0o1777), ("root", 0o700)):
        os.makedirs(os.path.join(rootfs, directory), exist_ok=True)
        os.chmod(os.path.join(rootfs, directory), mode)


def entry_point(rootfs: str, tree: str) -> None:
    """/usr/local/bin/multipy: the launcher `multipy install` writes on nodes, on the image's tree."""
    python = os.path.join(PREFIX, "bin", "python3")
    code = ("import sys; from multipy.cli.install_files import launcher; "
            "sys.stdout.buffer.write(launcher('multipy', 'multipy.cli.main', sys.argv[1]))")  # fmt: skip
    data = run(os.path.join(tree, "bin", "python3"), "-I", "-B", "-c", code, python, text=False).stdout
    path = os.path.join(rootfs, "usr", "local", "bin", "multipy")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o755)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", required=True, help="multipy's wheel and those of requirements.txt")
    parser.add_argument("--requirements", required=True, help="conf/image/requirements.txt")
    parser.add_argument("--out", required=True, help="an empty or missing directory: the image's root filesystem")
    args = parser.parse_args()
    rootfs = os.path.abspath(args.out)
    if os.path.exists(rootfs) and os.listdir(rootfs):
        raise BuildError(f"{rootfs} is not empty")
    tree = rootfs + PREFIX
    copy_interpreter(tree)
    copy_stdlib(tree)
    install_wheels(tree, args.wheels, args.requirements)
    prune(tree)
    stripped = elf.strip(tree)
    glibc = elf.glibc_names()
    copied = elf.bundle(tree, glibc)
    compile_bytecode(tree)
    with tempfile.TemporaryDirectory(prefix="multipy-tree-check-") as work:
        report = check(tree, work)
    floor_text, needer = report["glibc"], report["glibc_needed_by"]
    with open(os.path.join(tree, "GLIBC_FLOOR"), "w") as f:
        f.write(f"{floor_text}\n")  # the lowest glibc a node needs, for people; `multipy install` computes its own
    check_distributions(tree, report)
    glibc_base(rootfs, tree, elf.glibc_closure(tree, glibc))
    entry_point(rootfs, tree)
    print(f"libraries bundled: {', '.join(f'{k} ({v})' for k, v in sorted(copied.items()))}")
    print(f"stripped: {', '.join(stripped) or 'nothing'}")
    print(f"stdlib extensions imported by multipy: {', '.join(report['extensions'])}")
    print(
        f"checked: {report['modules']} modules and {report['entry_points']} entry points import from a relocated copy"
    )
    print(f"glibc floor: {floor_text} (first needed by {needer})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BuildError, elf.ElfError) as error:
        print(f"build_runtime: {error}", file=sys.stderr)
        sys.exit(1)
