"""Logging as Multus configures it (logFile, logLevel, logToStderr), tagged per request."""

from __future__ import annotations

import logging

LEVELS = {"panic": logging.CRITICAL, "error": logging.ERROR, "verbose": logging.INFO, "debug": logging.DEBUG}
_FORMAT = "%(asctime)s %(levelname)s [%(container)s %(pod)s] %(message)s"


class _RequestAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        kwargs.setdefault("extra", {}).update(self.extra)
        return msg, kwargs


class _Defaults(logging.Filter):
    # Records from libraries, or logged before a request is known, lack our fields.
    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.setdefault("container", "-")
        record.__dict__.setdefault("pod", "-")
        return True


def configure(log_file: str | None, level: str, to_stderr: bool) -> None:
    """Set up the "multipy" logger for this process; without a target, errors go to stderr."""
    logger = logging.getLogger("multipy")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    if log_file:
        try:
            handlers.append(logging.FileHandler(log_file, mode="a", delay=True))  # append, never truncate
        except OSError:
            to_stderr = True
    if to_stderr or not handlers:
        handlers.append(logging.StreamHandler())
    threshold = LEVELS.get(level, logging.CRITICAL) if (log_file or to_stderr) else logging.ERROR
    for handler in handlers:
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.addFilter(_Defaults())
        logger.addHandler(handler)
    logger.setLevel(threshold)
    logger.propagate = False


def for_request(container_id: str, pod_namespace: str = "", pod_name: str = "") -> logging.LoggerAdapter:
    pod = f"{pod_namespace}/{pod_name}" if pod_name else "-"
    return _RequestAdapter(logging.getLogger("multipy"), {"container": container_id or "-", "pod": pod})
