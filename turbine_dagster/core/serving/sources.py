"""Reading a partition's files for scoring: one source per file, batches validated by the data rules, and
the clean rows regrouped into chunks of a fixed size.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from upath import UPath

from turbine_dagster.core.data import cells, landing, layouts
from turbine_dagster.core.data.cases import row_problems, unusually_large_cells, usable
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS
from turbine_dagster.core.serving.columns import QUARANTINE_SCHEMA
from turbine_dagster.core.storage.files import is_local

MISSING_CASE_ID = f"'{CASE_ID}' is missing"
CSV_BLOCK_BYTES = 2 << 20
"""CSV bytes parsed per block, ~4k rows. The CSV reader reads a fixed number of blocks ahead of a slow
consumer (measured with pyarrow 26: ~35), so this size sets the reader's memory: ~70 MiB at 2 MiB."""

_PARQUET_FORMAT = ds.ParquetFileFormat(
    # Pre-buffering keeps the raw bytes of row groups not yet decoded: measured with pyarrow 26, the reader's
    # memory then grows with the file (~0.9 GiB for 3 M rows) instead of staying at about one row group.
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False)
)
SCAN_BATCH_ROWS = 32_768
"""Rows read and validated at a time (or ``chunk_rows`` when smaller); clean rows are regrouped into chunks of
``chunk_rows``. Small enough that a batch of bad rows, held as text for the quarantine, stays small."""
QUARANTINE_BLOCK_ROWS = 32_768
"""Quarantined rows are handed on and written once this many (or ``chunk_rows`` when smaller) have gathered:
what a week of bad rows holds in memory at a time, whatever their share."""
UNUSUAL_EXAMPLES = 10
"""Case ids of rows with unusually large values kept as examples for the metadata."""


@dataclass
class Source:
    """One landing file to score: its name relative to the landing root, its recognised layout, its reader."""

    path: UPath
    name: str
    layout: layouts.Layout
    dataset: ds.Dataset

    @classmethod
    def open(cls, path: UPath, root: UPath) -> "Source":
        name = landing.relative_name(path, root)
        suffix = path.suffix.lower()
        if suffix not in landing.SUPPORTED_SUFFIXES:
            raise landing.LandingError(
                f"{name} is not a CSV or Parquet file; only {', '.join(landing.SUPPORTED_SUFFIXES)} files can be scored"
            )
        layout = layouts.recognise(path, root, landing.SCORING)  # names the file and what is missing or ambiguous
        filesystem = None if is_local(path) else path.fs
        try:
            file_format = _PARQUET_FORMAT if suffix == ".parquet" else _csv_format(layout)
            dataset = ds.dataset(path.path, format=file_format, filesystem=filesystem)
        except Exception as error:  # the reader's own words, with the file named
            raise landing.LandingError(f"cannot read {name}: {_reader_words(error)}") from error
        _check_feature_types(dataset.schema, layout, name)
        return cls(path, name, layout, dataset)

    def batches(self, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """The file's rows in batches of at most ``batch_rows``, in our columns (``case_id`` and the features).
        A Parquet file is scanned one row group at a time: a scan runs ahead of a slow consumer, and one row
        group is as far as it can run then."""
        options = {"columns": self.layout.read_columns, "batch_size": batch_rows, "batch_readahead": 1}
        try:
            if self.path.suffix.lower() != ".parquet":
                scanned = self.dataset.to_batches(fragment_readahead=1, **options)
            else:
                scanned = (
                    batch
                    for fragment in self.dataset.get_fragments()
                    for row_group in fragment.split_by_row_group()
                    for batch in row_group.to_batches(**options)
                )
            for batch in scanned:
                yield self.layout.to_internal(batch, self.name)
        except landing.LandingError:
            raise
        except Exception as error:
            raise landing.LandingError(f"cannot read {self.name}: {_reader_words(error)}") from error


def _reader_words(error: Exception) -> str:
    """The reader's message, cut short: Arrow may quote whole columns of data in it."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return first_line if len(first_line) <= 300 else first_line[:300] + " ..."


def _check_feature_types(schema: pa.Schema, layout: layouts.Layout, name: str) -> None:
    for column, source in zip(FEATURE_COLUMNS, layout.features, strict=True):
        kind = schema.field(source).type
        kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        if not (_is_numeric(kind) or _is_text(kind) or pa.types.is_null(kind)):
            shown = f"'{source}'" + (f" ('{column}')" if source != column else "")
            raise landing.LandingError(
                f"column {shown} in {name} holds {kind} values; feature columns must hold numbers "
                "(or text that reads as numbers)"
            )


def _csv_format(layout: layouts.Layout) -> ds.CsvFileFormat:
    """Every cell as text: a word in a number column must reach the quarantine, not stop the parser. The
    usual missing-value markers ('', NA, NaN, null, ...) read as null, as pandas reads them. Column names
    are the layout's (the header is skipped, or absent in UCI's file). Only the scored columns are
    converted: the scan's projection sees to that (``include_columns`` would clash with it)."""
    return ds.CsvFileFormat(
        read_options=layouts.csv_read_options(layout, block_size=CSV_BLOCK_BYTES),
        convert_options=layouts.csv_convert_options(layout),
    )


def _is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


@dataclass
class UnusualValues:
    """Clean rows with unusually large values, counted since the last chunk (or over the run)."""

    rows: int = 0
    by_feature: np.ndarray = field(default_factory=lambda: np.zeros(len(FEATURE_COLUMNS), dtype=np.int64))
    examples: list[str] = field(default_factory=list)

    def add(self, other: "UnusualValues") -> None:
        self.rows += other.rows
        self.by_feature += other.by_feature
        self.examples += other.examples[: UNUSUAL_EXAMPLES - len(self.examples)]


@dataclass
class CleanRows:
    """Clean rows ready to score."""

    case_ids: pa.Array
    columns: np.ndarray
    """float32 of shape (features, rows): one row per feature column, in FEATURE_COLUMNS order."""

    def __len__(self) -> int:
        return len(self.case_ids)


def validate_batch(
    batch: pa.RecordBatch, source: str, first_row: int
) -> tuple[CleanRows, pa.Table | None, UnusualValues]:
    """Splits a batch (our columns) into clean rows and quarantined rows (QUARANTINE_SCHEMA), by ``row_problems``'
    rules, and counts the clean rows holding unusually large values.

    A row is clean when every feature reads as a usable number (``cases.usable``: finite, within float32, not
    negative) and it has a case id. That is checked here on all rows at once; ``row_problems`` then words the
    reasons for the few rows that failed.
    """
    rows = batch.num_rows
    by_column = np.empty((len(FEATURE_COLUMNS), rows), dtype=np.float32)
    clean = np.ones(rows, dtype=bool)
    unusual_cells = np.zeros((len(FEATURE_COLUMNS), rows), dtype=bool)
    for index, column in enumerate(FEATURE_COLUMNS):
        values = cells.to_float64(batch.column(column))
        clean &= usable(values)  # on float64, before the cast: 1e300 is finite there and inf in float32
        unusual_cells[index] = unusually_large_cells(values, column)
        with np.errstate(over="ignore", invalid="ignore"):
            by_column[index] = values
    case_ids = pc.cast(batch.column(CASE_ID), pa.string())
    if case_ids.null_count:
        clean &= case_ids.is_valid().to_numpy(zero_copy_only=False)
    unusual = UnusualValues()
    unusual_cells &= clean
    unusual_rows = unusual_cells.any(axis=0)
    if unusual_rows.any():
        unusual.rows = int(unusual_rows.sum())
        unusual.by_feature = unusual_cells.sum(axis=1)
        unusual.examples = [case_ids[int(row)].as_py() for row in np.flatnonzero(unusual_rows)[:UNUSUAL_EXAMPLES]]
    if clean.all():
        return CleanRows(case_ids, by_column), None, unusual

    mask = pa.array(clean)
    good = CleanRows(case_ids.filter(mask), by_column[:, clean])
    bad_rows = np.flatnonzero(~clean)
    bad = batch.filter(pc.invert(mask))
    reasons = np.array(row_problems(bad.select(list(FEATURE_COLUMNS))).tolist(), dtype=object)
    bad_ids = pc.cast(bad.column(CASE_ID), pa.string())
    for position, has_id in enumerate(bad_ids.is_valid().to_pylist()):
        if not has_id:
            reasons[position] = f"{reasons[position]}; {MISSING_CASE_ID}" if reasons[position] else MISSING_CASE_ID
    reasons[reasons == ""] = "a feature value does not read as a usable number"  # a safety net: never a blank reason
    quarantined = pa.Table.from_arrays(
        [
            bad_ids,
            pa.repeat(pa.scalar(source, pa.string()), len(bad_rows)),
            pa.array(first_row + bad_rows, pa.int64()),
            pa.array(reasons, pa.string()),
            *(pc.cast(bad.column(column), pa.string()) for column in FEATURE_COLUMNS),
        ],
        schema=QUARANTINE_SCHEMA,
    )
    return good, quarantined, unusual


@dataclass
class Chunk:
    """Up to ``chunk_rows`` clean rows, with what was read and quarantined since the previous chunk."""

    case_ids: pa.Array
    features: np.ndarray
    """float32 of shape (rows, features), laid out as the model reads fastest (see ``clean_chunks``)."""
    rows_read: int
    quarantined: list[pa.Table]
    unusual: UnusualValues = field(default_factory=UnusualValues)

    @property
    def rows(self) -> int:
        return len(self.case_ids)


def clean_chunks(sources: list[Source], chunk_rows: int, row_major: bool) -> Iterator[Chunk]:
    """Clean rows regrouped into chunks of exactly ``chunk_rows`` across batches and files; the last may be
    smaller. A chunk may hold no rows at all: when it only reports rows read and quarantined since the
    previous one, which happens at the end and whenever a block of quarantined rows (QUARANTINE_BLOCK_ROWS, or
    ``chunk_rows`` when smaller) has gathered, so that quarantined rows are handed on (and written) as they
    come: memory stays flat however few rows are clean.

    Features come row-major (C order) when ``row_major``, as TensorFlow needs them, else column-major
    (Fortran order), which CatBoost reads about twice as fast and which costs no transposition here.
    """
    pending: list[CleanRows] = []
    pending_rows = rows_read = quarantined_rows = 0
    quarantined: list[pa.Table] = []
    unusual = UnusualValues()
    batch_rows, block_rows = min(chunk_rows, SCAN_BATCH_ROWS), min(chunk_rows, QUARANTINE_BLOCK_ROWS)

    def chunk(rows: CleanRows) -> Chunk:
        return Chunk(rows.case_ids, _laid_out(rows.columns, row_major), rows_read, quarantined, unusual)

    for source in sources:
        first_row = 0
        for batch in source.batches(batch_rows):
            good, bad, batch_unusual = validate_batch(batch, source.name, first_row)
            first_row += batch.num_rows
            rows_read += batch.num_rows
            unusual.add(batch_unusual)
            if bad is not None:
                quarantined.append(bad)
                quarantined_rows += bad.num_rows
            if len(good):
                pending.append(good)
                pending_rows += len(good)
            while pending_rows >= chunk_rows:
                rows, pending = _split(pending, chunk_rows)
                pending_rows -= chunk_rows
                yield chunk(rows)
                rows_read, quarantined_rows, quarantined, unusual = 0, 0, [], UnusualValues()
            if quarantined_rows >= block_rows:
                yield chunk(_split([], 0)[0])
                rows_read, quarantined_rows, quarantined, unusual = 0, 0, [], UnusualValues()
    if pending_rows or rows_read or quarantined:
        rows, _ = _split(pending, pending_rows)
        yield chunk(rows)


def _laid_out(columns: np.ndarray, row_major: bool) -> np.ndarray:
    """The (rows, features) matrix of a (features, rows) block, C- or Fortran-contiguous."""
    return np.ascontiguousarray(columns.T) if row_major else np.ascontiguousarray(columns).T


def _split(pieces: list[CleanRows], rows: int) -> tuple[CleanRows, list[CleanRows]]:
    """The first ``rows`` rows of ``pieces`` as one block, and the rest."""
    if not pieces:
        return CleanRows(pa.array([], pa.string()), np.empty((len(FEATURE_COLUMNS), 0), np.float32)), []
    if len(pieces[0]) == rows:  # the common case with aligned batches: no copy
        return pieces[0], pieces[1:]
    case_ids = pa.concat_arrays([piece.case_ids for piece in pieces])
    columns = np.concatenate([piece.columns for piece in pieces], axis=1) if len(pieces) > 1 else pieces[0].columns
    head = CleanRows(case_ids.slice(0, rows), columns[:, :rows])
    rest = CleanRows(case_ids.slice(rows), columns[:, rows:])
    return head, ([rest] if len(rest) else [])
