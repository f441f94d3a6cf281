"""The CNI_* environment: parsed once, validated per command (SPEC.md "Parameters")."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import INVALID_ENVIRONMENT, CNIError

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

# What each command needs (SPEC.md; Go's skel also wants CNI_PATH for ADD/CHECK/DEL,
# but a DEL without CNI_PATH can still release native state, so we only ask the spec's set).
_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": (),
    "STATUS": (),
    "VERSION": (),
}

# Keys the runtimes we serve put into CNI_ARGS (cni-spec.md, "CNI_ARGS").
KNOWN_ARGS = frozenset(
    {
        "IgnoreUnknown",
        "K8S_POD_NAMESPACE",
        "K8S_POD_NAME",
        "K8S_POD_INFRA_CONTAINER_ID",
        "K8S_POD_UID",
        "IP",
        "MAC",
    }
)


def cni_arg(args: str, key: str, default: str = "") -> str:
    """One value of a CNI_ARGS string (`K1=V1;K2=V2`)."""
    for item in args.split(";"):
        name, sep, value = item.partition("=")
        if sep and name == key:
            return value
    return default


@dataclass(frozen=True)
class Environment:
    """The CNI_* values of one call: the runtime's to multipy, or multipy's to one delegate."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: tuple[str, ...] = ()

    def arg(self, key: str, default: str = "") -> str:
        """One CNI_ARGS value (the pairs were checked when the environment was loaded)."""
        return cni_arg(self.args, key, default)

    def environ(self) -> dict[str, str]:
        return {
            "CNI_COMMAND": self.command,
            "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": self.netns,
            "CNI_IFNAME": self.ifname,
            "CNI_ARGS": self.args,
            "CNI_PATH": ":".join(self.path),
        }


def command_of(environ: os._Environ | dict) -> str:
    """CNI_COMMAND, checked; "" when absent (the caller decides what that means)."""
    command = environ.get("CNI_COMMAND", "")
    if command and command not in COMMANDS:
        raise CNIError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}")
    return command


def load(environ: os._Environ | dict) -> Environment:
    command = command_of(environ)
    if not command:
        raise CNIError(INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing")
    missing = [name for name in _REQUIRED[command] if not environ.get(name)]
    if missing:
        raise CNIError(INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing")
    container_id = environ.get("CNI_CONTAINERID", "")
    if container_id:
        validate_container_id(container_id)
    ifname = environ.get("CNI_IFNAME", "")
    if ifname:
        validate_ifname(ifname, "CNI_IFNAME")
    raw_args = environ.get("CNI_ARGS", "")
    parse_args(raw_args)  # refuse malformed pairs and unknown keys now, not in a delegate
    return Environment(
        command=command,
        container_id=container_id,
        netns=environ.get("CNI_NETNS", ""),
        ifname=ifname,
        args=raw_args,
        path=tuple(p for p in environ.get("CNI_PATH", "").split(":") if p),
    )


def _is_id_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch in "_.-")


def validate_container_id(container_id: str) -> None:
    # ^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$ (pkg/utils): the ID names cache files, so a
    # '/' or a leading '.' could escape the cache directory.
    if not (
        container_id[0].isascii()
        and container_id[0].isalnum()
        and all(_is_id_char(ch) for ch in container_id)
    ):
        raise CNIError(
            INVALID_ENVIRONMENT,
            f"invalid CNI_CONTAINERID {container_id!r}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$",
        )


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def validate_ifname(ifname: str, source: str) -> None:
    """Linux IFNAMSIZ rules (pkg/utils ValidateInterfaceName); `source` names the field."""
    problem = ""
    if not ifname:
        problem = "is empty"
    elif not ifname.isprintable() or not _encodes(ifname):  # e.g. undecodable bytes from the environment
        problem = "must be printable UTF-8"
    elif len(ifname.encode()) > 15:
        problem = "is longer than 15 bytes"
    elif ifname in (".", ".."):
        problem = "may not be '.' or '..'"
    elif any(ch in "/:" or ch.isspace() for ch in ifname):
        problem = "may not contain '/', ':' or whitespace"
    if problem:
        raise CNIError(INVALID_ENVIRONMENT, f"invalid {source} {ifname!r}: interface name {problem}")


def parse_args(raw: str) -> dict[str, str]:
    """CNI_ARGS `K=V;K=V` as Go's types.LoadArgs reads it, unknown keys included."""
    pairs: dict[str, str] = {}
    if not raw:
        return pairs
    for item in raw.split(";"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CNIError(INVALID_ENVIRONMENT, f"invalid CNI_ARGS pair {item!r}: expected KEY=VALUE")
        pairs[key] = value
    ignore_unknown = pairs.get("IgnoreUnknown", "").lower() in ("1", "true")
    if not ignore_unknown:
        unknown = sorted(k for k in pairs if k not in KNOWN_ARGS)
        if unknown:
            raise CNIError(
                INVALID_ENVIRONMENT,
                f"unknown CNI_ARGS key(s) {', '.join(unknown)}: add IgnoreUnknown=1 to pass them through",
            )
    return pairs


def format_args(pairs: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in pairs.items())
