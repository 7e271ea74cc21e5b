"""Chunked batch scoring: landing files in, one Parquet file of predictions out, memory flat.

``score_partition`` works through a partition's files in five steps:

1. every file's layout is recognised from its header or schema before any row is read (ours or a
   published WDBC layout, see ``layouts``), so a wrong file fails the run with its name and the missing
   column, and nothing is written;
2. the files are read in record batches with pyarrow datasets, a Parquet file one row group at a
   time; CSV cells are read as text, so a stray word is a quarantined cell rather than a parser crash,
   and each batch is mapped to our columns (a content-derived ``case_id`` where the layout has no id).
   A thread reads and validates the next chunk while the current one is scored, and another writes
   the previous one (pyarrow and both model libraries release the GIL);
3. each batch is validated with the rules of ``data.row_problems`` (the training data's rules: a
   number, finite, within float32's range, not negative): bad rows go to the quarantine file with their
   reason and raw values, written in blocks of about ``chunk_rows`` rows as they come, however few clean
   rows there are; good rows are regrouped into chunks of exactly ``chunk_rows`` rows, whatever the
   files' own row groups or sizes. Unusually large values (``data.UNUSUALLY_LARGE``) are scored and
   counted;
4. each chunk is scored by ``predict_malignant_proba`` (Keras in large fixed-size batches, CatBoost
   on all cores); a P(malignant) that is not a number in [0, 1] fails the run (``ModelOutputError``),
   since a NaN would read as benign; else the chunk is appended to the output as one Parquet row group;
5. both files are written locally under a temporary name and published whole at the end
   (``os.replace`` beside a local target, a single upload to an object store), so a killed run never
   leaves a half-written file under the final name.

Memory is bounded by a few chunks (one being read, one queued, one scored, one being written) plus one
Parquet row group, or a few MiB of CSV blocks, of the file being read: it does not grow with the number
of rows, nor with the share of them that is quarantined. A Parquet file written as one huge row group is
the exception: its row group is read whole.
"""

import datetime as dt
import os
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from upath import UPath

from turbine_dagster.core.data import landing, layouts
from turbine_dagster.core.data.cases import row_problems, unusually_large_cells, usable
from turbine_dagster.core.models.interface import feature_matrix, predict_malignant_proba
from turbine_dagster.core.schema import BENIGN, CASE_ID, FEATURE_COLUMNS, MALIGNANT, P_MALIGNANT, SOURCE_FILE
from turbine_dagster.core.storage.files import is_local
from turbine_dagster.core.storage.model_files import model_kind

PREDICTED_LABEL = "predicted_label"
MODEL_VERSION = "model_version"
THRESHOLD = "threshold"
SCORED_AT = "scored_at"
SOURCE_ROW = "source_row"
REASON = "reason"

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field(CASE_ID, pa.string()),
        pa.field(P_MALIGNANT, pa.float64()),
        pa.field(PREDICTED_LABEL, pa.int8()),
        pa.field(MODEL_VERSION, pa.string()),
        pa.field(THRESHOLD, pa.float64()),
        pa.field(SCORED_AT, pa.timestamp("us", tz="UTC")),
    ]
)
"""The predictions file. ``predicted_label`` is MALIGNANT (0) when ``p_malignant >= threshold``, else BENIGN (1)."""

_OUTPUT_WRITER_OPTIONS = {
    # Dictionaries only where values repeat: on unique case ids and probabilities one costs time and is dropped.
    "use_dictionary": [PREDICTED_LABEL, MODEL_VERSION, THRESHOLD, SCORED_AT],
    "compression": "zstd",  # measured: as fast as snappy here, files ~40% smaller
}

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field(CASE_ID, pa.string()),
        pa.field(SOURCE_FILE, pa.string()),
        pa.field(SOURCE_ROW, pa.int64()),
        pa.field(REASON, pa.string()),
        *(pa.field(column, pa.string()) for column in FEATURE_COLUMNS),
    ]
)
"""Rows that were not scored: where they came from (file relative to the landing root, 0-based data row),
why, and the feature values exactly as read, as text (null where the cell was empty)."""

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


class ModelOutputError(ValueError):
    """A model returned a P(malignant) that is not a probability: the run stops and publishes nothing."""


@dataclass(frozen=True)
class ScoringProgress:
    """Where a run stands after a chunk has been scored and written."""

    chunks: int
    rows_read: int
    rows_scored: int
    rows_quarantined: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """Rows read (scored or quarantined) per second since the run started."""
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def message(self) -> str:
        return (
            f"chunk {self.chunks}: {self.rows_read:,} rows read, {self.rows_scored:,} scored, "
            f"{self.rows_quarantined:,} quarantined, {self.rows_per_second:,.0f} rows/s"
        )


@dataclass(frozen=True)
class ScoringSummary:
    rows_read: int
    rows_scored: int
    rows_quarantined: int
    rows_predicted_malignant: int
    seconds: float
    rows_per_second: float
    """Rows read (scored or quarantined) per second of the whole run, reading and writing included."""
    share_predicted_malignant: float | None
    """Share of the scored rows predicted malignant; None when no row was scored."""
    output_uri: str | None
    """None only when the input had no rows: then nothing is written."""
    quarantine_uri: str | None
    """None when no row was quarantined."""
    files: tuple[str, ...] = field(default_factory=tuple)
    """The files read, relative to the landing root."""
    layouts: tuple[str, ...] = field(default_factory=tuple)
    """The layout of each of ``files`` (``layouts.LAYOUTS``)."""
    rows_unusually_large: int = 0
    """Scored rows with some feature above its ``data.UNUSUALLY_LARGE`` bound: valid, but worth a look."""
    unusually_large_by_feature: dict[str, int] = field(default_factory=dict)
    """Per feature with such values, the number of scored rows holding one."""
    unusually_large_examples: tuple[str, ...] = ()
    """Case ids of the first such rows (at most UNUSUAL_EXAMPLES)."""

    @property
    def empty(self) -> bool:
        return self.rows_read == 0


# ---------------------------------------------------------------------------------------------
# Scoring rows already in memory


def predicted_labels(p_malignant: np.ndarray, threshold: float) -> np.ndarray:
    """MALIGNANT (0) where ``p_malignant >= threshold``, else BENIGN (1), as int8."""
    return np.where(np.asarray(p_malignant) >= threshold, MALIGNANT, BENIGN).astype(np.int8)


def score_batch(
    case_ids: pa.Array,
    features: np.ndarray,
    model: Any,
    *,
    threshold: float,
    model_version: str,
    scored_at: dt.datetime,
    batch_size: int = 8192,
) -> pa.Table:
    """Predictions for clean rows: ``features`` in FEATURE_COLUMNS order, one row per case id.

    The table has OUTPUT_SCHEMA; ``score_partition`` writes one of these per chunk.
    """
    if len(case_ids) != len(features):
        raise ValueError(f"{len(case_ids)} case ids for {len(features)} feature rows")
    p_malignant = predict_malignant_proba(model, features, batch_size=batch_size)
    _check_probabilities(p_malignant, case_ids, model_version)
    rows = len(p_malignant)
    return pa.Table.from_arrays(
        [
            pc.cast(case_ids, pa.string()),
            pa.array(p_malignant, pa.float64()),
            pa.array(predicted_labels(p_malignant, threshold), pa.int8()),
            pa.repeat(pa.scalar(model_version, pa.string()), rows),
            pa.repeat(pa.scalar(float(threshold), pa.float64()), rows),
            pa.repeat(pa.scalar(_utc(scored_at), OUTPUT_SCHEMA.field(SCORED_AT).type), rows),
        ],
        schema=OUTPUT_SCHEMA,
    )


def _check_probabilities(p_malignant: np.ndarray, case_ids: pa.Array, model_version: str) -> None:
    """A NaN compares false against the threshold and would be labelled benign: refuse anything that is not a
    probability, naming the model and the rows."""
    p_malignant = np.asarray(p_malignant, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(p_malignant) & (p_malignant >= 0.0) & (p_malignant <= 1.0))
    if len(p_malignant) != len(case_ids):
        raise ModelOutputError(
            f"model {model_version} returned {len(p_malignant)} P(malignant) values for "
            f"{len(case_ids)} rows; nothing is published"
        )
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(f"{case_ids[int(row)].as_py()} ({p_malignant[row]!r})" for row in rows[:10])
        more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
        raise ModelOutputError(
            f"model {model_version} returned a P(malignant) outside [0, 1] or not a number for {len(rows)} row(s) "
            f"of {len(p_malignant)} in a chunk: case ids {shown}{more}; nothing is published. The model is faulty "
            "(or its artifact is damaged): score with another version, and retrain or roll back this one"
        )


def score_frame(
    frame: pd.DataFrame,
    model: Any,
    *,
    threshold: float,
    model_version: str,
    scored_at: dt.datetime | None = None,
    batch_size: int = 8192,
) -> pd.DataFrame:
    """``score_batch`` for a frame of clean rows (``case_id`` and the feature columns, any order)."""
    table = score_batch(
        pa.array(frame[CASE_ID].astype(str).to_numpy(dtype=object), pa.string()),
        feature_matrix(frame),
        model,
        threshold=threshold,
        model_version=model_version,
        scored_at=scored_at or dt.datetime.now(dt.UTC),
        batch_size=batch_size,
    )
    return table.to_pandas()


# ---------------------------------------------------------------------------------------------
# Scoring a partition's files


def score_partition(
    files: list[UPath],
    root: UPath,
    model: Any,
    *,
    threshold: float,
    model_version: str,
    output: UPath,
    quarantine: UPath,
    chunk_rows: int = 100_000,
    batch_size: int = 8192,
    scored_at: dt.datetime | None = None,
    on_progress: Callable[[ScoringProgress], None] | None = None,
) -> ScoringSummary:
    """Score every row of ``files`` with ``model`` at ``threshold``; write predictions to ``output``
    and rows that break the data rules to ``quarantine`` (both Parquet).

    Fails with ``LandingError`` naming the file (relative to ``root``) when a file is not CSV, Parquet or
    ``.data``, cannot be read, is ambiguous or lacks a column of its layout; with ``ModelOutputError`` when
    the model returns a P(malignant) that is not a probability; nothing is published then.
    Input without rows writes nothing and returns ``rows_read == 0``. Otherwise the output is written
    (with no rows when every row was quarantined); the quarantine file is written when some row was
    quarantined, and a quarantine file left at that path by an earlier run is removed when none was,
    so both files always describe the same run.
    """
    _check_arguments(threshold, chunk_rows, batch_size)
    row_major = model_kind(model) == "tensorflow"  # also refuses an unsupported model before any work
    scored_at = _utc(scored_at or dt.datetime.now(dt.UTC))
    started = time.perf_counter()
    sources = [_Source.open(path, root) for path in files]  # every file's columns, before any row
    names = tuple(source.name for source in sources)
    unusual = _Unusual()

    predictions = _StagedParquet(output, OUTPUT_SCHEMA, **_OUTPUT_WRITER_OPTIONS)
    quarantined = _StagedParquet(quarantine, QUARANTINE_SCHEMA)
    waiting: list[pa.Table] = []  # quarantined rows, written in blocks of about QUARANTINE_BLOCK_ROWS rows
    chunks = rows_read = rows_scored = rows_quarantined = rows_malignant = 0
    try:
        for chunk in _read_ahead(_chunks(sources, chunk_rows, row_major)):
            rows_read += chunk.rows_read
            rows_quarantined += sum(table.num_rows for table in chunk.quarantined)
            unusual.add(chunk.unusual)
            waiting += chunk.quarantined
            if sum(table.num_rows for table in waiting) >= min(chunk_rows, QUARANTINE_BLOCK_ROWS):
                quarantined.write(pa.concat_tables(waiting))
                waiting = []
            if chunk.rows:
                table = score_batch(
                    chunk.case_ids,
                    chunk.features,
                    model,
                    threshold=threshold,
                    model_version=model_version,
                    scored_at=scored_at,
                    batch_size=batch_size,
                )
                predictions.write(table)
                rows_scored += table.num_rows
                rows_malignant += int(pc.sum(pc.equal(table[PREDICTED_LABEL], MALIGNANT)).as_py() or 0)
                chunks += 1
            if on_progress is not None:
                on_progress(
                    ScoringProgress(chunks, rows_read, rows_scored, rows_quarantined, time.perf_counter() - started)
                )
        if waiting:
            quarantined.write(pa.concat_tables(waiting))
        if rows_quarantined:
            quarantined.publish()
        elif rows_read and quarantine.exists():
            quarantine.unlink()  # an earlier run's quarantine: this run quarantined nothing
        if rows_read:
            predictions.publish()  # last: the predictions file appears only once everything else is in place
    finally:
        predictions.discard()
        quarantined.discard()

    seconds = time.perf_counter() - started
    return ScoringSummary(
        rows_read=rows_read,
        rows_scored=rows_scored,
        rows_quarantined=rows_quarantined,
        rows_predicted_malignant=rows_malignant,
        seconds=seconds,
        rows_per_second=rows_read / seconds if seconds > 0 else 0.0,
        share_predicted_malignant=rows_malignant / rows_scored if rows_scored else None,
        output_uri=str(output) if rows_read else None,
        quarantine_uri=str(quarantine) if rows_quarantined else None,
        files=names,
        layouts=tuple(source.layout.name for source in sources),
        rows_unusually_large=unusual.rows,
        unusually_large_by_feature={
            column: int(count) for column, count in zip(FEATURE_COLUMNS, unusual.by_feature, strict=True) if count
        },
        unusually_large_examples=tuple(unusual.examples),
    )


def _check_arguments(threshold: float, chunk_rows: int, batch_size: int) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not a probability: use a value between 0 and 1")
    if chunk_rows < 1 or batch_size < 1:
        raise ValueError(f"chunk_rows ({chunk_rows}) and batch_size ({batch_size}) must be at least 1")


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"scored_at {moment.isoformat()} has no time zone; pass an aware datetime, e.g. in UTC")
    return moment.astimezone(dt.UTC)


# ---------------------------------------------------------------------------------------------
# Reading: one source per file, validated batches, regrouped into chunks


@dataclass
class _Source:
    path: UPath
    name: str
    layout: layouts.Layout
    dataset: ds.Dataset

    @classmethod
    def open(cls, path: UPath, root: UPath) -> "_Source":
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
class _Unusual:
    """Clean rows with unusually large values, counted since the last chunk (or over the run)."""

    rows: int = 0
    by_feature: np.ndarray = field(default_factory=lambda: np.zeros(len(FEATURE_COLUMNS), dtype=np.int64))
    examples: list[str] = field(default_factory=list)

    def add(self, other: "_Unusual") -> None:
        self.rows += other.rows
        self.by_feature += other.by_feature
        self.examples += other.examples[: UNUSUAL_EXAMPLES - len(self.examples)]


@dataclass
class _Rows:
    """Clean rows ready to score."""

    case_ids: pa.Array
    columns: np.ndarray
    """float32 of shape (features, rows): one row per feature column, in FEATURE_COLUMNS order."""

    def __len__(self) -> int:
        return len(self.case_ids)


def _validate(batch: pa.RecordBatch, source: str, first_row: int) -> tuple[_Rows, pa.Table | None, _Unusual]:
    """Splits a batch (our columns) into clean rows and quarantined rows (QUARANTINE_SCHEMA), by ``row_problems``'
    rules, and counts the clean rows holding unusually large values.

    A row is clean when every feature reads as a usable number (``data.usable``: finite, within float32, not
    negative) and it has a case id. That is checked here on all rows at once; ``row_problems`` then words the
    reasons for the few rows that failed.
    """
    rows = batch.num_rows
    by_column = np.empty((len(FEATURE_COLUMNS), rows), dtype=np.float32)
    clean = np.ones(rows, dtype=bool)
    unusual_cells = np.zeros((len(FEATURE_COLUMNS), rows), dtype=bool)
    for index, column in enumerate(FEATURE_COLUMNS):
        values = layouts.to_float64(batch.column(column))
        clean &= usable(values)  # on float64, before the cast: 1e300 is finite there and inf in float32
        unusual_cells[index] = unusually_large_cells(values, column)
        with np.errstate(over="ignore", invalid="ignore"):
            by_column[index] = values
    case_ids = pc.cast(batch.column(CASE_ID), pa.string())
    if case_ids.null_count:
        clean &= case_ids.is_valid().to_numpy(zero_copy_only=False)
    unusual = _Unusual()
    unusual_cells &= clean
    unusual_rows = unusual_cells.any(axis=0)
    if unusual_rows.any():
        unusual.rows = int(unusual_rows.sum())
        unusual.by_feature = unusual_cells.sum(axis=1)
        unusual.examples = [case_ids[int(row)].as_py() for row in np.flatnonzero(unusual_rows)[:UNUSUAL_EXAMPLES]]
    if clean.all():
        return _Rows(case_ids, by_column), None, unusual

    mask = pa.array(clean)
    good = _Rows(case_ids.filter(mask), by_column[:, clean])
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
class _Chunk:
    """Up to ``chunk_rows`` clean rows, with what was read and quarantined since the previous chunk."""

    case_ids: pa.Array
    features: np.ndarray
    """float32 of shape (rows, features), laid out as the model reads fastest (see ``_chunks``)."""
    rows_read: int
    quarantined: list[pa.Table]
    unusual: _Unusual = field(default_factory=_Unusual)

    @property
    def rows(self) -> int:
        return len(self.case_ids)


def _chunks(sources: list[_Source], chunk_rows: int, row_major: bool) -> Iterator[_Chunk]:
    """Clean rows regrouped into chunks of exactly ``chunk_rows`` across batches and files; the last may be
    smaller. A chunk may hold no rows at all: when it only reports rows read and quarantined since the
    previous one, which happens at the end and whenever a block of quarantined rows (QUARANTINE_BLOCK_ROWS, or
    ``chunk_rows`` when smaller) has gathered, so that quarantined rows are handed on (and written) as they
    come: memory stays flat however few rows are clean.

    Features come row-major (C order) when ``row_major``, as TensorFlow needs them, else column-major
    (Fortran order), which CatBoost reads about twice as fast and which costs no transposition here.
    """
    pending: list[_Rows] = []
    pending_rows = rows_read = quarantined_rows = 0
    quarantined: list[pa.Table] = []
    unusual = _Unusual()
    batch_rows, block_rows = min(chunk_rows, SCAN_BATCH_ROWS), min(chunk_rows, QUARANTINE_BLOCK_ROWS)

    def chunk(rows: _Rows) -> _Chunk:
        return _Chunk(rows.case_ids, _laid_out(rows.columns, row_major), rows_read, quarantined, unusual)

    for source in sources:
        first_row = 0
        for batch in source.batches(batch_rows):
            good, bad, batch_unusual = _validate(batch, source.name, first_row)
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
                rows_read, quarantined_rows, quarantined, unusual = 0, 0, [], _Unusual()
            if quarantined_rows >= block_rows:
                yield chunk(_split([], 0)[0])
                rows_read, quarantined_rows, quarantined, unusual = 0, 0, [], _Unusual()
    if pending_rows or rows_read or quarantined:
        rows, _ = _split(pending, pending_rows)
        yield chunk(rows)


def _laid_out(columns: np.ndarray, row_major: bool) -> np.ndarray:
    """The (rows, features) matrix of a (features, rows) block, C- or Fortran-contiguous."""
    return np.ascontiguousarray(columns.T) if row_major else np.ascontiguousarray(columns).T


def _split(pieces: list[_Rows], rows: int) -> tuple[_Rows, list[_Rows]]:
    """The first ``rows`` rows of ``pieces`` as one block, and the rest."""
    if not pieces:
        return _Rows(pa.array([], pa.string()), np.empty((len(FEATURE_COLUMNS), 0), np.float32)), []
    if len(pieces[0]) == rows:  # the common case with aligned batches: no copy
        return pieces[0], pieces[1:]
    case_ids = pa.concat_arrays([piece.case_ids for piece in pieces])
    columns = np.concatenate([piece.columns for piece in pieces], axis=1) if len(pieces) > 1 else pieces[0].columns
    head = _Rows(case_ids.slice(0, rows), columns[:, :rows])
    rest = _Rows(case_ids.slice(rows), columns[:, rows:])
    return head, ([rest] if len(rest) else [])


# ---------------------------------------------------------------------------------------------
# Plumbing: read-ahead thread, staged files

T = TypeVar("T")


@dataclass
class _End:
    error: BaseException | None = None


def _read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
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


class _StagedParquet:
    """A Parquet file written on local disk under a temporary name, one row group per ``write``, then
    published whole at ``target``; nothing touches the target's folder before the first write.

    Each row group is encoded and written on a thread while the caller goes on (pyarrow releases the
    GIL); a write first waits for the previous one, so at most one table is in flight.
    """

    def __init__(self, target: UPath, schema: pa.Schema, **writer_options: Any):
        self.target = target
        self.schema = schema
        self.staging: str | None = None
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
        if is_local(self.target):
            descriptor = os.open(self.staging, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(self.staging, self.target.path)
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
        if self.staging is not None and os.path.exists(self.staging):
            os.remove(self.staging)

    def _open(self) -> None:
        if is_local(self.target):
            folder = Path(self.target.path).parent
            folder.mkdir(parents=True, exist_ok=True)
            # Beside the target: os.replace is atomic within one file system.
            self.staging = str(folder / f".{self.target.name}.tmp-{uuid.uuid4().hex}")
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


# ---------------------------------------------------------------------------------------------
# A bounded sample of the clean rows, for drift detection


def sample_clean_features(
    files: list[UPath], root: UPath, max_rows: int, seed: int = 0, chunk_rows: int = 100_000
) -> pd.DataFrame:
    """A uniform random sample of at most ``max_rows`` clean rows of ``files``, features only.

    One pass with bounded memory: every clean row draws a seeded random key and the ``max_rows``
    smallest keys are kept (a bottom-k sample), whatever the number of rows or files. Rows that
    break the data rules are left out, as scoring quarantines them.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    rng = np.random.default_rng(seed)
    kept_keys = np.empty(0)
    kept = np.empty((len(FEATURE_COLUMNS), 0), np.float32)
    for path in files:
        source = _Source.open(path, root)
        first_row = 0
        for batch in source.batches(chunk_rows):
            good, _, _ = _validate(batch, source.name, first_row)
            first_row += batch.num_rows
            keys = np.concatenate([kept_keys, rng.random(len(good))])
            rows = np.concatenate([kept, good.columns], axis=1)
            if len(keys) > max_rows:
                smallest = np.argpartition(keys, max_rows)[:max_rows]
                keys, rows = keys[smallest], rows[:, smallest]
            kept_keys, kept = keys, rows
    return pd.DataFrame(kept.T.astype(np.float64), columns=list(FEATURE_COLUMNS))
