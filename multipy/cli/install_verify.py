"""Running what `multipy install` is about to switch a node to, on the node, before it switches.

A node whose CNI executable cannot start has no pod networking at all, and a runtime that runs in
the image may not run on the node: an older glibc ("version `GLIBC_2.38' not found"), a library the
image has and the node lacks ("libstdc++.so.6: cannot open shared object file"), no interpreter at
the path a --python launcher names. So the new launchers are written next to the old ones under
temporary names (".verify.<name>.<pid>-<random>.tmp"), byte for byte what will be installed, and run
as the node's runtime runs them: chrooted into --host-root (the node's / as this container sees it),
so the node's loader, glibc and paths are used; directly when --host-root is /. Each must pass:
- `multus-cni` (and `multus-shim`) with CNI_COMMAND=VERSION answers a CNI version result;
- `multipy check-plugins` loads every native plugin (the delegate and IPAM entry-point groups);
- with a runtime tree, the node's loader lists every dynamically linked ELF file of the tree
  (`ld.so --list`, what ldd does): a library the interpreter only loads later (a wheel's extension
  module) must find the glibc version it needs too.
Each run is bounded in time and in the output kept. The temporary launchers are removed whatever
happens; once all passed, install.py writes the same bytes at the real names (a rename each, as
always). chroot needs CAP_SYS_CHROOT: without it this fails closed, naming the capability.
The host root needs the node's loader and glibc (/usr, /lib, /lib64). Without the node's /proc
there, the loader cannot find the interpreter's own directory for $ORIGIN in its RPATH (it reads
/proc/self/exe): it is then given LD_ORIGIN_PATH, that directory, which is what /proc tells it on
the node.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import re
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

import click

from multipy import files

from .commands import cli

TIMEOUT = 30.0  # seconds per run: an interpreter's start and every plugin's import, on a slow node
OUTPUT_MAX = 64 * 1024  # bytes of stdout and of stderr kept per run; the rest is read and dropped
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TEMP_PREFIX = ".verify."
LEFTOVER_AGE = 600.0  # seconds: a temporary launcher older than this was left by a killed install
VERSION, PLUGINS = "version", "plugins"  # what a launcher is run for
CHECK_PLUGINS = "check-plugins"  # the hidden `multipy` command the PLUGINS run calls
VERSION_REQUEST = b'{"cniVersion": "1.0.0"}'

_GLIBC_MISSING = re.compile(r"version `(GLIBC_[0-9.]+)' not found(?: \(required by ([^)]+)\))?")
# Bounded names: an unbounded one would backtrack over a long run of output quadratically.
_LIBRARY_MISSING = re.compile(r"([^\s:=>]{1,255}): cannot open shared object file|([^\s:=>]{1,255}) => not found")


class Unverified(Exception):
    """What is to be installed does not run on the node (or cannot be run there): the reason."""


@dataclass(frozen=True)
class Launcher:
    name: str  # its name in the bin dir, e.g. "multus-cni"
    data: bytes
    mode: int
    run: str  # VERSION or PLUGINS


@dataclass(frozen=True)
class Tree:
    """A runtime tree's side of the check: where it is on the node, and what install_scan found in it."""

    path: str  # node path, e.g. /opt/multipy/<digest>
    interpreter: str | None  # tree-relative, its symlinks followed
    loader: str | None
    elf_files: tuple[str, ...]
    library_path: tuple[str, ...]
    glibc: str | None
    glibc_needed_by: str | None


def verify(host_root: str, bin_dir: str, launchers: list[Launcher], python: str, tree: Tree | None = None,
           timeout: float = TIMEOUT) -> None:  # fmt: skip
    """Unverified unless every launcher passes its run on the node and the tree's ELF files load there.
    `bin_dir` and `python` are node paths; `host_root` is where the node's / is seen from here."""
    root = host_root if os.path.realpath(host_root) != "/" else None
    env = {}
    if root is not None:
        _check_chroot(root)
        if not os.path.exists(os.path.join(host_root, "proc/self/exe")):
            # Without /proc the loader cannot tell the executable's directory ($ORIGIN in its DT_RUNPATH):
            # it is told, as /proc/self/exe would on the node. Libraries find their own $ORIGIN from their path.
            real = f"{tree.path}/{tree.interpreter}" if tree is not None and tree.interpreter else python
            env["LD_ORIGIN_PATH"] = posixpath.dirname(real)
    directory = os.path.join(host_root, bin_dir.lstrip("/"))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    for stale in files.stale_temps(directory, tmp_prefix=TEMP_PREFIX, older_than=LEFTOVER_AGE):
        files.unlink_quietly(stale)
    temps: list[str] = []
    try:
        for launcher in launchers:
            temp = files.write_temp(directory, launcher.name, launcher.data, launcher.mode, TEMP_PREFIX, sync=False)
            temps.append(temp)
            os.chmod(temp, launcher.mode)  # the umask may have taken bits off at creation
            node_path = os.path.join(bin_dir, os.path.basename(temp))
            _run_launcher(host_root, root, launcher, node_path, python, tree, env, timeout)
        if tree is not None and tree.loader:
            _run_loader(root, tree, timeout)
    finally:
        for temp in temps:
            files.unlink_quietly(temp)


def _run_launcher(host_root: str, root: str | None, launcher: Launcher, path: str, python: str, tree: Tree | None,
                  env: dict[str, str], timeout: float) -> None:  # fmt: skip
    if launcher.run == VERSION:
        argv, env, stdin, what = [path], {**env, "CNI_COMMAND": "VERSION"}, VERSION_REQUEST, "CNI_COMMAND=VERSION"
    else:
        argv, stdin, what = [path, CHECK_PLUGINS], b"", f"`{launcher.name} {CHECK_PLUGINS}`"
    try:
        code, out, err = _run(root, argv, env, stdin, timeout)
    except FileNotFoundError:
        for needed in ("/bin/sh", python) if launcher.data.startswith(b"#!/bin/sh\n") else (python,):
            if not os.path.lexists(os.path.join(host_root, needed.lstrip("/"))):
                raise Unverified(f"{launcher.name} cannot start on the node: there is no {needed}") from None
        loader = tree.loader if tree is not None and tree.loader else "the loader it names"
        raise Unverified(f"{launcher.name} cannot start on the node: its interpreter {python} is there, but not "
                         f"{loader} (no glibc on the node, or the node's / is not at --host-root)") from None  # fmt: skip
    except OSError as error:
        raise Unverified(f"{launcher.name} cannot start on the node: {error.strerror} (its interpreter: {python})") from None
    if code is None:
        raise Unverified(f"{launcher.name} ({what}) did not finish within {timeout:g} s on the node")
    if code == 0 and (launcher.run != VERSION or _is_version_result(out)):
        return
    if code == 0:
        reason = f"no CNI version result on stdout: {_tail(out)}"
    else:
        reason = _reason(out, err, tree) or f"exit {code}, {_tail(err or out)}"
    raise Unverified(f"{launcher.name} ({what}) failed on the node: {reason}")


def _run_loader(root: str | None, tree: Tree, timeout: float) -> None:
    options = ["--library-path", ":".join(f"{tree.path}/{d}".rstrip("/") for d in tree.library_path)]
    for relative in tree.elf_files:
        argv = [tree.loader, *(options if tree.library_path else ()), "--list", f"{tree.path}/{relative}"]
        try:
            code, out, err = _run(root, argv, {}, b"", timeout)
        except FileNotFoundError:
            raise Unverified(f"the node has no {tree.loader}, the loader the runtime's interpreter needs "
                             f"(a node without glibc, or its / is not at --host-root?)") from None  # fmt: skip
        except OSError as error:
            raise Unverified(f"cannot run the node's loader {tree.loader}: {error.strerror}") from None
        if code is None:
            raise Unverified(f"the node's loader did not list {relative} within {timeout:g} s")
        reason = _reason(out, err, tree)
        if reason or code:
            # `ld.so --list` reports a missing symbol version but still exits 0.
            raise Unverified(f"the runtime tree's {relative} does not load on the node: "
                             f"{reason or f'exit {code}, ' + _tail(err or out)}")  # fmt: skip


def _is_version_result(out: bytes) -> bool:
    try:
        doc = json.loads(out)
    except ValueError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("cniVersion"), str) and isinstance(
        doc.get("supportedVersions"), list)  # fmt: skip


def _reason(out: bytes, err: bytes, tree: Tree | None) -> str | None:
    """The loader's own complaint in a run's output, in words naming what the node lacks."""
    text = (err + b"\n" + out).decode(errors="replace")
    glibc = _GLIBC_MISSING.search(text)
    if glibc:
        floor = ""
        if tree is not None and tree.glibc:
            floor = f"; the runtime tree needs glibc >= {tree.glibc} ({tree.glibc_needed_by})"
        needed_by = f", needed by {glibc.group(2)}" if glibc.group(2) else ""
        return f"the node's glibc is too old: version {glibc.group(1)} not found{needed_by}{floor}"
    library = _LIBRARY_MISSING.search(text)
    if library:
        name = library.group(1) or library.group(2)
        return f"the node has no {name} (error while loading shared libraries: cannot open shared object file)"
    return None


def _tail(data: bytes, lines: int = 5, chars: int = 1000) -> str:
    """The end of a run's output, where an interpreter puts the exception it died of."""
    text = data.decode(errors="replace").strip()
    if not text:
        return "no output"
    return " | ".join(text.splitlines()[-lines:])[-chars:]


def _check_chroot(root: str) -> None:
    """Unverified, naming the capability, when this process may not chroot (tried in a child)."""
    pid = os.fork()
    if pid == 0:  # the child only makes the system call and exits, whatever happens
        try:
            os.chroot(root)
            os._exit(0)
        except OSError as error:
            os._exit(min(error.errno or 255, 255))
        finally:
            os._exit(255)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return
    if code in (errno.EPERM, errno.EACCES):
        raise Unverified(f"cannot chroot into --host-root {root} to run the new executables as the node does: "
                         "the installing container needs the SYS_CHROOT capability (the DaemonSet's install "
                         "container adds it)")  # fmt: skip
    raise Unverified(f"cannot chroot into --host-root {root}: {os.strerror(code) if code != 255 else 'failed'}")


def _enter(root: str) -> None:  # runs in the child, between fork and exec
    os.chroot(root)
    os.chdir("/")


def _run(root: str | None, argv: list[str], env: dict[str, str], stdin: bytes,
         timeout: float) -> tuple[int | None, bytes, bytes]:  # fmt: skip
    """(exit code or None on timeout, stdout, stderr) of `argv` in the node's root; each output kept up to
    OUTPUT_MAX. The child leads a session of its own: on timeout the whole group is killed, before the
    child is reaped, so its id can not have been reused by then."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={"PATH": PATH, **env}, cwd=None if root else "/", start_new_session=True,
                                preexec_fn=(lambda: _enter(root)) if root else None)  # fmt: skip
    except subprocess.SubprocessError as error:  # the chroot itself failed in the child
        raise Unverified(f"cannot chroot into --host-root {root}: {error}") from None
    deadline = time.monotonic() + timeout
    kept = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    try:
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it did not read its stdin: its output says why
        with selectors.DefaultSelector() as selector:
            for stream in kept:
                selector.register(stream, selectors.EVENT_READ)
            while selector.get_map() and (left := deadline - time.monotonic()) > 0:
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif len(kept[key.fileobj]) < OUTPUT_MAX:
                        kept[key.fileobj] += chunk[: OUTPUT_MAX - len(kept[key.fileobj])]
            open_pipes = bool(selector.get_map())
        code: int | None = None
        if not open_pipes:  # else out of time: killed below, with whatever it started and left running
            try:
                code = proc.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.returncode is None:  # not reaped yet, so its process group id is still its own
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        for stream in kept:
            stream.close()
    return code, bytes(kept[proc.stdout]), bytes(kept[proc.stderr])


@cli.command(CHECK_PLUGINS, hidden=True)
def check_plugins() -> None:
    """Load every native plugin (delegates and IPAM); exit 1 naming each that fails.

    Run on the node by `multipy install` through the new `multipy` launcher, before it switches."""
    from multipy.cni.errors import CNIError
    from multipy.plugins.contract import DELEGATE_GROUP, IPAM_GROUP

    registry, failed = cli._registry(), 0
    for group in (DELEGATE_GROUP, IPAM_GROUP):
        for name in registry.names(group):
            try:
                registry.find(group, name)
            except CNIError as error:
                failed += 1
                click.echo(f"multipy: {error.msg}", err=True)
            else:
                click.echo(f"loaded  {group} {name}")
    raise SystemExit(1 if failed else 0)
