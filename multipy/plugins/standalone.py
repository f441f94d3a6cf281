"""One native plugin run as if it were its own CNI binary.

`python -m multipy.plugins.standalone [--binary T]... TYPE` serves exactly what
`/usr/lib/cni/TYPE` would: the same environment, stdin and output. It is how a
native plugin is put side by side with its Go reference in differential tests
and benchmarks, and how a runtime could call one directly. A native main plugin
runs its IPAM through the same chain multus-cni uses (native first, else the
binary of that type on CNI_PATH); `--binary T` makes type T always a binary,
so a native bridge can be diffed against the Go one with the same Go IPAM.
"""

from __future__ import annotations

import os
import sys

from multipy import __version__
from multipy.cni import skel
from multipy.cni.errors import DELEGATE_NOT_FOUND, CNIError
from multipy.log import Log
from multipy.net.netlink import Netlink

from .chain import Chain
from .contract import DELEGATE_GROUP, IPAM_GROUP, Services
from .registry import Registry


class Handler:
    def __init__(self, plugin_type: str, chain: Chain, group: str) -> None:
        self.plugin_type = plugin_type
        self.chain = chain
        self.group = group

    def _run(self, request: skel.Request):
        return self.chain.native(self.group, self.plugin_type, request.config, request.env)

    add = delete = check = gc = status = _run


def build(
    plugin_type: str,
    registry: Registry | None = None,
    services: Services | None = None,
    binary_types: frozenset[str] = frozenset(),
):
    def make(request: skel.Request, log: Log) -> Handler:
        # No conf names a cniDir here: MULTIPY_ENTRY_POINTS_INDEX may name the index file (saves the scan).
        reg = registry or Registry(index_path=os.environ.get("MULTIPY_ENTRY_POINTS_INDEX") or None)
        group = next((g for g in (DELEGATE_GROUP, IPAM_GROUP) if reg.find(g, plugin_type) is not None), None)
        if group is None:
            raise CNIError(DELEGATE_NOT_FOUND, f"no native plugin of type {plugin_type!r} is installed")
        svc = services or Services(netlink=Netlink())
        chain = Chain(reg, svc, search_path=request.env.path, timeout=90, log=log, binary_types=binary_types)
        return Handler(plugin_type, chain, group)

    return make


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    binaries = set()
    while len(argv) > 2 and argv[0] == "--binary":
        binaries.add(argv[1])
        del argv[:2]
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write("usage: python -m multipy.plugins.standalone [--binary TYPE]... TYPE\n")
        sys.exit(2)
    about = f"multipy v{__version__}: native {argv[0]} plugin"
    sys.exit(skel.run(build(argv[0], binary_types=frozenset(binaries)), about=about))


if __name__ == "__main__":
    main()
