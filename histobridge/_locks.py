"""Advisory OS file locks, so two processes never write the same output at once.

A lock is an exclusive ``flock`` (``msvcrt.locking`` on Windows) on a small file that also records
who holds it (pid, host, start time, purpose), so a refused writer can say whom it waited for. The
OS drops the lock when the holder exits or dies, so a crash never leaves a stale lock behind; the
lock file itself stays (deleting it while another process waits on it would split the lock).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from histobridge.errors import HistobridgeError

DEFAULT_WAIT_S = 5.0
_POLL_S = 0.05


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


class FileLock:
    """An exclusive lock on ``path`` for ``what`` (words used in messages, e.g. the store and group).

    Re-acquiring a held lock is an error, not a no-op: one object guards one writer. Separate
    ``FileLock`` objects on one path exclude each other, also between threads of one process.
    """

    def __init__(
        self, path: str | os.PathLike[str], what: str, *, error: type[HistobridgeError] = HistobridgeError
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.error = error
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> str:
        """Who holds (or last held) the lock, as recorded in the lock file; '' when unknown."""
        try:
            raw = self.path.read_bytes()[1:]
            info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (OSError, ValueError):
            return ""
        if not isinstance(info, dict):
            return ""
        since = info.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, float) else "?"
        return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {when}"

    def acquire(self, timeout: float | None = None) -> FileLock:
        """Take the lock, waiting at most ``timeout`` seconds (``DEFAULT_WAIT_S`` when None);
        raise ``error`` naming the holder when it stays taken."""
        timeout = DEFAULT_WAIT_S if timeout is None else timeout
        if self._fd is not None:
            raise self.error(f"{self.what}: lock already held by this writer")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise self.error(
                f"{self.what}: cannot create lock file {self.path}: {describe_oserror(err)}"
            ) from err
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    who = self.holder() or "another process"
                    raise self.error(
                        f"{self.what} is being written by {who} (lock {self.path}); waited {timeout:g} s. "
                        "Let that run finish, or stop it, then run again"
                    )
                time.sleep(_POLL_S)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "what": self.what}
        with contextlib.suppress(OSError):  # the record is informative only; a full disk must not stop us
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, b" " + json.dumps(record).encode("utf-8"))  # byte 0 is the one Windows locks
        return self

    def release(self) -> None:
        """Drop the lock (a no-op when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            _unlock(fd)
        finally:
            os.close(fd)

    def __del__(self) -> None:  # a writer dropped without release() must not hold the lock forever
        with contextlib.suppress(Exception):
            self.release()

    def __enter__(self) -> FileLock:
        return self.acquire() if self._fd is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


@contextlib.contextmanager
def hold(
    path: str | os.PathLike[str],
    what: str,
    *,
    timeout: float | None = None,
    error: type[HistobridgeError] = HistobridgeError,
) -> Iterator[FileLock]:
    """``with hold(lock_file, "project X predictions"):`` — the block runs with the lock held."""
    lock = FileLock(path, what, error=error).acquire(timeout)
    try:
        yield lock
    finally:
        lock.release()


def describe_oserror(err: OSError) -> str:
    """One line for an OS error, with a hint for the ones users can fix (disk full, read-only)."""
    hints = {
        errno.ENOSPC: "no space left on the device; free some space and run again",
        errno.EDQUOT: "disk quota exceeded; free some space and run again",
        errno.EROFS: "the file system is read-only; choose a writable location",
        errno.EACCES: "permission denied; choose a writable location",
        errno.EPERM: "operation not permitted; choose a writable location",
    }
    where = f" ({err.filename})" if err.filename else ""
    return hints.get(err.errno or -1, err.strerror or str(err)) + where


__all__ = ["DEFAULT_WAIT_S", "FileLock", "describe_oserror", "hold"]
