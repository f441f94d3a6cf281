"""`multipy install`: what a DaemonSet runs on each node (its init container once, its main
container with --every). The options, checked across each other, and the --every loop; what one
pass writes, checks and in which order is installer.py's.
"""

from __future__ import annotations

import json
import os
import posixpath
import signal
import sys

import click

from multipy.config import auto, confdir

from . import kubeconfig
from .commands import cli
from .installer import SHIM, Failure, Installer, Settings
from .output import output_option

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


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


def _conf_name(ctx, param, value: str | None) -> str | None:
    if value is None:
        return None  # the default depends on --auto: see _settings
    if "/" in value or value.startswith(".") or not value.endswith((".conf", ".json")):
        raise click.BadParameter(
            f"{value!r} is not a conf file name (NAME.conf or NAME.json, no '/', no leading "
            "dot: the runtime only reads those)"
        )
    return value


def _auto_options(ctx, param, values) -> tuple[tuple[str, object], ...]:
    given: dict[str, object] = {}
    for value in values:
        try:
            key, parsed = auto.parse_option(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
        if key in given:
            raise click.BadParameter(f"{key} is given twice")
        given[key] = parsed
    return tuple(given.items())


def _primary_name(ctx, param, value: str | None) -> str | None:
    if value is not None and ("/" in value or not value.endswith(confdir.EXTENSIONS)):
        raise click.BadParameter(f"{value!r} is not a conf file name in --conf-dir "
                                 f"({', '.join(confdir.EXTENSIONS)}, no '/')")  # fmt: skip
    return value


def _settings(**options) -> Settings:
    """Settings from the options, checked across options (exit 2 with the option named)."""
    ctx = click.get_current_context()
    if options["source"] is None and not options["auto"]:
        raise click.UsageError("Missing option '--conf' (or --auto: make the conf from the node's primary conf)", ctx)
    if options["source"] is not None and options["auto"]:
        raise click.BadParameter("--conf and --auto exclude each other", ctx, param_hint="'--auto'")
    for name, hint in (("auto_options", "'--auto-option'"), ("primary", "'--primary'")):
        if options[name] and not options["auto"]:
            raise click.BadParameter("only used with --auto", ctx, param_hint=hint)
    name = options["name"] or (auto.DEFAULT_FILE_NAME if options["auto"] else "10-multus.conf")
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
    return Settings(options["source"], options["conf_dir"], options["bin_dir"], name,
                    options["copies"], python, host_root, runtime, options["runtime_dir"],
                    options["prune_runtimes"], kube, options["serviceaccount_dir"], api,
                    options["thick"], auto=options["auto"], auto_options=options["auto_options"],
                    primary=options["primary"], verify=not options["no_verify"])  # fmt: skip


@cli.command()
@click.option(
    "--conf",
    "source",
    type=click.Path(dir_okay=False),
    help="The multus conf to install; it must pass `multipy validate`. Or --auto.",
)
@click.option(
    "--auto",
    is_flag=True,
    help="Make the conf from the node's primary CNI conf instead (Multus's --multus-conf-file=auto): the first "
    "conf of --conf-dir in libcni's order (by name; .conf, .conflist, .json) that is not multipy's or Multus's "
    "own, embedded as the master delegate, with its cniVersion and its plugins' capabilities, and "
    "\"kubeconfig\" naming --kubeconfig. Made again on every pass of --every; written only when it changed.",
)
@click.option(
    "--auto-option",
    "auto_options",
    multiple=True,
    callback=_auto_options,
    metavar="KEY=VALUE",
    help="With --auto: a top-level key of the made conf; VALUE is JSON when it parses as JSON, else text "
    "(logLevel=verbose, namespaceIsolation=true, readinessindicatorfile=/run/flannel/subnet.env, "
    "cniVersion=1.0.0, ...). Repeatable.",
)
@click.option(
    "--primary",
    callback=_primary_name,
    metavar="NAME",
    help="With --auto: the primary conf's file name in --conf-dir, instead of the first one.",
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
    callback=_conf_name,
    help="The conf's file name in --conf-dir (the runtime reads the first conf by name).  "
    f"[default: 10-multus.conf; {auto.DEFAULT_FILE_NAME} with --auto]",
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
    "--runtime-dir as DIGEST/; the executables run its interpreter. Refused, each named, when it has "
    "symlinks or libraries (other than glibc's) outside itself.",
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
@click.option(
    "--no-verify",
    is_flag=True,
    help="UNSAFE: switch the node without first running the new executables there (chrooted into "
    "--host-root: multus-cni answering VERSION, every plugin loading, the runtime's libraries loading "
    "with the node's glibc). A node whose multus-cni cannot start has no pod networking. The --runtime "
    "tree is still refused when it has links or libraries outside itself.",
)
@output_option
def install(output, every, **options) -> None:
    """Install multipy on a node: the runtime, the CNI executables, the kubeconfig and the conf.

    Writes, each only when it changed and each through a temporary name and a rename (safe to
    run again, safe while a runtime runs multipy): the --runtime tree as RUNTIME_DIR/DIGEST/,
    each --file DEST (0600), the --kubeconfig and its CA (0600), BIN_DIR/multus-cni and
    BIN_DIR/multipy (0755), with --thick BIN_DIR/multus-shim (0755) and, last, CONF_DIR/NAME (0600).
    Nothing is deleted, except with --prune-runtimes.

    With --auto the conf is made from the node's primary CNI conf (see --auto), named
    00-multus.conf unless --name says otherwise.

    \b
    Exit codes: 0 installed (or all unchanged; with --every, stopped by SIGTERM); 1 the conf
    (with --auto, the primary conf) is invalid, nothing written; 2 bad arguments or a source
    (with --auto, the primary conf) cannot be read, nothing written;
    3 something cannot be written (what is listed before it is in place; run again);
    4 the --runtime tree has symlinks or libraries (not glibc's) outside itself, each named,
    nothing written; 5 the new executables do not run on this node (the reason is printed: a
    glibc version or a library the node lacks, or their own error) or cannot be run there (no
    SYS_CHROOT capability), nothing switched: the old executables and conf are untouched, only
    the new runtime tree may stay (harmless: --prune-runtimes removes it).
    Before switching anything, the new executables are run on the node (chrooted into
    --host-root, or directly when it is /): multus-cni (and multus-shim) must answer
    CNI_COMMAND=VERSION, `multipy check-plugins` must load every delegate and IPAM plugin, and the
    node's loader must load every ELF file of the runtime tree. Only when this pass would change an
    executable or the conf; --no-verify skips it (unsafe).
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
            made = f" from {entry['primary']}" if "primary" in entry else ""
            click.echo(f"{entry['action']:9}  {entry['path']} ({what}){made}")

    code, error = 0, None
    try:
        installer.run(report)
    except Failure as failure:
        code, error = failure.code, str(failure)
        click.echo(f"multipy install: {failure}", err=True)
    if output == "json":
        doc = {"conf": source or "auto", "ok": not code, "files": done, **({"error": error} if error else {})}
        if installer.s.host_root != "/":
            doc["hostRoot"] = installer.s.host_root
        click.echo(json.dumps(doc, indent=None if one_line else 2))
    return code
