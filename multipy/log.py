"""Logging as Multus configures it (logFile, logLevel, logToStderr), tagged per request, secrets redacted.

The stdlib `logging` module costs ~12 ms to import, a sixth of a CNI exec, and
with Multus's default level (panic) nothing is ever written. So records go
through `Log`, which imports logging only when a record passes the threshold.

Every line of the file names the container and the pod, continuation lines of a
multi-line record (a delegate's stderr, a traceback) included, so `grep <containerID>`
finds all of a request. Records pass through `redact` on their way out: a delegate's
stderr or an error text may quote a kubeconfig, a request's headers or a key file.
"""

from __future__ import annotations

from .redact import redact

LEVELS = {"panic": 50, "error": 40, "verbose": 20, "debug": 10}  # logging's CRITICAL..DEBUG
_ERROR, _WARNING, _INFO, _DEBUG = 40, 30, 20, 10


class Settings:
    """Where records go. One per process (or daemon), filled in from the conf."""

    def __init__(self) -> None:
        self.log_file: str | None = None
        self.to_stderr = False
        self.threshold = _ERROR  # without a target, errors still reach stderr
        self._logger = None

    def configure(self, log_file: str | None, level: str, to_stderr: bool) -> None:
        self.log_file = log_file
        self.to_stderr = to_stderr
        self.threshold = LEVELS.get(level, 50) if (log_file or to_stderr) else _ERROR
        self._logger = None

    def logger(self):
        if self._logger is None:
            self._logger = _build_logger(self.log_file, self.to_stderr, self.threshold)
        return self._logger


def _build_logger(log_file: str | None, to_stderr: bool, threshold: int):
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

    logger = logging.getLogger("multipy")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    if log_file:
        try:
            handlers.append(logging.FileHandler(log_file, mode="a"))  # append, never truncate
        except OSError:
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
