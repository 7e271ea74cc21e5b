"""Atomic writes on local folders and object stores alike.

Locally a file is written under a temporary name in the same folder and renamed into place
(``os.replace`` is atomic on one file system). On object stores a single PUT is atomic: the
object appears whole or not at all.
"""

import errno
import os
import uuid

from upath import UPath

LOCAL_PROTOCOLS = ("", "file", "local")


def is_local(path: UPath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


def write_bytes_atomic(target: UPath, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not is_local(target):
        target.write_bytes(data)
        return
    temporary = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(temporary.path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary.path, target.path)
    finally:
        if os.path.exists(temporary.path):
            os.remove(temporary.path)


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
