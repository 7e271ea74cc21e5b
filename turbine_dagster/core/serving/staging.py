"""The plumbing of chunked scoring: a read-ahead thread, and Parquet files staged locally then published whole."""

import queue
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from turbine_dagster.core.storage.files import AtomicFile, is_local

T = TypeVar("T")


@dataclass
class _End:
    error: BaseException | None = None


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yields ``items`` while a thread produces the next ``depth`` ones; the producer's errors are raised here."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_End())
        except BaseException as error:  # handed to the consumer, raised there
            put(_End(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="scoring-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        thread.join()


class StagedParquet:
    """A Parquet file written on local disk under a temporary name, one row group per ``write``, then
    published whole at ``target``; nothing touches the target's folder before the first write.

    Each row group is encoded and written on a thread while the caller goes on (pyarrow releases the
    GIL); a write first waits for the previous one, so at most one table is in flight.
    """

    def __init__(self, target: UPath, schema: pa.Schema, **writer_options: Any):
        self.target = target
        self.schema = schema
        self.staging: str | None = None
        self._local: AtomicFile | None = None
        self._writer_options = writer_options
        self._writer: pq.ParquetWriter | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None

    def write(self, table: pa.Table) -> None:
        self._wait()
        if self._writer is None:
            self._open()
        self._in_flight = self._thread.submit(self._writer.write_table, table, row_group_size=max(table.num_rows, 1))

    def publish(self) -> None:
        """Closes the file (one with no rows when nothing was written) and puts it in place in one step."""
        if self._writer is None:
            self._open()
        self._wait()
        self._close()
        if self._local is not None:
            self._local.commit()
        else:
            # One upload: an object store shows the object only once the upload completes.
            self.target.fs.put_file(self.staging, self.target.path)

    def discard(self) -> None:
        """Removes what is left of the staging file; after ``publish`` only the remote case leaves one."""
        try:
            self._wait()
        except Exception:  # noqa: BLE001  the run is failing already; its own error is the one to report
            pass
        self._close()
        if self._local is not None:
            self._local.discard()
        elif self.staging is not None:
            Path(self.staging).unlink(missing_ok=True)

    def _open(self) -> None:
        if is_local(self.target):
            self._local = AtomicFile(self.target.path)
            self.staging = str(self._local.path)
        else:
            self.staging = str(Path(tempfile.gettempdir()) / f"turbine-scoring-{uuid.uuid4().hex}{self.target.suffix}")
        self._writer = pq.ParquetWriter(self.staging, self.schema, **self._writer_options)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring-writer")

    def _wait(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()  # raises the write's error, if any

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None
