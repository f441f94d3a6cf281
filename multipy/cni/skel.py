"""The entry skeleton: environment and stdin in, one JSON document and an exit code out.

This is the only place that turns exceptions into CNI errors and picks the
exit code, so every command prints exactly one document (or nothing) on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from multipy.log import Log, Settings

from . import env as cni_env
from .errors import DECODE_FAILURE, INTERNAL, CNIError
from .version import LATEST, require_command, require_supported, version_reply

if TYPE_CHECKING:
    from .result import Result


@dataclass(frozen=True)
class Request:
    """One invocation: the validated environment and the config from stdin."""

    env: cni_env.Environment
    raw_config: bytes
    config: dict
    cni_version: str


class Handler(Protocol):
    def add(self, request: Request) -> Result: ...
    def delete(self, request: Request) -> None: ...
    def check(self, request: Request) -> None: ...
    def gc(self, request: Request) -> None: ...
    def status(self, request: Request) -> None: ...


_METHODS = {"ADD": "add", "DEL": "delete", "CHECK": "check", "GC": "gc", "STATUS": "status"}


MAX_DEPTH = 64  # nesting of the conf on stdin; nothing a runtime or an operator writes comes near


def _too_deep(doc, limit: int = MAX_DEPTH) -> bool:
    """Whether `doc` nests more than `limit` arrays/objects (iterative: no recursion to exhaust)."""
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_config(raw: bytes) -> dict:
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CNIError(DECODE_FAILURE, f"error parsing network configuration: {exc}") from None
    except RecursionError:
        raise CNIError(DECODE_FAILURE, f"error parsing network configuration: nested deeper than {MAX_DEPTH} "
                       "levels") from None  # fmt: skip
    if _too_deep(config):
        raise CNIError(DECODE_FAILURE, f"error parsing network configuration: nested deeper than {MAX_DEPTH} levels")
    if not isinstance(config, dict):
        raise CNIError(DECODE_FAILURE, "error parsing network configuration: expected a JSON object")
    return config


def _requested_version(raw: bytes) -> str | None:
    # VERSION's stdin is only advisory: libcni may send nothing at all.
    try:
        version = json.loads(raw).get("cniVersion")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    return version if isinstance(version, str) else None


def emit(stream, document: dict) -> None:
    # Go prints 4-space indented JSON with no trailing newline; parsers accept either.
    stream.write(json.dumps(document, indent=4))
    stream.flush()


def run(
    make_handler: Callable[[Request, Log], Handler],
    environ=None,
    stdin=None,
    stdout=None,
    about: str = "",
    log_settings: Settings | None = None,
) -> int:
    """Serve one CNI invocation of this process; returns the process exit code.

    make_handler(request, log) builds the handler; `log` is this request's log,
    whose settings the handler may point at the conf's logFile.
    """
    environ = environ if environ is not None else os.environ
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout
    try:
        command = cni_env.command_of(environ)
    except CNIError:
        command = "?"  # serve() reports it as the error document
    if not command:
        # Like Go plugins: no command means a human ran us; say what we are.
        sys.stderr.write(about + "\n")
        return 0
    code, document = serve(make_handler, environ, stdin.read(), log_settings)
    if document is not None:
        emit(stdout, document)
    return code


def serve(
    make_handler: Callable[[Request, Log], Handler],
    environ,
    raw: bytes,
    log_settings: Settings | None = None,
) -> tuple[int, dict | None]:
    """One CNI request, from its environment and stdin bytes to (exit code, stdout document or None).

    The process entry (run) and the daemon both come here, so one place maps exceptions to CNI codes.
    """
    settings = log_settings or Settings()
    log = Log(settings)
    cni_version: str | None = None
    try:
        command = cni_env.command_of(environ)
        if command == "VERSION":
            return 0, version_reply(_requested_version(raw))
        environment = cni_env.load(environ)
        log = Log(
            settings,
            environment.container_id,
            environment.arg("K8S_POD_NAMESPACE"),
            environment.arg("K8S_POD_NAME"),
        )
        config = decode_config(raw)
        declared = config.get("cniVersion", "")
        if not isinstance(declared, str):
            raise CNIError(DECODE_FAILURE, f"error parsing network configuration: cniVersion {declared!r} is not a string")
        # libcni reads a missing version as 0.1.0; an unsupported one is not echoed back.
        try:
            cni_version = require_supported(declared or "0.1.0")
        except CNIError:
            if command != "DEL":
                raise
            # DEL has no result to version, and refusing it would strand a pod whose ADD was
            # refused for this very reason: the handler decides from what was recorded.
            log.warning("DEL with unsupported cniVersion %r: deleting what was recorded", declared)
        require_command(cni_version or LATEST, command)
        request = Request(environment, raw, config, cni_version or LATEST)
        handler = make_handler(request, log)
        result = getattr(handler, _METHODS[command])(request)
        return 0, (result.to_json(cni_version) if command == "ADD" else None)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: report, never crash
        return 1, failure(exc, log, environ.get("CNI_COMMAND", "?"), cni_version)


def failure(exc: Exception, log: Log, what: str, cni_version: str | None = None) -> dict:
    """The CNI error document for `exc`: a CNIError keeps its code, anything else is 999 with its traceback logged."""
    from multipy.redact import redact  # kubelet shows msg and details in pod events: no credential there

    if isinstance(exc, CNIError):
        log.error("%s failed: code %d: %s", what, exc.code, exc.msg)
        return CNIError(exc.code, redact(exc.msg), redact(exc.details)).to_json(cni_version)
    log.exception("unexpected internal error")
    return CNIError(INTERNAL, redact(f"internal error: {type(exc).__name__}: {exc}")).to_json(cni_version)
