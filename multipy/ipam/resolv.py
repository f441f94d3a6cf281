"""resolv.conf as DNS settings for a result (host-local's parseResolvConf)."""

from __future__ import annotations

from multipy.cni.result import DNS
from multipy.files import read_regular

from .ranges import invalid

MAX_RESOLV_CONF = 64 * 1024


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
    # A regular file of at most 64 KiB (glibc reads far less): `resolvConf: /dev/zero` or a FIFO is
    # refused at once instead of read forever. A symlink is followed: /etc/resolv.conf often is one.
    try:
        data = read_regular(path, MAX_RESOLV_CONF, follow_symlinks=True)
    except (OSError, ValueError) as exc:
        raise invalid(where, path, f"cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_resolv_conf(data.decode("utf-8", "replace"))
