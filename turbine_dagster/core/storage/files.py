"""Atomic writes on local folders and object stores alike, and which storage errors are worth a retry.

Locally a file is written under a temporary name in the same folder and renamed into place
(``os.replace`` is atomic on one file system). On object stores a single PUT is atomic: the
object appears whole or not at all.
"""

import errno
import os
import uuid
from pathlib import Path

from upath import UPath

LOCAL_PROTOCOLS = ("", "file", "local")


def is_local(path: UPath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


class AtomicFile:
    """A local file written under a temporary name beside ``target``, then put in its place whole by ``commit``:
    a reader, or a crash, finds the old file or the complete new one, never a part of it.

    As a context manager it commits when the block completes and removes the temporary file when the block fails.
    """

    def __init__(self, target: str | os.PathLike):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        # Beside the target: os.replace is atomic only within one file system. A unique name rather than mkstemp,
        # which would narrow the permissions the umask gives to 0600.
        self.path = self.target.with_name(f".{self.target.name}.tmp-{uuid.uuid4().hex}")

    def commit(self) -> None:
        """Flushes the written file to disk, then renames it onto the target in one step."""
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(self.path, self.target)

    def discard(self) -> None:
        """Removes the temporary file, if it is still there."""
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            if error_type is None:
                self.commit()
        finally:
            self.discard()


def write_bytes_atomic(target: UPath, data: bytes | memoryview) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not is_local(target):
        target.write_bytes(data)
        return
    with AtomicFile(target.path) as staged:
        staged.path.write_bytes(data)


TRANSIENT_ERRNOS = frozenset(
    {
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ECONNREFUSED,
        errno.EAGAIN,
        errno.EBUSY,
        getattr(errno, "EREMOTEIO", errno.EIO),
    }
)
"""s3fs raises OSError with EBUSY for 503 SlowDown/ServiceUnavailable and EREMOTEIO for 500 InternalError."""
TRANSIENT_ERROR_NAMES = frozenset(
    {
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "EndpointConnectionError",
        "ConnectionClosedError",  # botocore
        "ServerTimeoutError",
        "ClientPayloadError",
        "ResponseParserError",
        "IncompleteRead",
        "FSTimeoutError",
    }
)
"""Timeouts and lost connections of the S3 client stack, by name: no client library is imported to tell them."""


def is_transient(error: BaseException) -> bool:
    """Whether a retry may cure ``error`` or the error it was raised from: a timeout (an S3 request, a lock wait),
    a lost or refused connection, a throttled or failing server. Anything else fails the same way again."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (TimeoutError, ConnectionError)) or type(current).__name__ in TRANSIENT_ERROR_NAMES:
            return True
        if isinstance(current, OSError) and current.errno in TRANSIENT_ERRNOS:
            return True
        current = current.__cause__
    return False
