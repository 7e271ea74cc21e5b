"""Chunked batch scoring: a partition's landing files in, one Parquet file of predictions out, memory flat.

``score_partition`` recognises every file's layout before reading a row, scores clean rows chunk by chunk
while a thread reads ahead (``sources``) and another writes (``staging``), quarantines the rows that break
the data rules, and publishes both files whole at the end; ``score_frame`` scores rows already in memory.
"""

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from upath import UPath

from turbine_dagster.core.evaluation.metrics import predict_labels
from turbine_dagster.core.models.interface import feature_matrix, predict_malignant_proba
from turbine_dagster.core.models.params import PREDICT_BATCH_ROWS
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, MALIGNANT
from turbine_dagster.core.serving.columns import (
    MODEL_VERSION,
    OUTPUT_SCHEMA,
    PREDICTED_LABEL,
    QUARANTINE_SCHEMA,
    SCORED_AT,
    THRESHOLD,
)
from turbine_dagster.core.serving.defaults import CHUNK_ROWS
from turbine_dagster.core.serving.sources import QUARANTINE_BLOCK_ROWS, Source, UnusualValues, clean_chunks
from turbine_dagster.core.serving.staging import StagedParquet, read_ahead
from turbine_dagster.core.storage.model_files import model_kind

_OUTPUT_WRITER_OPTIONS = {
    # Dictionaries only where values repeat: on unique case ids and probabilities one costs time and is dropped.
    "use_dictionary": [PREDICTED_LABEL, MODEL_VERSION, THRESHOLD, SCORED_AT],
    "compression": "zstd",  # measured: as fast as snappy here, files ~40% smaller
}


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
    """What a scoring run did: rows read, scored and quarantined, the files it read and where it wrote."""

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
    """Scored rows with some feature above its ``cases.UNUSUALLY_LARGE`` bound: valid, but worth a look."""
    unusually_large_by_feature: dict[str, int] = field(default_factory=dict)
    """Per feature with such values, the number of scored rows holding one."""
    unusually_large_examples: tuple[str, ...] = ()
    """Case ids of the first such rows (at most UNUSUAL_EXAMPLES)."""

    @property
    def empty(self) -> bool:
        return self.rows_read == 0


# ---------------------------------------------------------------------------------------------
# Scoring rows already in memory


def score_batch(
    case_ids: pa.Array,
    features: np.ndarray,
    model: Any,
    *,
    threshold: float,
    model_version: str,
    scored_at: dt.datetime,
    batch_size: int = PREDICT_BATCH_ROWS,
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
            pa.array(predict_labels(p_malignant, threshold), pa.int8()),
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
    batch_size: int = PREDICT_BATCH_ROWS,
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
    chunk_rows: int = CHUNK_ROWS,
    batch_size: int = PREDICT_BATCH_ROWS,
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
    sources = [Source.open(path, root) for path in files]  # every file's columns, before any row
    names = tuple(source.name for source in sources)
    unusual = UnusualValues()

    predictions = StagedParquet(output, OUTPUT_SCHEMA, **_OUTPUT_WRITER_OPTIONS)
    quarantined = StagedParquet(quarantine, QUARANTINE_SCHEMA)
    waiting: list[pa.Table] = []  # quarantined rows, written in blocks of about QUARANTINE_BLOCK_ROWS rows
    chunks = rows_read = rows_scored = rows_quarantined = rows_malignant = 0
    try:
        for chunk in read_ahead(clean_chunks(sources, chunk_rows, row_major)):
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
