"""One pass of `multipy install` (install.py is the command and its options): the Installer.

It puts on the node, in this order, each only when it changed:
1. the Python runtime (--runtime), under its content digest (install_runtime.py);
2. each --file, then the kubeconfig made from the pod's service account (kubeconfig.py);
3. the CNI executables `multus-cni` and `multipy`: launchers running that runtime's interpreter;
   with --thick, then `multus-shim` (multipy/shim.py, compiled, behind a `#!<interpreter> -IS` line), which
   hands requests to `multipy daemon` and falls back to the `multus-cni` next to it;
4. last, the conf: once it is there the runtime uses multipy, so everything it needs must
   already be in place.
Before anything but the runtime tree is written, what would switch the node is checked (unless
--no-verify): the runtime tree must be self-contained (install_scan.py, before it is copied), and the
new executables must run on the node itself, chrooted into --host-root (install_verify.py). When
they do not, nothing is switched: the old executables and conf stay as they were.
Every file is written atomically (install_files.py); nothing is deleted, except old runtime trees
with --prune-runtimes. Paths on the node are given as the node sees them and written under
--host-root (the DaemonSet mounts the node's directories under /host): the launchers and the
kubeconfig name node paths, never the pod's.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass

import click

from multipy.config import auto, confdir, multus
from multipy.config.problems import ConfigError

from . import install_runtime, install_verify, kubeconfig
from .commands import cli
from .install_files import launcher, place, shim_launcher, unchanged

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_WRITE = 3
EXIT_NOT_SELF_CONTAINED = 4  # the --runtime tree has links or libraries outside itself; nothing written
EXIT_UNVERIFIED = 5  # the new executables do not run on this node; nothing switched

EXECUTABLES = (("multus-cni", "multipy.entry"), ("multipy", "multipy.cli.main"))
THIN = "multus-cni"  # the conf's "type" in thin mode
SHIM = "multus-shim"  # thick mode's executable, and the conf's "type" that makes the runtime run it
EXECUTABLE_MODE, PRIVATE_MODE = 0o755, 0o600


class Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Settings:
    source: str | None  # None with --auto
    conf_dir: str
    bin_dir: str
    name: str
    copies: tuple[tuple[str, str], ...]
    python: str | None
    host_root: str
    runtime: str | None
    runtime_dir: str
    prune: bool
    kubeconfig: str | None
    serviceaccount_dir: str
    api_server: str | None
    thick: bool = False
    auto: bool = False  # the conf is made from the node's primary conf (auto.py), not read from `source`
    auto_options: tuple[tuple[str, object], ...] = ()  # top-level keys of the made conf
    primary: str | None = None  # the primary's file name in conf_dir; None: the first in libcni's order
    verify: bool = True  # run the new executables on the node before switching (--no-verify: False)


class Installer:
    """One node's install; `run` is one pass, and may be called again (--every)."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        # The runtime tree is in the image, which does not change under a running container:
        # hashed once per process, not once per pass.
        self._runtime: tuple[str, str] | None = None  # (digest, interpreter inside the tree)
        self._scan = None  # install_scan.Scan of the runtime tree, once it passed

    def node(self, path: str) -> str:
        """Where the node's `path` is seen from here."""
        return os.path.join(self.s.host_root, path.lstrip("/"))

    def run(self, report) -> None:
        """One pass; `report(entry)` for each thing done. Failure when something stops it."""
        s = self.s
        raw, label, primary = self._conf()
        problems = _check_conf(label, raw, made=s.auto) or _check_mode(label, raw, s.thick)
        if problems:
            for problem in problems:
                click.echo(problem, err=True)
            raise Failure(EXIT_INVALID, f"{label} is invalid ({len(problems)} problem(s)); nothing written")
        plan = [(dest, _read(src, "--file"), PRIVATE_MODE) for src, dest in s.copies]
        if s.kubeconfig:
            try:
                account = kubeconfig.read_service_account(s.serviceaccount_dir)
            except kubeconfig.KubeconfigError as error:
                raise Failure(EXIT_USAGE, str(error)) from None
            ca = kubeconfig.ca_path(s.kubeconfig)
            plan.append((ca, account.ca, PRIVATE_MODE))
            plan.append((s.kubeconfig, kubeconfig.render(s.api_server, ca, account), PRIVATE_MODE))
        python = self._install_runtime(report) if s.runtime else s.python
        plan += [(posixpath.join(s.bin_dir, exe), launcher(exe, module, python), EXECUTABLE_MODE)
                 for exe, module in EXECUTABLES]  # fmt: skip
        if s.thick:  # after multus-cni: the shim's fallback must find it there from the first call on
            plan.append((posixpath.join(s.bin_dir, SHIM), shim_launcher(python), EXECUTABLE_MODE))
        plan.append((posixpath.join(s.conf_dir, s.name), raw, PRIVATE_MODE))
        self._verify(plan, python)
        for path, data, mode in plan:
            try:
                action = place(self.node(path), data, mode)
            except OSError as error:
                raise Failure(EXIT_WRITE, f"cannot write {path}: {error.strerror}") from None
            entry = {"path": path, "action": action, "mode": f"{mode:04o}"}
            is_conf = path == posixpath.join(s.conf_dir, s.name)
            report({**entry, "primary": primary} if primary and is_conf else entry)
        if s.prune:
            self._prune(report)

    def _conf(self) -> tuple[bytes, str, str | None]:
        """The conf's bytes, its name in messages and, with --auto, the primary conf it was made from.
        Made again on every pass: a changed primary gives a changed conf, which place() then writes."""
        s = self.s
        if not s.auto:
            return _read(s.source, "--conf"), s.source, None
        options = dict(s.auto_options)
        if s.kubeconfig:
            options.setdefault("kubeconfig", s.kubeconfig)  # the one this install writes, as the node sees it
        try:
            made = auto.from_conf_dir(self.node(s.conf_dir), s.name, SHIM if s.thick else THIN, options, s.primary,
                                      shown_dir=s.conf_dir)  # fmt: skip
        except ConfigError as error:
            for problem in error.problems:
                click.echo(f"{error.source}: {problem}", err=True)
            code = EXIT_USAGE if isinstance(error, confdir.Unreadable) else EXIT_INVALID
            raise Failure(code, f"--auto: no conf made from {error.source}; nothing written") from None
        return made.data, f"{posixpath.join(s.conf_dir, s.name)} (made from {made.primary})", made.primary

    def _install_runtime(self, report) -> str:
        s = self.s
        try:
            if self._runtime is None:
                python = install_runtime.interpreter(s.runtime, s.python)
                self._scan = self._scan_tree(python)  # before a byte is copied
                self._runtime = (install_runtime.digest(s.runtime), python)
            digest, python = self._runtime
            path = posixpath.join(s.runtime_dir, digest)
            action = install_runtime.install(s.runtime, self.node(s.runtime_dir), digest)
        except install_runtime.SourceError as error:
            raise Failure(EXIT_USAGE, str(error)) from None
        except OSError as error:
            raise Failure(EXIT_WRITE, f"cannot write {s.runtime_dir}: {error.strerror}") from None
        report({"path": path, "action": action, "kind": "runtime", "digest": digest, "glibc": self._scan.glibc})
        return posixpath.join(path, python)

    def _scan_tree(self, python: str):
        """The tree's scan; Failure naming every link and library outside it."""
        from . import install_scan  # reads ELF files with pyelftools, which only installs with --runtime need

        s = self.s
        scan = install_scan.scan(s.runtime, python)
        if scan.problems:
            for problem in scan.problems:
                click.echo(f"--runtime {s.runtime}: {problem}", err=True)
            raise Failure(EXIT_NOT_SELF_CONTAINED, f"--runtime {s.runtime} is not self-contained "
                          f"({len(scan.problems)} problem(s)): a node without those would not run it; nothing written")  # fmt: skip
        return scan

    def _verify(self, plan: list[tuple[str, bytes, int]], python: str) -> None:
        """Runs the new executables on the node (install_verify.py) when this pass would switch any of them
        or the conf (the last of `plan`); Failure with the reason when they do not run there."""
        s = self.s
        names = {posixpath.join(s.bin_dir, exe): exe for exe in (*(exe for exe, _ in EXECUTABLES), SHIM)}
        switching = [(path, data, mode) for path, data, mode in plan if path in names or path == plan[-1][0]]
        if not s.verify or all(unchanged(self.node(path), data, mode) for path, data, mode in switching):
            return  # what the node runs stays as it is
        launchers = [install_verify.Launcher(names[path], data, mode, install_verify.PLUGINS if names[path] == "multipy"
                                             else install_verify.VERSION) for path, data, mode in plan if path in names]  # fmt: skip
        tree = None
        if self._scan is not None:
            scan = self._scan
            tree = install_verify.Tree(posixpath.join(s.runtime_dir, self._runtime[0]), scan.interpreter, scan.loader,
                                       scan.elf_files, scan.library_path, scan.glibc, scan.glibc_needed_by)  # fmt: skip
        try:
            install_verify.verify(s.host_root, s.bin_dir, launchers, python, tree)
        except install_verify.Unverified as error:
            raise Failure(EXIT_UNVERIFIED, f"{error}; nothing switched") from None
        except OSError as error:
            raise Failure(EXIT_WRITE, f"cannot write {s.bin_dir}: {error.strerror}") from None

    def _prune(self, report) -> None:
        s = self.s
        try:
            keep = install_runtime.referenced(self.node(s.bin_dir), s.runtime_dir)
            if self._runtime:
                keep.add(self._runtime[0])
            removed = install_runtime.prune(self.node(s.runtime_dir), keep)
        except OSError as error:
            raise Failure(EXIT_WRITE, f"cannot prune {s.runtime_dir}: {error.strerror} ({error.filename})") from None
        for digest in removed:
            report({"path": posixpath.join(s.runtime_dir, digest), "action": "removed", "kind": "runtime",
                    "digest": digest})  # fmt: skip


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise Failure(EXIT_USAGE, f"{what} {path}: cannot read: {error.strerror}") from None


def _check_mode(path: str, raw: bytes, thick: bool) -> list[str]:
    """The conf's "type" is the executable the runtime runs: it must be the one this install puts there."""
    kind = json.loads(raw).get("type")
    if thick and kind != SHIM:
        return [f'{path}: $.type: {kind!r}: with --thick the runtime must run the shim: "type": "{SHIM}"']
    if not thick and kind == SHIM:
        return [f'{path}: $.type: "{SHIM}" is thick mode: install with --thick (the runtime would find no {SHIM})']
    return []


def _check_conf(path: str, raw: bytes, made: bool = False) -> list[str]:
    try:
        doc = json.loads(raw)
    except ValueError as error:
        return [f"{path}: $: not valid JSON: {error}"]
    # A made conf gets `multipy validate`'s checks, the delegates' own schemas included: nobody read it before.
    schema_for = cli._registry().schema_for if made else None
    return [f"{path}: {problem}" for problem in multus.problems(doc, schema_for=schema_for)]
