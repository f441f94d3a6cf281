"""`multipy daemon`: thick mode's long-lived process (multipy/daemon/, imported when the command runs)."""

from __future__ import annotations

import sys

import click

from .commands import cli


def _auto_options(ctx, param, values) -> dict | None:
    from multipy.config import auto

    given = {}
    for value in values:
        try:
            key, parsed = auto.parse_option(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
        given[key] = parsed
    return given or None  # None: not given, the config file's stand


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="The daemon's JSON config file (socketDir, metricsAddress, workers, addWorkers, queue, drainTimeout, "
                   "requestTimeout, kubeconfig, nodeName, fallback, syncTimeout, logLevel, autoConf, cniConfigDir, "
                   "autoConfName, autoConfPrimary, autoConfOptions); re-read when it changes.")
@click.option("--socket-dir", default=None, help="Directory of multipy.sock (default /run/multipy).")
@click.option("--metrics-address", default=None, help="Loopback host:port for /healthz, /readyz, /metrics (e.g. 127.0.0.1:9091).")
@click.option("--workers", type=int, default=None, help="Requests served at once (default 8).")
@click.option("--add-workers", type=int, default=None,
              help="Of those, ADDs and CHECKs served at once, CPU work on one core (default 3).")
@click.option("--queue", type=int, default=None, help="Connections waiting for a worker before 503 (default 256).")
@click.option("--drain-timeout", type=float, default=None, help="Seconds SIGTERM waits for requests in flight (default 30).")
@click.option("--request-timeout", type=float, default=None, help="Seconds one request may take, all its delegates and API calls together (default 120).")
@click.option("--kubeconfig", default=None, help="The API for the pod and NAD caches (default: none).")
@click.option("--node-name", default=None, help="This node's name, for the pod cache (default $NODE_NAME, else the hostname).")
@click.option("--log-level", default=None, help="panic, error, verbose or debug (default error); to stderr.")
@click.option("--auto-conf", is_flag=True, default=None,
              help="Write the node's CNI conf, made from its primary conf as `multipy install --auto --thick` "
                   "makes it, and make it again when the primary changes; never deleted (autoConf).")
@click.option("--cni-config-dir", default=None, help="With --auto-conf: the node's CNI conf dir (default /etc/cni/net.d).")
@click.option("--auto-conf-name", default=None, help="With --auto-conf: the conf's file name (default 00-multus.conf).")
@click.option("--auto-conf-primary", default=None, metavar="NAME",
              help="With --auto-conf: the primary conf's file name (default: the first in libcni's order).")
@click.option("--auto-option", "auto_conf_options", multiple=True, metavar="KEY=VALUE", callback=_auto_options,
              help="With --auto-conf: a top-level key of the made conf (VALUE as JSON when it parses); "
                   "over the config file's autoConfOptions. Repeatable.")
def daemon(config_path, **options) -> None:  # fmt: skip
    """Serve CNI requests from the multus-shim on a unix socket (thick mode)."""
    from multipy.cni.errors import CNIError
    from multipy.daemon import main, settings

    from .install_files import place

    keys = {field: key for key, field in settings.KEYS.items()}
    overrides = {keys[name]: value for name, value in options.items() if value is not None}
    try:
        source = settings.Source(config_path, overrides)
    except CNIError as err:
        click.echo(f"multipy daemon: {err.msg}", err=True)
        sys.exit(2)
    sys.exit(main.main(source, place))
