"""The native bridge delegate (containernetworking/plugins main/bridge); entry point `delegates.bridge:Bridge`."""

from .plugin import Bridge

__all__ = ["Bridge"]
