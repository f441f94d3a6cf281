"""logFile rotation (logOptions) for many short-lived processes appending to one file.

Imported only when a record is written to a rotated logFile: it brings in logging.handlers.

The stdlib's RotatingFileHandler does the rotating (numbered backups, `namer`/`rotator` for gzip).
It assumes it is the file's only writer; here every CNI call is a process of its own, all appending
to the same file. So this handler adds, around each record:

- an exclusive flock on `<logFile>.lock`, held while it checks the size, rolls over and writes: no
  process writes into a file another one is renaming or compressing, and two processes never
  both roll the same file over;
- a check that `logFile` is still the file it has open (the WatchedFileHandler idea): a process
  whose file another one rolled over reopens the new one instead of writing into a backup.

Limits, documented in docs/operations.md: writers that do not take the lock (logrotate, another
program) are not coordinated with; flock does not reach across NFS clients; the lock wait is
bounded (LOCK_WAIT), after which the record is written without the lock and without a rollover,
since a log line is never worth a stuck pod; compressing holds the lock, so other CNI calls wait
for it (up to about a second per 50 MB); maxAge goes by a backup's modification time, which is the
time it was rolled over.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import logging
import os
import shutil
import time
from logging.handlers import RotatingFileHandler

from .log import Rotation, open_private

LOCK_WAIT = 10.0  # seconds a record waits for another process's rollover
_POLL = 0.01
_DAY = 86400
_GZIP_LEVEL = 6  # gzip(1)'s and Go's default; Python's 9 is slower for a few % less


class SharedRotatingFileHandler(RotatingFileHandler):
    def __init__(self, filename: str, rotation: Rotation) -> None:
        super().__init__(filename, mode="a", maxBytes=rotation.max_bytes, backupCount=rotation.backups)
        self.max_age_seconds = rotation.max_age_days * _DAY
        if rotation.compress:
            self.namer = _gzip_name
            self.rotator = _gzip
        self._lock_fd = os.open(f"{self.baseFilename}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _open(self):
        return open_private(self.baseFilename, self.mode, self.encoding, self.errors)  # 0600, as every log file

    def emit(self, record: logging.LogRecord) -> None:
        try:
            with self._file_lock() as locked:
                self._follow_rollover()
                if locked and self.shouldRollover(record):
                    self.doRollover()
                    self._remove_expired()
                logging.FileHandler.emit(self, record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    @contextlib.contextmanager
    def _file_lock(self):
        """Yields whether the lock is held: True, or False after LOCK_WAIT seconds of waiting."""
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(_POLL)
        try:
            yield True
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _follow_rollover(self) -> None:
        """Close the stream when logFile is no longer the file it writes to (another process
        rolled it over); FileHandler.emit then opens the new one."""
        if self.stream is None:
            return
        try:
            current = os.stat(self.baseFilename)
        except FileNotFoundError:
            current = None
        mine = os.fstat(self.stream.fileno())
        if current is None or (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
            self.stream.close()
            self.stream = None

    def _remove_expired(self) -> None:
        if not self.max_age_seconds:
            return
        oldest = time.time() - self.max_age_seconds
        for index in range(1, self.backupCount + 1):
            backup = self.rotation_filename(f"{self.baseFilename}.{index}")
            with contextlib.suppress(FileNotFoundError):
                if os.stat(backup).st_mtime < oldest:
                    os.remove(backup)


def _gzip_name(default_name: str) -> str:
    return f"{default_name}.gz"


def _gzip(source: str, dest: str) -> None:
    """Compress the rolled-over file into dest; a crash midway leaves the source, never half a backup."""
    partial = f"{dest}.partial"
    with open(source, "rb") as plain, open_private(partial, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", compresslevel=_GZIP_LEVEL, fileobj=raw) as packed:
        shutil.copyfileobj(plain, packed)
    os.replace(partial, dest)
    os.remove(source)
