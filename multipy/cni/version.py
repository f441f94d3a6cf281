"""Spec versions: ordering, gates per command and the VERSION reply."""

from __future__ import annotations

from .errors import INCOMPATIBLE_VERSION, CNIError

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]

# The first version in which a command exists (skel's checks).
_COMMAND_SINCE = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        raise CNIError(INCOMPATIBLE_VERSION, f"invalid version {version!r}") from None


def at_least(version: str, minimum: str) -> bool:
    return key(version) >= key(minimum)


def require_supported(version: str, field: str = "cniVersion") -> str:
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"incompatible CNI versions: {field} {version!r} is not one of {', '.join(SUPPORTED_VERSIONS)}",
        )
    return version


def supports_command(version: str, command: str) -> bool:
    since = _COMMAND_SINCE.get(command)
    return since is None or at_least(version, since)


def require_command(version: str, command: str) -> None:
    if not supports_command(version, command):
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"config version {version!r} does not allow {command} (needs {_COMMAND_SINCE[command]} or later)",
        )


def version_reply(requested: str | None) -> dict:
    return {"cniVersion": requested or LATEST, "supportedVersions": list(SUPPORTED_VERSIONS)}
