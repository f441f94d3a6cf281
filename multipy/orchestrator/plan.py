"""Which delegate gets which interface, in which order."""

from __future__ import annotations

from multipy.cni.errors import INVALID_NETWORK_CONFIG, CNIError
from multipy.config.multus import MultusConf

from .record import Attachment


def attachments(conf: MultusConf, runtime_ifname: str) -> list[Attachment]:
    """The master first on the runtime's ifname, then the others on net1, net2, ... in list order.

    Running the master first is what legacy (v1/v2) Multus did with `masterplugin`,
    and a pod is useless without its primary interface anyway. A delegate may name
    its own interface; the automatic names skip the ones so taken.
    """
    master = conf.master
    others = [d for d in conf.delegates if d is not master]
    planned = [Attachment(dict(master.network.source), runtime_ifname, True)]
    claimed = {d.interface for d in others if d.interface}
    automatic = (name for name in (f"net{i}" for i in range(1, 10_000)) if name not in claimed)
    for delegate in others:
        ifname = delegate.interface or next(automatic)
        planned.append(Attachment(dict(delegate.network.source), ifname, False))
    seen: dict[str, str] = {}
    for attachment in planned:
        if attachment.ifname in seen:
            raise CNIError(
                INVALID_NETWORK_CONFIG,
                f"interface name {attachment.ifname!r} of delegate {attachment.name!r} "
                f"is already used by delegate {seen[attachment.ifname]!r}",
            )
        seen[attachment.ifname] = attachment.name
    return planned
