"""What every command shares for output: the `--output/-o text|json` option and JSON printing."""

from __future__ import annotations

import json

import click

output_option = click.option(
    "--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: one JSON document on stdout, for scripts.",
)  # fmt: skip


def echo_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2))
