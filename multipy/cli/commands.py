"""Operator commands."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from multipy import __version__
from multipy.cni.errors import CNIError
from multipy.cni.version import SUPPORTED_VERSIONS
from multipy.plugins.contract import CLI_GROUP

from .output import echo_json, output_option

if TYPE_CHECKING:
    from multipy.plugins.registry import Registry

# Exit codes for operators and scripts.
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


class Commands(click.Group):
    """The built-in commands, then those plugin packages declare in the `multipy.cli` entry-point
    group (plugins/operator.py). A declared command's module is imported only when the command
    runs or `multipy --help` lists it; a built-in keeps its name."""

    registry: Registry | None = None  # the entry-point registry; tests put their own

    def _registry(self) -> Registry:
        if self.registry is None:
            from multipy.plugins.registry import Registry

            self.registry = Registry()
        return self.registry

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._registry().names(CLI_GROUP)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        try:
            command = self._registry().find(CLI_GROUP, name)
        except CNIError as error:  # a broken package names itself; the other commands still work
            click.echo(f"multipy: {error.msg}", err=True)
            return None
        if command is not None and not isinstance(command, click.Command):
            click.echo(f"multipy: the {CLI_GROUP} entry point {name!r} is not a click command", err=True)
            return None
        return command


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
    """Check a multus conf FILE, or a NetworkAttachmentDefinition FILE (YAML or JSON), and print
    every problem, each with its JSON path.

    Every delegate's conf, and its ipam, is checked against the schema its native plugin
    declares. A conf that cannot be checked (its type runs as a binary, or its plugin declares
    no schema) is listed as "not checked" and never reported valid.

    Exit codes: 0 no problems; 1 problems found; 2 FILE cannot be read.
    """
    from .validation import check

    try:
        with click.open_file(file, "rb") as f:
            raw = f.read()
    except OSError as exc:
        click.echo(f"{file}: cannot read: {exc.strerror}", err=True)
        sys.exit(EXIT_UNREADABLE)
    report = check(raw, cli._registry().schema_for)
    problems = report.problems
    if output == "json":
        rows = {kind: [{"path": p.path, "message": p.message} for p in found]
                for kind, found in (("warnings", report.warnings), ("unchecked", report.unchecked),
                                    ("problems", problems))}  # fmt: skip
        click.echo(json.dumps({"file": file, "valid": not problems and not report.unchecked, **rows}, indent=2))
        sys.exit(EXIT_INVALID if problems else 0)
    for warning in report.warnings:  # keys of a Go Multus conf that do nothing here
        click.echo(f"{file}: warning: {warning}")
    for unchecked in report.unchecked:
        click.echo(f"{file}: {unchecked}")
    if problems:
        for problem in problems:
            click.echo(f"{file}: {problem}")
        click.echo(f"{file}: {len(problems)} problem(s)", err=True)
    elif report.unchecked:
        click.echo(f"{file}: no problems in what was checked; {len(report.unchecked)} conf(s) not checked")
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
from . import daemon, doctor, install, status  # noqa: E402, F401
