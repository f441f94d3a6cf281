"""macvlan: a macvlan link on a host master, moved into the pod, addressed by its IPAM.

Behaves as containernetworking/plugins main/macvlan (config.py for the keys,
plugin.py for the commands and where it deliberately differs from Debian's 1.1.1).
"""

from .config import SCHEMA_FILE
from .plugin import Macvlan

# The contract's config_schema (multipy/plugins/contract.py): what a macvlan conf is checked against.
Macvlan.config_schema = SCHEMA_FILE

__all__ = ["Macvlan"]
