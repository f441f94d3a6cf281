"""The native host-local IPAM plugin (entry point `host-local` in `multipy.ipam`)."""

from .config import SCHEMA_FILE
from .plugin import HostLocal

# The contract's config_schema (multipy/plugins/contract.py): what an `ipam` object is checked against.
HostLocal.config_schema = SCHEMA_FILE

__all__ = ["HostLocal"]
