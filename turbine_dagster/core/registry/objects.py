"""The registry's objects in its store, local folders or S3: JSON objects, exclusive
creates, conditional replaces (S3), and the per-team lock that serialises pointer moves."""

import datetime as dt
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import filelock
import numpy as np
from upath import UPath

from turbine_dagster.core.storage.files import is_local, write_bytes_atomic

_S3_PROTOCOLS = ("s3", "s3a")
_LOST_CONDITIONAL_WRITE = {"PreconditionFailed": 412, "ConditionalRequestConflict": 409}

_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


class ConditionalWriteLost(Exception):
    """A conditional write lost to another writer: the object changed since it was read."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def json_bytes(payload: Mapping[str, Any]) -> bytes:
    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"{type(value).__qualname__} is not JSON-serialisable; registry entries hold plain values")

    return json.dumps(payload, indent=2, sort_keys=True, default=plain).encode()


def read_json(path: UPath) -> dict[str, Any]:
    return json.loads(path.read_bytes())


def create_exclusive(path: UPath, data: bytes) -> None:
    """Write ``data`` only if ``path`` does not exist yet; FileExistsError otherwise."""
    if is_local(path):
        os.makedirs(os.path.dirname(path.path), exist_ok=True)
        with open(path.path, "xb") as handle:
            handle.write(data)
    else:
        path.fs.pipe_file(path.path, data, mode="create")


def read_with_etag(path: UPath) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object at ``path`` (None if there is none) and, on S3, the ETag a conditional replace must match."""
    etag = None
    try:
        if path.protocol in _S3_PROTOCOLS:
            path.fs.invalidate_cache(path.path)
            etag = path.fs.info(path.path)["ETag"]  # read before the body: a stale ETag fails safe
            # A plain GET: opening the file would check the ETag and fail if a writer replaced it meanwhile.
            return json.loads(path.fs.cat_file(path.path)), etag
        return read_json(path), etag
    except FileNotFoundError:
        return None, None


def replace_if_unchanged(path: UPath, data: bytes, etag: str | None) -> None:
    """Write ``path``; on S3 only over the object read with ``etag`` (None: only if there is none).

    Elsewhere the write is unconditional: the caller holds the team lock. ConditionalWriteLost when S3
    refuses the write because another writer came first.
    """
    if path.protocol not in _S3_PROTOCOLS:
        write_bytes_atomic(path, data)
        return
    try:
        if etag is None:
            path.fs.pipe_file(path.path, data, mode="create")
        else:
            path.fs.pipe_file(path.path, data, IfMatch=etag)
    except FileExistsError:
        raise ConditionalWriteLost from None
    except OSError as error:
        if _is_lost_conditional_write(error):
            raise ConditionalWriteLost from None
        raise


def _is_lost_conditional_write(error: OSError) -> bool:
    """412 (the object changed since it was read) or 409 (S3 was completing another conditional write on it)."""
    response = getattr(error.__cause__, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _LOST_CONDITIONAL_WRITE or status in _LOST_CONDITIONAL_WRITE.values()


def remove_quietly(path: UPath) -> None:
    """Remove ``path`` if it can be; one left behind is harmless to readers."""
    try:
        path.fs.rm_file(path.path)
    except OSError:
        pass


@contextmanager
def team_lock(team_dir: UPath, team: str, timeout_s: float) -> Iterator[None]:
    """Hold the lock of ``team``: in-process always; across processes by ``<team_dir>.lock`` on local roots.

    Remote roots get the in-process lock only: their writers rely on conditional writes instead.
    """
    key = str(team_dir)
    with _process_locks_guard:
        process_lock = _process_locks.setdefault(key, threading.Lock())
    if not process_lock.acquire(timeout=timeout_s):
        raise TimeoutError(f"another thread held the registry lock of team {team!r} for over {timeout_s} s")
    try:
        if not is_local(team_dir):
            yield
            return
        lock_path = f"{team_dir.path}.lock"
        os.makedirs(os.path.dirname(team_dir.path), exist_ok=True)
        try:
            with filelock.FileLock(lock_path, timeout=timeout_s):
                yield
        except filelock.Timeout:
            raise TimeoutError(
                f"could not lock {lock_path} within {timeout_s} s: another process is promoting or "
                f"rolling back team {team!r}; retry when it has finished"
            ) from None
    finally:
        process_lock.release()
