"""The native bridge delegate (containernetworking/plugins main/bridge); entry point `delegates.bridge:Bridge`."""

from .config import SCHEMA_FILE
from .plugin import Bridge

# The contract's config_schema (multipy/plugins/contract.py): what a bridge conf is checked against.
Bridge.config_schema = SCHEMA_FILE

__all__ = ["Bridge"]
