"""Kernel state of a namespace as one comparable document, for differential tests.

Our plugin and the Go reference run the same config into twin namespaces; each
side is snapshotted and normalised, then the two documents must be equal. What
is random by design (veth names, MACs, link indexes, timers) is replaced by
stable placeholders in order of first appearance, so that "the bridge's MAC is
the first veth's MAC" still compares equal while a different MAC pattern does not.
"""

from __future__ import annotations

import re
import subprocess

from .kernel import ip_json

# Per-interface sysctls the reference plugins touch.
IFACE_SYSCTLS = (
    "net/ipv4/conf/{}/arp_notify",
    "net/ipv4/conf/{}/forwarding",
    "net/ipv6/conf/{}/accept_dad",
    "net/ipv6/conf/{}/accept_ra",
    "net/ipv6/conf/{}/disable_ipv6",
)
GLOBAL_SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")

# linkinfo data worth comparing; the rest are counters and timers.
_SLAVE_KEYS = ("state", "hairpin", "learning", "flood", "isolated")
_LINK_KEYS = ("mtu", "master", "operstate", "txqlen", "link_type", "address", "promiscuity", "flags")

_VETH = re.compile(r"\bveth[0-9a-f]{8}\b")
_MAC = re.compile(r"\b(?:[0-9a-f]{2}:){5}[0-9a-f]{2}\b")
_CHAIN = re.compile(r"\bCNI-[0-9a-f]{24}\b")
_IFINDEX_PEER = re.compile(r"@if\d+")


def _netns_exec(netns: str | None, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def sysctls(netns: str | None, ifnames) -> dict[str, str]:
    keys = list(GLOBAL_SYSCTLS) + [pattern.format(name) for name in ifnames for pattern in IFACE_SYSCTLS]
    script = 'for k in "$@"; do printf "%s=" "$k"; cat "/proc/sys/$k" 2>/dev/null || echo "-"; done'
    out = subprocess.run(
        _netns_exec(netns, "sh", "-c", script, "sysctls", *keys), check=True, capture_output=True, text=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def nat_rules(netns: str | None, tool: str = "iptables-save") -> list[str]:
    """nat rules of `tool` (iptables-save or ip6tables-save), no counters or dates; [] without it."""
    try:
        out = subprocess.run(_netns_exec(netns, tool, "-t", "nat"), check=True, capture_output=True, text=True).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        return []
    return sorted(line for line in out.splitlines() if line.startswith(("-A", ":CNI-", "-N")))


def _link(link: dict) -> dict:
    out = {key: link[key] for key in _LINK_KEYS if key in link}
    info = link.get("linkinfo", {})
    out["kind"] = info.get("info_kind", "")
    data = info.get("info_data") or {}
    if out["kind"] in ("macvlan", "ipvlan"):
        out["mode"] = data.get("mode")
    if out["kind"] == "bridge":
        out["stp_state"] = data.get("stp_state")
    if info.get("info_slave_kind"):
        slave = info.get("info_slave_data") or {}
        out["port"] = {key: slave.get(key) for key in _SLAVE_KEYS}
    if "flags" in out:
        out["flags"] = sorted(out["flags"])
    return out


def take(netns: str | None, links_only: tuple[str, ...] = ()) -> dict:
    """Links, addresses (no link-local v6), routes, sysctls and nat rules (v4, v6) of `netns`."""
    links = {link["ifname"]: _link(link) for link in ip_json(netns, "link", "show")}
    if links_only:
        links = {name: link for name, link in links.items() if name in links_only}
    addresses = {}
    for entry in ip_json(netns, "addr", "show"):
        if entry["ifname"] not in links:
            continue
        addresses[entry["ifname"]] = sorted(
            f"{a['local']}/{a['prefixlen']}"
            for a in entry.get("addr_info", [])
            if a.get("scope") != "link" or a.get("family") == "inet"
        )
    routes = []
    for family in ("-4", "-6"):
        for route in ip_json(netns, family, "route", "show", "table", "all"):
            if route.get("type") in ("local", "broadcast", "multicast") or route.get("dst", "").startswith("fe80"):
                continue
            routes.append({k: route[k] for k in ("dst", "gateway", "dev", "scope", "protocol", "table") if k in route})
    routes.sort(key=lambda r: sorted(r.items()))
    return {
        "links": links,
        "addresses": addresses,
        "routes": routes,
        "sysctls": sysctls(netns, list(links)),
        "nat": nat_rules(netns),
        "nat6": nat_rules(netns, "ip6tables-save"),
    }


def normalise(document, names: dict | None = None):
    """Replace veth names, MACs and CNI chain names by placeholders, consistently within `names`."""
    names = {} if names is None else names

    def placeholder(kind: str, value: str) -> str:
        key = (kind, value)
        if key not in names:
            names[key] = f"<{kind}{sum(1 for k in names if k[0] == kind)}>"
        return names[key]

    def text(value: str) -> str:
        value = _IFINDEX_PEER.sub("", value)
        value = _VETH.sub(lambda m: placeholder("veth", m.group()), value)
        value = _CHAIN.sub(lambda m: placeholder("chain", m.group()), value)
        return _MAC.sub(lambda m: placeholder("mac", m.group()), value)

    def walk(node):
        if isinstance(node, dict):
            return {text(k) if isinstance(k, str) else k: walk(v) for k, v in sorted(node.items(), key=lambda kv: str(kv[0]))}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return text(node) if isinstance(node, str) else node

    return walk(document)
