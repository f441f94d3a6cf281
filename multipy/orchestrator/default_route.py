"""A pod's `default-route` request: one attachment takes the default route of a family.

The kernel is changed first, then every stored result is rewritten to match, so CHECK keeps
passing and the runtime's result says where the default route really is (as Multus does).
"""

from __future__ import annotations

import ipaddress

from multipy.cni.errors import INTERNAL, CNIError
from multipy.cni.result import Result, Route
from multipy.net import default_route

from .record import Attachment

_ANY = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


def apply(attachments: list[Attachment], netlink, netns: str) -> None:
    for chosen in (a for a in attachments if a.default_route):
        try:
            default_route.take(netlink, netns, chosen.ifname, chosen.default_route)
        except OSError as exc:
            raise CNIError(INTERNAL, f"cannot move the default route to {chosen.ifname} via "
                           f"{', '.join(chosen.default_route)}: {exc}") from None  # fmt: skip
        for gateway in chosen.default_route:
            gw = ipaddress.ip_address(gateway)
            for attachment in attachments:
                if attachment.result is not None:
                    _rewrite(attachment, gw, attachment is chosen)


def _rewrite(attachment: Attachment, gw, chosen: bool) -> None:
    result = Result.from_json(attachment.result)
    version = result.cni_version
    kept = [r for r in result.routes if not (r.dst == _ANY[gw.version])]
    if chosen:
        kept.append(Route(dst=_ANY[gw.version], gw=gw))
    result.routes = kept
    attachment.result = result.to_json(version)
