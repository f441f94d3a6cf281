"""The daemon's settings: its config file (--config daemon.json) under its command-line options.

The file is re-read when its mtime changes (the main loop looks every second). What a running
daemon can take at once (requestTimeout, drainTimeout, fallback, the autoConf keys) applies to the
next request (to the next second for autoConf); a changed socket, address, pool size or cluster
takes a restart, and the log says so.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import dataclass, field, fields, replace

from multipy.cni.errors import DECODE_FAILURE, INVALID_NETWORK_CONFIG, CNIError
from multipy.config import auto, confdir
from multipy.log import LEVELS

DEFAULT_SOCKET_DIR = "/run/multipy"
SOCKET_NAME = "multipy.sock"


@dataclass(frozen=True)
class Settings:
    socket_dir: str = DEFAULT_SOCKET_DIR
    metrics_address: str = ""  # host:port on loopback for kubelet's probes and Prometheus; "" = none
    workers: int = 8
    # Of the workers, how many run ADD or CHECK at once: their native delegates are CPU work, which one
    # Python process runs on one core at a time, so more at once only adds GIL switching. DEL keeps every
    # worker: its time is the kernel's, tearing links down (~20-30 ms each for RCU), without the GIL.
    add_workers: int = 3
    queue: int = 256
    drain_timeout: float = 30.0
    request_timeout: float = 120.0
    kubeconfig: str = ""  # "" = no API caches (requests still use their conf's kubeconfig)
    node_name: str = ""
    fallback: bool = True  # advertised on /readyz for the shim: may an ADD fall back to thin mode
    sync_timeout: float = 20.0  # /readyz waits this long for the caches, then reports ready anyway
    log_level: str = "error"
    # autoConf (Multus's "multusConfigFile": "auto"): the daemon writes the node's CNI conf, made from
    # the node's primary conf, and makes it again when that changes (autoconf.py).
    auto_conf: bool = False
    cni_config_dir: str = "/etc/cni/net.d"  # the node's conf dir, as the daemon sees it
    auto_conf_name: str = auto.DEFAULT_FILE_NAME
    auto_conf_primary: str = ""  # the primary's file name; "" = the first in libcni's order
    auto_conf_options: dict = field(default_factory=dict)  # top-level keys of the made conf

    @property
    def socket_path(self) -> str:
        return os.path.join(self.socket_dir, SOCKET_NAME)


# The file's keys (camelCase, as the CNI conf's) and the field each sets.
KEYS = {
    "socketDir": "socket_dir", "metricsAddress": "metrics_address", "workers": "workers",
    "addWorkers": "add_workers", "queue": "queue",
    "drainTimeout": "drain_timeout", "requestTimeout": "request_timeout", "kubeconfig": "kubeconfig",
    "nodeName": "node_name", "fallback": "fallback", "syncTimeout": "sync_timeout", "logLevel": "log_level",
    "autoConf": "auto_conf", "cniConfigDir": "cni_config_dir", "autoConfName": "auto_conf_name",
    "autoConfPrimary": "auto_conf_primary", "autoConfOptions": "auto_conf_options",
}  # fmt: skip
RELOADABLE = frozenset({"drain_timeout", "request_timeout", "fallback", "log_level", "auto_conf", "cni_config_dir",
                        "auto_conf_name", "auto_conf_primary", "auto_conf_options"})  # fmt: skip
_TYPES = {f.name: f.type for f in fields(Settings)}


def _checked(key: str, value):
    name = KEYS[key]
    kind = _TYPES[name]
    if kind == "bool":
        if not isinstance(value, bool):
            raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key} {value!r} is not a boolean")
        return value
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key} {value!r} is not a positive number")
        if kind == "int" and value != int(value):
            raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key} {value!r} is not a whole number")
        return int(value) if kind == "int" else float(value)
    if kind == "dict":
        return _auto_conf_options(key, value)
    if not isinstance(value, str):
        raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key} {value!r} is not a string")
    if name == "metrics_address" and value:
        loopback_address(value, key)
    if name == "log_level" and value not in LEVELS:
        raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key} {value!r} is not one of {', '.join(LEVELS)}")
    if name in ("socket_dir", "cni_config_dir") and not os.path.isabs(value):
        raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key} {value!r} is not an absolute path")
    if name == "auto_conf_name" and ("/" in value or value.startswith(".") or not value.endswith((".conf", ".json"))):
        raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key} {value!r} is not a conf file name "
                       "(NAME.conf or NAME.json, no '/', no leading dot)")  # fmt: skip
    if name == "auto_conf_primary" and value and ("/" in value or not value.endswith(confdir.EXTENSIONS)):
        raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key} {value!r} is not a conf file name "
                       f"({', '.join(confdir.EXTENSIONS)}, no '/')")  # fmt: skip
    return value


def _auto_conf_options(key: str, value) -> dict:
    if not isinstance(value, dict):
        raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key} {value!r} is not an object")
    for option in value:
        problem = auto.option_problem(option)
        if problem:
            raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key}.{option}: {problem}")
    return dict(value)


def loopback_address(text: str, key: str = "metricsAddress") -> tuple[str, int]:
    """host:port of a loopback address ([::1]:port for IPv6): probes come from the node itself."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
        if not sep or not 0 < number < 65536 or not ipaddress.ip_address(host).is_loopback:
            raise ValueError
    except ValueError:
        raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: {key} {text!r} is not a loopback host:port "
                       "(e.g. 127.0.0.1:9091)") from None  # fmt: skip
    return host, number


def from_document(doc: dict, base: Settings | None = None) -> Settings:
    """`base` with the keys of `doc` (a daemon.json); unknown keys are refused, naming them."""
    if not isinstance(doc, dict):
        raise CNIError(DECODE_FAILURE, "daemon config: expected a JSON object")
    unknown = sorted(set(doc) - set(KEYS))
    if unknown:
        raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config: unknown key(s) {', '.join(unknown)} "
                       f"(known: {', '.join(sorted(KEYS))})")  # fmt: skip
    return replace(base or Settings(), **{KEYS[k]: _checked(k, v) for k, v in doc.items()})


def read_file(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read() or b"{}")
    except OSError as exc:
        raise CNIError(INVALID_NETWORK_CONFIG, f"daemon config {path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise CNIError(DECODE_FAILURE, f"daemon config {path}: not JSON: {exc}") from None


def node_name(given: str = "") -> str:
    return given or os.environ.get("NODE_NAME") or socket.gethostname()


class Source:
    """The settings from the config file (when there is one) under the command line's, re-read on change."""

    def __init__(self, path: str | None, overrides: dict) -> None:
        self.path = path
        self.overrides = {k: v for k, v in overrides.items() if v is not None}  # file keys as given on the command line
        self._stamp = self._mtime()
        self.current = self._build()

    def _mtime(self) -> int | None:
        try:
            return os.stat(self.path).st_mtime_ns if self.path else None
        except OSError:
            return None

    def _build(self) -> Settings:
        doc = read_file(self.path) if self.path else {}
        merged = {**doc, **self.overrides}
        if isinstance(doc.get("autoConfOptions"), dict) and "autoConfOptions" in self.overrides:
            merged["autoConfOptions"] = {**doc["autoConfOptions"], **self.overrides["autoConfOptions"]}  # key by key
        settings = from_document(merged)
        return replace(settings, node_name=node_name(settings.node_name))

    def reload(self) -> tuple[Settings, list[str]] | None:
        """New settings when the file changed (and which changed fields wait for a restart); None otherwise.
        A broken file raises CNIError and the current settings stay."""
        stamp = self._mtime()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        fresh = self._build()
        pending = [f.name for f in fields(Settings)
                   if f.name not in RELOADABLE and getattr(fresh, f.name) != getattr(self.current, f.name)]  # fmt: skip
        # Only what applies at once changes; the rest would describe a daemon that is not running.
        self.current = replace(self.current, **{name: getattr(fresh, name) for name in RELOADABLE})
        return self.current, pending
