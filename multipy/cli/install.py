"""`multipy install`: what a DaemonSet runs on each node (its init container once, its main
container with --every).

It puts on the node, in this order, each only when it changed:
1. the Python runtime (--runtime), under its content digest (install_runtime.py);
2. each --file, then the kubeconfig made from the pod's service account (kubeconfig.py);
3. the CNI executables `multus-cni` and `multipy`: launchers running that runtime's interpreter;
   with --thick, then `multus-shim` (multipy/shim.py behind a `#!<interpreter> -IS` line), which
   hands requests to `multipy daemon` and falls back to the `multus-cni` next to it;
4. last, the conf: once it is there the runtime uses multipy, so everything it needs must
   already be in place.
Every file is written atomically (install_files.py); nothing is deleted, except old runtime trees
with --prune-runtimes. Paths on the node are given as the node sees them and written under
--host-root (the DaemonSet mounts the node's directories under /host): the launchers and the
kubeconfig name node paths, never the pod's.
"""

from __future__ import annotations

import json
import os
import posixpath
import signal
import sys
from dataclasses import dataclass

import click

from multipy.config import multus

from . import install_runtime, kubeconfig
from .commands import cli
from .install_files import launcher, place, shim_launcher
from .output import output_option

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_WRITE = 3

EXECUTABLES = (("multus-cni", "multipy.entry"), ("multipy", "multipy.cli.main"))
SHIM = "multus-shim"  # thick mode's executable, and the conf's "type" that makes the runtime run it
EXECUTABLE_MODE, PRIVATE_MODE = 0o755, 0o600
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


class Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Settings:
    source: str
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


class Installer:
    """One node's install; `run` is one pass, and may be called again (--every)."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        # The runtime tree is in the image, which does not change under a running container:
        # hashed once per process, not once per pass.
        self._runtime: tuple[str, str] | None = None  # (digest, interpreter inside the tree)

    def node(self, path: str) -> str:
        """Where the node's `path` is seen from here."""
        return os.path.join(self.s.host_root, path.lstrip("/"))

    def run(self, report) -> None:
        """One pass; `report(entry)` for each thing done. Failure when something stops it."""
        s = self.s
        raw = _read(s.source, "--conf")
        problems = _check_conf(s.source, raw) or _check_mode(s.source, raw, s.thick)
        if problems:
            for problem in problems:
                click.echo(problem, err=True)
            raise Failure(EXIT_INVALID, f"{s.source} is invalid ({len(problems)} problem(s)); nothing written")
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
        for path, data, mode in plan:
            try:
                action = place(self.node(path), data, mode)
            except OSError as error:
                raise Failure(EXIT_WRITE, f"cannot write {path}: {error.strerror}") from None
            report({"path": path, "action": action, "mode": f"{mode:04o}"})
        if s.prune:
            self._prune(report)

    def _install_runtime(self, report) -> str:
        s = self.s
        try:
            if self._runtime is None:
                self._runtime = (install_runtime.digest(s.runtime), install_runtime.interpreter(s.runtime, s.python))
            digest, python = self._runtime
            path = posixpath.join(s.runtime_dir, digest)
            action = install_runtime.install(s.runtime, self.node(s.runtime_dir), digest)
        except install_runtime.SourceError as error:
            raise Failure(EXIT_USAGE, str(error)) from None
        except OSError as error:
            raise Failure(EXIT_WRITE, f"cannot write {s.runtime_dir}: {error.strerror}") from None
        report({"path": path, "action": action, "kind": "runtime", "digest": digest})
        return posixpath.join(path, python)

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


def _check_conf(path: str, raw: bytes) -> list[str]:
    try:
        doc = json.loads(raw)
    except ValueError as error:
        return [f"{path}: $: not valid JSON: {error}"]
    return [f"{path}: {problem}" for problem in multus.problems(doc)]


# ---- options --------------------------------------------------------------------------------


def _node_path(ctx, param, value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith("/"):
        raise click.BadParameter(f"{value!r} is not an absolute path (a path as the node sees it)")
    return posixpath.normpath(value)


def _node_file(ctx, param, value: str | None) -> str | None:
    if value is not None and value.endswith("/"):
        raise click.BadParameter(f"{value!r} is a directory, not a file path")
    return _node_path(ctx, param, value)


def _copies(ctx, param, values) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        source, sep, dest = value.partition(":")
        if not (sep and source and dest) or dest.endswith("/"):
            raise click.BadParameter(f"{value!r} is not SOURCE:DEST (two file paths)")
        if not dest.startswith("/"):
            raise click.BadParameter(f"{value!r}: DEST {dest!r} is not an absolute path (a path as the node sees it)")
        pairs.append((source, posixpath.normpath(dest)))
    return tuple(pairs)


def _conf_name(ctx, param, value: str) -> str:
    if "/" in value or value.startswith(".") or not value.endswith((".conf", ".json")):
        raise click.BadParameter(
            f"{value!r} is not a conf file name (NAME.conf or NAME.json, no '/', no leading "
            "dot: the runtime only reads those)"
        )
    return value


def _settings(**options) -> Settings:
    """Settings from the options, checked across options (exit 2 with the option named)."""
    ctx = click.get_current_context()
    host_root, runtime, python = options["host_root"], options["runtime"], options["python"]
    if runtime is None:
        if python is None:
            if os.path.realpath(host_root) != "/":
                raise click.BadParameter(
                    f"this interpreter ({sys.executable}) is this machine's, not the node's: with "
                    f"--host-root {host_root}, give --runtime (or the node's interpreter with --python)",
                    ctx,
                    param_hint="'--python'",
                )
            python = sys.executable
        elif not posixpath.isabs(python):
            raise click.BadParameter(f"{python!r} is not an absolute path", ctx, param_hint="'--python'")
    kube = options["kubeconfig"]
    api = None
    if kube:
        if posixpath.dirname(kube) == options["conf_dir"] and kube.endswith((".conf", ".conflist", ".json")):
            raise click.BadParameter(
                f"{kube!r}: the runtime would read it as a network conf; use another name or a "
                "subdirectory (e.g. multipy.d/multipy.kubeconfig)",
                ctx,
                param_hint="'--kubeconfig'",
            )
        try:
            api = kubeconfig.api_server(options["api_server"])
        except kubeconfig.KubeconfigError as error:
            raise click.UsageError(str(error), ctx) from None
    elif options["api_server"] is not None:
        raise click.BadParameter("only used with --kubeconfig", ctx, param_hint="'--api-server'")
    return Settings(options["source"], options["conf_dir"], options["bin_dir"], options["name"],
                    options["copies"], python, host_root, runtime, options["runtime_dir"],
                    options["prune_runtimes"], kube, options["serviceaccount_dir"], api,
                    options["thick"])  # fmt: skip


@cli.command()
@click.option(
    "--conf",
    "source",
    required=True,
    type=click.Path(dir_okay=False),
    help="The multus conf to install; it must pass `multipy validate`.",
)
@click.option(
    "--conf-dir",
    required=True,
    callback=_node_path,
    metavar="NODEDIR",
    help="Where the runtime reads CNI confs (the node's /etc/cni/net.d).",
)
@click.option(
    "--bin-dir",
    required=True,
    callback=_node_path,
    metavar="NODEDIR",
    help="Where the runtime finds CNI executables (the node's /opt/cni/bin).",
)
@click.option(
    "--name",
    default="10-multus.conf",
    show_default=True,
    callback=_conf_name,
    help="The conf's file name in --conf-dir.",
)
@click.option(
    "--file",
    "copies",
    multiple=True,
    callback=_copies,
    metavar="SOURCE:DEST",
    help="Also copy SOURCE to the node's DEST (mode 0600), e.g. the etcd TLS files the conf names. Repeatable.",
)
@click.option(
    "--host-root",
    default="/",
    show_default=True,
    type=click.Path(exists=True, file_okay=False),
    help="Where the node's / is seen from here: every node path is written under it.",
)
@click.option(
    "--runtime",
    type=click.Path(exists=True, file_okay=False),
    metavar="SRC",
    help="A self-contained Python tree with multipy installed, copied to the node under "
    "--runtime-dir as DIGEST/; the executables run its interpreter.",
)
@click.option(
    "--runtime-dir",
    default="/opt/multipy",
    show_default=True,
    callback=_node_path,
    metavar="NODEDIR",
    help="Where runtime trees go on the node, one directory per content digest.",
)
@click.option(
    "--python",
    metavar="PATH",
    help="The interpreter the executables run: with --runtime, its path inside SRC (found when "
    "omitted); otherwise the node's path.  [default: this one, with --host-root /]",
)
@click.option(
    "--prune-runtimes",
    is_flag=True,
    help="Remove the runtime trees in --runtime-dir that no executable in --bin-dir runs. Only "
    "once no CNI call of the old version can still be running.",
)
@click.option(
    "--kubeconfig",
    callback=_node_file,
    metavar="NODEPATH",
    help="Write a kubeconfig there for multipy on the node, from this pod's service account "
    "(mode 0600; the CA next to it as NODEPATH.ca.crt).",
)
@click.option(
    "--serviceaccount-dir",
    default=kubeconfig.SERVICEACCOUNT_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="The service account's token, ca.crt and namespace.",
)
@click.option(
    "--api-server",
    metavar="URL",
    help="The API server, as the node reaches it.  [default: from KUBERNETES_SERVICE_HOST/PORT]",
)
@click.option(
    "--every",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="After installing, install again every SECONDS until SIGTERM (refreshes the node's token); exit 0 on SIGTERM.",
)
@click.option(
    "--thick",
    is_flag=True,
    help=f"Thick mode: also install {SHIM}, which hands each request to `multipy daemon` (the conf's "
    f'"type" must be "{SHIM}"). See docs/thick-mode.md.',
)
@output_option
def install(output, every, **options) -> None:
    """Install multipy on a node: the runtime, the CNI executables, the kubeconfig and the conf.

    Writes, each only when it changed and each through a temporary name and a rename (safe to
    run again, safe while a runtime runs multipy): the --runtime tree as RUNTIME_DIR/DIGEST/,
    each --file DEST (0600), the --kubeconfig and its CA (0600), BIN_DIR/multus-cni and
    BIN_DIR/multipy (0755), with --thick BIN_DIR/multus-shim (0755) and, last, CONF_DIR/NAME (0600).
    Nothing is deleted, except with --prune-runtimes.

    \b
    Exit codes: 0 installed (or all unchanged; with --every, stopped by SIGTERM); 1 the conf
    is invalid, nothing written; 2 bad arguments or a source cannot be read, nothing written;
    3 something cannot be written (what is listed before it is in place; run again).
    With --every, only the first pass's failure ends it; later ones are reported and retried.
    """
    installer = Installer(_settings(**options))
    if every is None:
        sys.exit(_pass(installer, options["source"], output))
    # Blocked from the start: a SIGTERM during a pass lets it finish, then ends the loop.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        code = _pass(installer, options["source"], output, one_line=True)
        if code:
            sys.exit(code)
        while signal.sigtimedwait(STOP_SIGNALS, every) is None:
            _pass(installer, options["source"], output, one_line=True, changes_only=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    sys.exit(0)


def _pass(installer: Installer, source: str, output: str, one_line: bool = False, changes_only: bool = False) -> int:
    """One install, reported; its exit code. `one_line`: the JSON document on one line (one per pass);
    `changes_only`: the text lists only what changed (a pass every few minutes stays quiet)."""
    done: list[dict] = []

    def report(entry: dict) -> None:
        done.append(entry)
        if output == "text" and not (changes_only and entry["action"] == "unchanged"):
            what = "runtime" if entry.get("kind") == "runtime" else entry["mode"]
            click.echo(f"{entry['action']:9}  {entry['path']} ({what})")

    code, error = 0, None
    try:
        installer.run(report)
    except Failure as failure:
        code, error = failure.code, str(failure)
        click.echo(f"multipy install: {failure}", err=True)
    if output == "json":
        doc = {"conf": source, "ok": not code, "files": done, **({"error": error} if error else {})}
        if installer.s.host_root != "/":
            doc["hostRoot"] = installer.s.host_root
        click.echo(json.dumps(doc, indent=None if one_line else 2))
    return code
