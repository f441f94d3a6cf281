"""How a main plugin (bridge, macvlan) runs its `ipam`: through the runner its Services hold.

One place for what every such plugin needs: a missing runner is the same error
(DELEGATE_NOT_FOUND, as for an IPAM type nothing provides) whoever asks, an ADD that
hands back no address is refused with the reference's wording, and undoing an ADD
(`release`) knows that an IPAM nothing provides holds nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from multipy.cni.errors import DELEGATE_NOT_FOUND, INTERNAL, CNIError

if TYPE_CHECKING:
    from multipy.cni.result import Result
    from multipy.plugins.contract import Invocation, IpamRunner


class Ipam:
    """`plugin`'s IPAM, run through `run` (its Services.ipam, None when nothing handed one in)."""

    def __init__(self, plugin: str, run: IpamRunner | None) -> None:
        self.plugin = plugin
        self._run = run

    def __call__(self, inv: Invocation, conf: dict, command: str) -> Result | None:
        """Run the conf's IPAM with CNI_COMMAND=`command`."""
        if self._run is None:
            ipam = conf.get("ipam")
            kind = ipam.get("type") if isinstance(ipam, dict) else None
            raise CNIError(DELEGATE_NOT_FOUND, f"no IPAM runner was handed to {self.plugin} for ipam type {kind!r}")
        return self._run(replace(inv, command=command), conf)

    def add(self, inv: Invocation, conf: dict) -> Result:
        """IPAM ADD, which must give at least one address."""
        found = self(inv, conf, "ADD")
        if found is None or not found.ips:
            raise CNIError(INTERNAL, "IPAM plugin returned missing IP config")
        return found

    def release(self, inv: Invocation, conf: dict) -> None:
        """IPAM DEL undoing an ADD (pushed on the Undo before the ADD: a failed ADD may hold a partial lease).

        An IPAM that could not be found, or no runner at all, reserved nothing: there is nothing to release.
        """
        try:
            self(inv, conf, "DEL")
        except CNIError as exc:
            if exc.code != DELEGATE_NOT_FOUND:
                raise
