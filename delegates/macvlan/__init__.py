"""macvlan: a macvlan link on a host master, moved into the pod, addressed by its IPAM.

Behaves as containernetworking/plugins main/macvlan (config.py for the keys,
plugin.py for the commands and where it deliberately differs from Debian's 1.1.1).
"""

from .plugin import Macvlan

__all__ = ["Macvlan"]
