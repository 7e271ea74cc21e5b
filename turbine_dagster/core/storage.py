"""Atomic writes on local folders and object stores alike.

Locally a file is written under a temporary name in the same folder and renamed into place
(``os.replace`` is atomic on one file system). On object stores a single PUT is atomic: the
object appears whole or not at all.
"""

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
