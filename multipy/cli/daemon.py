"""`multipy daemon`: thick mode's long-lived process (multipy/daemon/, imported when the command runs)."""

from __future__ import annotations

import sys

import click

from .commands import cli


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="The daemon's JSON config file (socketDir, metricsAddress, workers, queue, drainTimeout, "
                   "requestTimeout, kubeconfig, nodeName, fallback, syncTimeout, logLevel); re-read when it changes.")
@click.option("--socket-dir", default=None, help="Directory of multipy.sock (default /run/multipy).")
@click.option("--metrics-address", default=None, help="Loopback host:port for /healthz, /readyz, /metrics (e.g. 127.0.0.1:9091).")
@click.option("--workers", type=int, default=None, help="Requests served at once (default 8).")
@click.option("--queue", type=int, default=None, help="Connections waiting for a worker before 503 (default 256).")
@click.option("--drain-timeout", type=float, default=None, help="Seconds SIGTERM waits for requests in flight (default 30).")
@click.option("--request-timeout", type=float, default=None, help="Seconds one request may take, all its delegates and API calls together (default 120).")
@click.option("--kubeconfig", default=None, help="The API for the pod and NAD caches (default: none).")
@click.option("--node-name", default=None, help="This node's name, for the pod cache (default $NODE_NAME, else the hostname).")
@click.option("--log-level", default=None, help="panic, error, verbose or debug (default error); to stderr.")
def daemon(config_path, **options) -> None:  # fmt: skip
    """Serve CNI requests from the multus-shim on a unix socket (thick mode)."""
    from multipy.cni.errors import CNIError
    from multipy.daemon import main, settings

    keys = {field: key for key, field in settings.KEYS.items()}
    overrides = {keys[name]: value for name, value in options.items() if value is not None}
    try:
        source = settings.Source(config_path, overrides)
    except CNIError as err:
        click.echo(f"multipy daemon: {err.msg}", err=True)
        sys.exit(2)
    sys.exit(main.main(source))
