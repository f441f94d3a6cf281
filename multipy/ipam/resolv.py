"""resolv.conf as DNS settings for a result (host-local's parseResolvConf)."""

from __future__ import annotations

from multipy.cni.result import DNS

from .ranges import invalid


def parse_resolv_conf(text: str) -> DNS:
    """nameserver, domain, search and options lines; comments, blanks and other keys skipped."""
    dns = DNS()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        fields = line.split()
        if len(fields) < 2:
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver":
            dns.nameservers.append(values[0])
        elif key == "domain":
            dns.domain = values[0]
        elif key == "search":
            dns.search.extend(values)
        elif key == "options":
            dns.options.extend(values)
    return dns


def read_resolv_conf(path: str, where: str = "ipam.resolvConf") -> DNS:
    """DNS settings from the file `where` names; the only file this package reads."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_resolv_conf(f.read())
    except OSError as exc:
        raise invalid(where, path, f"cannot be read: {exc.strerror}") from None
