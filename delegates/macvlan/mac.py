"""Ethernet MAC addresses as a link can take them."""

from __future__ import annotations

import string

_HEX = frozenset(string.hexdigits)


def _octets(text: str) -> list[str]:
    # The three spellings Go's net.ParseMAC reads for a 6-byte address.
    if len(text) == 17 and text[2] in ":-":
        parts = text.split(text[2])
        if len(parts) == 6 and all(len(p) == 2 for p in parts):
            return parts
    if len(text) == 14 and text[4] == "." and text[9] == ".":
        groups = text.split(".")
        if all(len(g) == 4 for g in groups):
            return [g[i : i + 2] for g in groups for i in (0, 2)]
    raise ValueError("expected 6 hex octets such as 02:42:ac:11:00:02")


def parse_mac(text: str) -> str:
    """`text` in the kernel's lower-case colon form; ValueError saying what is wrong."""
    octets = _octets(text)
    if not all(set(o) <= _HEX for o in octets):
        raise ValueError("expected 6 hex octets such as 02:42:ac:11:00:02")
    value = [int(o, 16) for o in octets]
    if value[0] & 1:
        raise ValueError("is a multicast address (the lowest bit of the first octet is set)")
    if not any(value):
        raise ValueError("is all zeros")
    return ":".join(f"{v:02x}" for v in value)
