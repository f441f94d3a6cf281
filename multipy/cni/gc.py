"""GC's list of attachments the runtime still uses, as every GC implementation must read it."""

from __future__ import annotations

import json

from .errors import INVALID_NETWORK_CONFIG, CNIError

# libcni HEAD sends cni.dev/attachments beside the spec's key (containernetworking/cni #1101).
KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


def valid_attachments(conf: dict) -> set[tuple[str, str]]:
    """The (containerID, ifname) pairs still in use; refuses a GC that does not say.

    Read as "none are valid", a missing list would release everything a network holds.
    """
    key = next((k for k in KEYS if k in conf), None)
    if key is None:
        raise CNIError(
            INVALID_NETWORK_CONFIG,
            "GC without cni.dev/valid-attachments: refusing to guess which attachments are still in use",
        )
    items = conf[key]
    if not isinstance(items, list):
        raise CNIError(INVALID_NETWORK_CONFIG, f"{key}: {_show(items)} is not a list of attachments")
    valid = set()
    for n, item in enumerate(items):
        cid = item.get("containerID") if isinstance(item, dict) else None
        ifname = item.get("ifname") if isinstance(item, dict) else None
        if not (isinstance(cid, str) and cid and isinstance(ifname, str) and ifname):
            raise CNIError(
                INVALID_NETWORK_CONFIG,
                f'{key}[{n}]: {_show(item)} is not an attachment {{"containerID": ..., "ifname": ...}}',
            )
        valid.add((cid, ifname))
    return valid


def _show(value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
