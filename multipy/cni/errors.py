"""CNI error codes and the one exception type that carries them to stdout."""

from __future__ import annotations

# Spec codes (SPEC.md "Error codes"); 0-99 are reserved by the spec.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
INVALID_NETNS = 8  # Go's pkg/types, not in the spec text
TRY_AGAIN_LATER = 11
STATUS_UNAVAILABLE = 50
STATUS_UNAVAILABLE_EXISTING_AFFECTED = 51

# multipy's own codes (100+ are free for plugins).
DELEGATE_NOT_FOUND = 100  # no native plugin and no binary for a type
DELEGATE_TIMEOUT = 101  # a delegate binary ran past its deadline
DELEGATE_BAD_OUTPUT = 102  # a delegate printed something that is not CNI JSON
NO_ATTACHMENT_RECORD = 103  # CHECK found no record of the ADD it is to check

# Anything unexpected: Go reports plain errors as 999 too.
INTERNAL = 999


class CNIError(Exception):
    """An error the runtime is meant to see: `code`, `msg`, `details`."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str | None = None) -> dict:
        out: dict = {}
        if cni_version:
            out["cniVersion"] = cni_version
        out["code"] = self.code
        out["msg"] = self.msg
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"CNIError({self.code}, {self.msg!r}, {self.details!r})"
