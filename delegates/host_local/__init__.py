"""The native host-local IPAM plugin (entry point `host-local` in `multipy.ipam`)."""

from .plugin import HostLocal

__all__ = ["HostLocal"]
