"""Labeled history read once: each landing file is parsed (``layouts.read_table``) the first time it is needed,
and its cases, with the SHA-256 keys of their case ids, are kept as Parquet in a parse cache, reused while the
file is unchanged.

An entry is keyed by the file's name relative to the landing root and its signature (``landing.file_signature``:
the ETag on object stores, else modification time and size), so a replaced file is parsed again; the parser's
own source is part of the key, so a change to the parsing rules parses every file again. The cache only saves
work: an entry that cannot be read is parsed again, and an entry that cannot be written leaves the cases parsed
and used, and said (``ParseCache.problems``).

    <cache root>/<file's name from the landing root>/<key>.parquet
"""

import hashlib
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from turbine_dagster.core import schema
from turbine_dagster.core.data import cells, landing, layouts
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, TARGET
from turbine_dagster.core.storage import files

HOLDOUT_KEY = "holdout_key"
"""Bytes 0-7 of SHA-256(case id), big-endian: the case is in the holdout when holdout_key / 2**64 is below the
holdout share (``cases.in_holdout``)."""
FOLD_KEY = "fold_key"
"""Bytes 8-15 of the same digest: the case's cross-fitting fold is fold_key mod the number of folds."""
KEY_COLUMNS = (HOLDOUT_KEY, FOLD_KEY)
CASE_COLUMNS = (CASE_ID, *FEATURE_COLUMNS, TARGET)


def case_keys(case_ids: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """``HOLDOUT_KEY`` and ``FOLD_KEY`` (uint64) of each case id: one SHA-256 of the id's UTF-8 text per case. A
    missing id hashes as 'nan', as it always has (its text in a frame)."""
    if isinstance(case_ids, pa.ChunkedArray | pa.Array):
        values = case_ids.to_pylist()
    elif isinstance(case_ids, pd.Series | pd.Index):
        values = case_ids.tolist()
    else:
        values = list(case_ids)
    sha256 = hashlib.sha256
    digests = b"".join(
        [sha256((case if type(case) is str else _id_text(case)).encode()).digest()[:16] for case in values]
    )
    keys = np.frombuffer(digests, dtype=">u8").reshape(-1, 2).astype(np.uint64)
    return np.ascontiguousarray(keys[:, 0]), np.ascontiguousarray(keys[:, 1])


def _id_text(case: object) -> str:
    return "nan" if case is None or (isinstance(case, float) and math.isnan(case)) else str(case)


@dataclass(frozen=True)
class ParsedFile:
    """One labeled landing file's cases in our layout (``CASE_COLUMNS``) with their ``KEY_COLUMNS``."""

    name: str
    """The file's name relative to the landing root, as messages show it."""
    layout: str
    """The layout it came in (``layouts.LAYOUTS``)."""
    table: pa.Table


def _parser_version() -> str:
    """A hash of the source of what turns a landing file into a parsed table (this module included), and of the
    Arrow version that reads it."""
    digest = hashlib.sha256(f"pyarrow {pa.__version__}\n".encode())
    for module in (schema, cells, layouts, landing):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


PARSER_VERSION = _parser_version()
_META = {
    "name": b"turbine.source_file",
    "landing_root": b"turbine.landing_root",
    "signature": b"turbine.signature",
    "parser": b"turbine.parser",
    "layout": b"turbine.layout",
}


@dataclass
class ParseCache:
    """Parsed labeled files under ``root`` (a folder or an ``s3://`` URI), and what happened to them in this load:
    files reused, files parsed, and problems met (entries unreadable or not written), one sentence each."""

    root: UPath
    reused: list[str] = field(default_factory=list)
    parsed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def entry(self, name: str, signature: str) -> UPath:
        key = hashlib.sha256(f"{signature}\n{PARSER_VERSION}".encode()).hexdigest()[:24]
        return self.root.joinpath(*name.split("/")) / f"{key}.parquet"

    def _expected(self, name: str, signature: str, landing_root: UPath) -> dict[bytes, bytes]:
        values = {"name": name, "landing_root": str(landing_root), "signature": signature, "parser": PARSER_VERSION}
        return {_META[key]: value.encode() for key, value in values.items()}

    def load(
        self, name: str, signature: str, landing_root: UPath, columns: list[str] | None = None
    ) -> tuple[pa.Table, str] | None:
        """The cached table of the file (only ``columns`` when given) and its layout; None when there is no usable
        entry (none, another file's, unreadable: the last named in ``problems``)."""
        path = self.entry(name, signature)
        try:
            with path.open("rb") as handle:
                parquet = pq.ParquetFile(handle)
                metadata = parquet.schema_arrow.metadata or {}
                expected = self._expected(name, signature, landing_root)
                if any(metadata.get(key) != value for key, value in expected.items()):
                    return None  # another landing root's file of the same name, or a hash collision: parse it
                table = parquet.read(columns=columns)
            _check_entry(table, columns)
            layout = metadata[_META["layout"]].decode()
        except FileNotFoundError:
            return None
        except Exception as error:  # an entry is only a copy: parse the file again
            self.problems.append(f"parse cache entry {path} of {name} is unreadable ({_words(error)}): parsed again")
            return None
        return table, layout

    def store(self, parsed: ParsedFile, signature: str, landing_root: UPath) -> None:
        """Keeps ``parsed`` for later loads (an atomic write) and drops the entries of the file's older versions; a
        failure is named in ``problems`` and leaves the parsed cases in use."""
        path = self.entry(parsed.name, signature)
        metadata = {**(parsed.table.schema.metadata or {}), **self._expected(parsed.name, signature, landing_root)}
        metadata[_META["layout"]] = parsed.layout.encode()
        try:
            buffer = io.BytesIO()
            pq.write_table(parsed.table.replace_schema_metadata(metadata), buffer)
            files.write_bytes_atomic(path, buffer.getbuffer())
        except Exception as error:
            self.problems.append(
                f"could not write parse cache entry {path} of {parsed.name} ({_words(error)}); its cases were parsed "
                "and are used, and it will be parsed again next time"
            )
            return
        try:
            for older in path.parent.iterdir():
                if older.name != path.name and older.suffix == ".parquet" and not older.name.startswith("."):
                    older.unlink()
        except Exception:  # a stale entry left behind is never read: its key names another signature
            pass


def _check_entry(table: pa.Table, columns: list[str] | None) -> None:
    expected = list(columns) if columns is not None else [*CASE_COLUMNS, *KEY_COLUMNS]
    if table.column_names != expected:
        raise ValueError(f"columns {table.column_names[:3]}... are not {expected[:3]}...")
    for name in table.column_names:
        kind = table.schema.field(name).type
        allowed = (
            pa.types.is_string(kind)
            if name == CASE_ID
            else pa.types.is_uint64(kind)
            if name in KEY_COLUMNS
            else pa.types.is_string(kind) or pa.types.is_float64(kind) or (name == TARGET and pa.types.is_int64(kind))
        )
        if not allowed:
            raise ValueError(f"column '{name}' is {kind}")


def _words(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 200 else text[:200] + " ..."


def _signature(path: UPath) -> str | None:
    try:
        return landing.file_signature(path)
    except Exception:  # the read that follows names the file and what is wrong with it
        return None


def parse(path: UPath, root: UPath, cache: ParseCache | None = None) -> ParsedFile:
    """One labeled landing file's cases with their keys: from the cache while the file's signature is the one
    cached, else parsed (and cached). The signature is taken before the file is read, so a file replaced
    meanwhile is cached under its old signature and parsed again next time."""
    name = landing.relative_name(path, root)
    signature = _signature(path) if cache is not None else None
    if cache is not None and signature is not None:
        cached = cache.load(name, signature, root)
        if cached is not None:
            cache.reused.append(name)
            return ParsedFile(name, cached[1], cached[0])
    table, layout = layouts.read_table(path, root, landing.LABELED)
    holdout, fold = case_keys(table.column(CASE_ID))
    parsed = ParsedFile(
        name, layout.name, table.append_column(HOLDOUT_KEY, pa.array(holdout)).append_column(FOLD_KEY, pa.array(fold))
    )
    if cache is not None:
        cache.parsed.append(name)
        if signature is not None:
            cache.store(parsed, signature, root)
    return parsed


def labels(path: UPath, root: UPath, cache: ParseCache | None = None) -> pa.Table:
    """``case_id`` and ``target`` of one labeled landing file: the cached entry's two columns while the file is
    unchanged, else only the file's columns they come from (nothing is cached then)."""
    if cache is not None and (signature := _signature(path)) is not None:
        cached = cache.load(landing.relative_name(path, root), signature, root, columns=[CASE_ID, TARGET])
        if cached is not None:
            cache.reused.append(landing.relative_name(path, root))
            return cached[0]
    return layouts.read_labels(path, root)


def common_type(types: Iterable[pa.DataType]) -> pa.DataType:
    """The type one column takes across files: text if any file holds text in it, else float64 if any holds
    float64, else int64 (whole labels everywhere)."""
    types = list(types)
    if any(pa.types.is_string(kind) for kind in types):
        return pa.string()
    if any(pa.types.is_floating(kind) for kind in types):
        return pa.float64()
    return types[0] if types else pa.float64()


def as_type(values: pa.ChunkedArray | pa.Array, kind: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """``values`` as ``kind`` (``common_type``): numbers as text are written as Python writes them, NaN as a
    missing value, so a column that holds text in one file reads as it always has."""
    if values.type == kind:
        return values
    if pa.types.is_string(kind):
        return pa.array(
            [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values.to_pylist()],
            pa.string(),
        )
    return values.cast(kind)
