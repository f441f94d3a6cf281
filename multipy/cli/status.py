"""`multipy status`: can this node run the conf? One line per check (see checks.py)."""

from __future__ import annotations

import sys

import click

from .commands import EXIT_INVALID, EXIT_UNREADABLE, cli
from .output import echo_json, output_option

DEFAULT_CONF = "/etc/cni/net.d/10-multus.conf"


@cli.command()
@click.option(
    "--conf",
    "conf_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=DEFAULT_CONF,
    show_default=True,
    help="The multus conf (not a conflist) the runtime uses.",
)
@output_option
def status(conf_path: str, output: str) -> None:
    """Check that this node can run the multus conf.

    \b
    Checks, each printed as one line with ok or FAIL and the reason:
      conf        the conf is valid (as `multipy validate`)
      network     each network known only by name is a NetworkAttachmentDefinition
      type        every delegate type and IPAM type can run: a native plugin
                  (unless in binaryDelegates), else a binary in binDir, then CNI_PATH
      api         the Kubernetes API answers for the conf's kubeconfig, and the
                  credentials may read pods (2 s)
      readiness   the readinessindicatorfile, if set, is there
    and what each native plugin declares it needs, such as:
      etcd        each kube-ipam etcdConfig answers (2 s)
      api         each kube-ipam kubeConfig, as above
      subnet.env  each flannel delegate's subnetFile is there and complete

    \b
    Exit codes: 0 every check passed; 1 a check failed; 2 the conf cannot be read
    or bad arguments.
    """
    try:
        with click.open_file(conf_path, "rb") as f:
            raw = f.read()
    except OSError as error:
        click.echo(f"multipy status: {conf_path}: cannot read: {error.strerror}", err=True)
        sys.exit(EXIT_UNREADABLE)
    from . import checks as node_checks  # the checks' imports are paid by `status` only

    results = node_checks.run_all(conf_path, raw)
    healthy = all(c.ok for c in results)
    if output == "json":
        echo_json({"conf": conf_path, "ok": healthy, "checks": [c.as_dict() for c in results]})
    else:
        width = max(len(c.kind) for c in results)
        for c in results:
            click.echo(f"{'ok' if c.ok else 'FAIL':4}  {c.kind.ljust(width)}  {c.subject}: {c.detail}")
        if not healthy:
            click.echo(f"{sum(not c.ok for c in results)} of {len(results)} check(s) failed", err=True)
    sys.exit(0 if healthy else EXIT_INVALID)
