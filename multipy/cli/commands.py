"""Operator commands."""

from __future__ import annotations

import json
import sys

import click

from multipy import __version__
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.config import multus
from multipy.config.problems import Problem

from .output import echo_json, output_option

# Exit codes for operators and scripts.
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="multipy")
def cli() -> None:
    """multipy: a Multus-style meta-CNI plugin.

    Run by a container runtime (CNI_COMMAND set) it is the CNI plugin; run by
    hand it offers these operator commands.
    """


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True), default="/etc/cni/net.d/10-multus.conf")
@output_option
def validate(file: str, output: str) -> None:
    """Check a multus conf FILE and print every problem, each with its JSON path.

    Exit codes: 0 valid; 1 problems found; 2 FILE cannot be read.
    """
    try:
        with click.open_file(file, "rb") as f:
            raw = f.read()
    except OSError as exc:
        click.echo(f"{file}: cannot read: {exc.strerror}", err=True)
        sys.exit(EXIT_UNREADABLE)
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        problems = [Problem("$", f"not valid JSON: {exc}")]
    else:
        problems = multus.problems(doc)
    if output == "json":
        click.echo(json.dumps({"file": file, "valid": not problems,
                               "problems": [{"path": p.path, "message": p.message} for p in problems]}, indent=2))
    elif problems:
        for problem in problems:
            click.echo(f"{file}: {problem}")
        click.echo(f"{file}: {len(problems)} problem(s)", err=True)
    else:
        click.echo(f"{file}: valid")
    sys.exit(EXIT_INVALID if problems else 0)


@cli.command()
@output_option
def versions(output: str) -> None:
    """Print the CNI spec versions this build supports."""
    if output == "json":
        echo_json({"cniVersions": list(SUPPORTED_VERSIONS), "multipy": __version__})
    else:
        click.echo(" ".join(SUPPORTED_VERSIONS))


# Each registers its commands on cli.
from . import install, ipam, status  # noqa: E402, F401
