"""`multipy`: the CNI plugin when a runtime runs it (CNI_COMMAND set), the operator CLI otherwise."""

from __future__ import annotations

import os


def main() -> None:
    if os.environ.get("CNI_COMMAND"):
        # The runtime's path stays free of click.
        from multipy.entry import main as cni_main

        cni_main()
        return
    from .commands import cli

    cli()
