"""Logging as Multus configures it (logFile, logLevel, logToStderr, logOptions), tagged per request,
secrets redacted.

The stdlib `logging` module costs ~12 ms to import, a sixth of a CNI exec, and
with Multus's default level (panic) nothing is ever written. So records go
through `Log`, which imports logging only when a record passes the threshold.

Every line of the file names the container and the pod, continuation lines of a
multi-line record (a delegate's stderr, a traceback) included, so `grep <containerID>`
finds all of a request. Records pass through `redact` on their way out: a delegate's
stderr or an error text may quote a kubeconfig, a request's headers or a key file.

With logOptions the file is rotated (multipy/log_rotation.py); without, it is only appended to,
so an external rotation by rename (logrotate) keeps working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .redact import redact

LEVELS = {"panic": 50, "error": 40, "verbose": 20, "debug": 10}  # logging's CRITICAL..DEBUG
_ERROR, _WARNING, _INFO, _DEBUG = 40, 30, 20, 10

_MB = 1024 * 1024
# Go Multus's values for a logOptions key left out (its SetLogOptions).
_MULTUS_MAX_SIZE_MB, _MULTUS_MAX_BACKUPS, _MULTUS_MAX_AGE_DAYS, _MULTUS_COMPRESS = 100, 5, 5, True
# lumberjack reads maxSize 0 as its default size, and maxBackups 0 as "keep every backup". The
# stdlib's numbered backups need a bound; this one is far above what a node keeps by hand.
_LUMBERJACK_MAX_SIZE_MB = 100
_KEEP_EVERY_BACKUP = 1000


@dataclass(frozen=True)
class Rotation:
    """logOptions: roll logFile over before it passes `max_bytes`, keep `backups` old files
    (`<logFile>.1` newest), drop those older than `max_age_days` (0: never), gzip them if `compress`."""

    max_bytes: int
    backups: int
    max_age_days: int
    compress: bool

    @classmethod
    def from_log_options(cls, options: dict) -> Rotation:
        """Multus's logOptions with its defaults; a value of the wrong type counts as left out, so a
        conf the schema refuses can still log why."""

        def count(key: str, default: int) -> int:
            value = options.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default

        compress = options.get("compress")
        return cls(
            max_bytes=(count("maxSize", _MULTUS_MAX_SIZE_MB) or _LUMBERJACK_MAX_SIZE_MB) * _MB,
            backups=count("maxBackups", _MULTUS_MAX_BACKUPS) or _KEEP_EVERY_BACKUP,
            max_age_days=count("maxAge", _MULTUS_MAX_AGE_DAYS),
            compress=compress if isinstance(compress, bool) else _MULTUS_COMPRESS,
        )


class Settings:
    """Where records go. One per process (or daemon), filled in from the conf."""

    def __init__(self) -> None:
        self.log_file: str | None = None
        self.to_stderr = False
        self.threshold = _ERROR  # without a target, errors still reach stderr
        self.rotation: Rotation | None = None
        self._logger = None

    def configure(self, log_file: str | None, level: str, to_stderr: bool, rotation: Rotation | None = None) -> None:
        self.log_file = log_file
        self.to_stderr = to_stderr
        self.rotation = rotation
        self.threshold = LEVELS.get(level, 50) if (log_file or to_stderr) else _ERROR
        self._logger = None

    def logger(self):
        if self._logger is None:
            self._logger = _build_logger(self.log_file, self.to_stderr, self.threshold, self.rotation)
        return self._logger


def open_private(path: str, mode: str = "a", encoding: str | None = None, errors: str | None = None):
    """A text stream on `path` as open() would give it, but a new file is 0600 whatever the umask,
    (An existing file keeps its mode; a symlink is followed, as Go Multus follows it.)"""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        return open(fd, mode, encoding=encoding, errors=errors)
    except BaseException:
        os.close(fd)
        raise


def _build_logger(log_file: str | None, to_stderr: bool, threshold: int, rotation: Rotation | None):
    import logging

    class TaggedFormatter(logging.Formatter):
        """Each physical line carries the record's time, level, container and pod; secrets are redacted."""

        def format(self, record: logging.LogRecord) -> str:
            body = record.getMessage()
            if record.exc_info:
                body = f"{body}\n{self.formatException(record.exc_info)}"
            if record.stack_info:
                body = f"{body}\n{self.formatStack(record.stack_info)}"
            head = (
                f"{self.formatTime(record)} {record.levelname} "
                f"[{getattr(record, 'container', '-')} {getattr(record, 'pod', '-')}] "
            )
            return "\n".join(head + line for line in (redact(body).splitlines() or [""]))

    class PrivateFileHandler(logging.FileHandler):
        """logFile created 0600: its lines quote requests, and a log is no place for others to read them."""

        def _open(self):
            return open_private(self.baseFilename, self.mode, self.encoding, self.errors)

    logger = logging.getLogger("multipy")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    if log_file:
        try:
            if rotation is None:
                handlers.append(PrivateFileHandler(log_file, mode="a"))  # append, never truncate
            else:
                from .log_rotation import SharedRotatingFileHandler

                handlers.append(SharedRotatingFileHandler(log_file, rotation))
        except (OSError, ValueError):  # ValueError: NUL or a lone surrogate in the path (the schema says which)
            to_stderr = True
    if to_stderr or not handlers:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(TaggedFormatter())
        logger.addHandler(handler)
    logger.setLevel(threshold)
    logger.propagate = False
    return logger


class Log:
    """A request's log: each record carries the container ID and the pod."""

    def __init__(self, settings: Settings, container_id: str = "", pod_namespace: str = "", pod_name: str = ""):
        self.settings = settings
        self.extra = {"container": container_id or "-", "pod": f"{pod_namespace}/{pod_name}" if pod_name else "-"}

    def _emit(self, level: int, msg: str, args: tuple, exc_info: bool = False) -> None:
        if level >= self.settings.threshold:
            self.settings.logger().log(level, msg, *args, exc_info=exc_info, extra=self.extra)

    def debug(self, msg: str, *args) -> None:
        self._emit(_DEBUG, msg, args)

    def info(self, msg: str, *args) -> None:
        self._emit(_INFO, msg, args)

    def warning(self, msg: str, *args) -> None:
        self._emit(_WARNING, msg, args)

    def error(self, msg: str, *args) -> None:
        self._emit(_ERROR, msg, args)

    def exception(self, msg: str, *args) -> None:
        self._emit(_ERROR, msg, args, exc_info=True)
