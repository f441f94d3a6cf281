"""Kernel state of a namespace, read with iproute2's JSON output, for assertions and diffs."""

from __future__ import annotations

import json
import subprocess


def ip_json(netns: str | None, *args: str) -> list[dict]:
    cmd = ["ip", "-j", "-d"] + (["-n", netns] if netns else []) + list(args)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else []


def links(netns: str | None) -> dict[str, dict]:
    return {link["ifname"]: link for link in ip_json(netns, "link", "show")}


def addresses(netns: str | None, ifname: str | None = None, family: str = "inet") -> dict[str, list[str]]:
    """ifname -> ["10.1.2.3/24", ...] for one family (link-local v6 noise stays out by default)."""
    found: dict[str, list[str]] = {}
    for link in ip_json(netns, "addr", "show"):
        if ifname and link["ifname"] != ifname:
            continue
        found[link["ifname"]] = [
            f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == family
        ]
    return found


def routes(netns: str | None, family: str = "-4") -> list[dict]:
    return [
        {k: r[k] for k in ("dst", "gateway", "dev", "scope", "protocol") if k in r}
        for r in ip_json(netns, family, "route", "show")
    ]
