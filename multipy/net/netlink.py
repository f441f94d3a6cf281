"""Netlink access for native plugins; the only module that imports pyroute2.

pyroute2 costs ~150-250 ms to import (it loads every subsystem), so it is
imported on first use, never by merely importing this module. Plugins never see
pyroute2's exception type: every netlink failure surfaces as LinkError, an
OSError with the kernel's errno, so plugins can test `exc.errno == errno.EEXIST`.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from contextlib import contextmanager

from multipy.cni.errors import INVALID_NETNS, CNIError


class NetnsGone(Exception):
    """The namespace path does not exist (any more)."""


class LinkError(OSError):
    """A netlink request the kernel refused; `errno` is the kernel's code."""


class _Route:
    """An IPRoute whose netlink errors are LinkErrors; everything else passes through."""

    def __init__(self, ipr, error_type) -> None:
        self._ipr = ipr
        self._error_type = error_type

    def __getattr__(self, name):
        attr = getattr(self._ipr, name)
        if not callable(attr):
            return attr
        error_type = self._error_type

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except error_type as exc:
                code = getattr(exc, "code", 0) or 0
                raise LinkError(code, os.strerror(code) if code else str(exc)) from None

        return call


class Netlink:
    """Opens rtnetlink sockets in a namespace; one instance is shared per process or daemon."""

    @contextmanager
    def route(self, netns: str | None = None):
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        if netns and not os.path.exists(netns):
            raise NetnsGone(netns)
        try:
            # flags=0: pyroute2 defaults to O_CREAT, which would conjure up a missing namespace.
            ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
        except (FileNotFoundError, NetlinkError, OSError) as exc:
            code = getattr(exc, "code", None) or getattr(exc, "errno", None)
            if code in (errno.ENOENT, errno.EINVAL) or isinstance(exc, FileNotFoundError):
                raise NetnsGone(netns) from exc
            raise CNIError(INVALID_NETNS, f"failed to open netns {netns!r}: {exc}") from exc
        try:
            yield _Route(ipr, NetlinkError)
        finally:
            ipr.close()

    @staticmethod
    def index(ipr, ifname: str) -> int | None:
        found = ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    @staticmethod
    def link(ipr, ifname: str):
        index = Netlink.index(ipr, ifname)
        return ipr.link("get", index=index)[0] if index is not None else None

    @staticmethod
    def set_up(ipr, ifname: str, up: bool = True) -> None:
        index = Netlink.index(ipr, ifname)
        if index is None:
            raise CNIError(INVALID_NETNS, f"link {ifname!r} not found")
        ipr.link("set", index=index, state="up" if up else "down")

    @staticmethod
    def is_up(ipr, ifname: str) -> bool:
        link = Netlink.link(ipr, ifname)
        return link is not None and bool(link["flags"] & 1)  # IFF_UP

    @staticmethod
    def addresses(ipr, ifname: str) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        index = Netlink.index(ipr, ifname)
        if index is None:
            return []
        found = []
        for msg in ipr.get_addr(index=index):
            found.append(ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}"))
        return found


class Namespaces:
    """Named network namespaces under /run/netns (what `ip netns` manages)."""

    @staticmethod
    def create(name: str) -> str:
        from pyroute2 import netns

        netns.create(name)
        return f"/run/netns/{name}"

    @staticmethod
    def remove(name: str) -> None:
        from pyroute2 import netns

        try:
            netns.remove(name)
        except FileNotFoundError:
            pass
