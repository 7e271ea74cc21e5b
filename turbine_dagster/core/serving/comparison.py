"""Champion against challenger on the same cases: agreement, disagreements on malignant, score shift.

Both inputs are scored frames (``scoring.score_frame``) or the predictions files that hold them, joined on
``case_id``; labels that arrived for some cases give each model's malignant recall and precision. Files are
compared in memory that does not grow with their size: split into buckets by a hash of the case id, they are
joined one bucket at a time.
"""

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from turbine_dagster.core.schema import CASE_ID, P_MALIGNANT
from turbine_dagster.core.serving.columns import MODEL_VERSION, PREDICTED_LABEL, THRESHOLD
from turbine_dagster.core.serving.comparison_report import ComparisonReport
from turbine_dagster.core.serving.comparison_tally import ComparisonTally, case_hashes, checked_labels
from turbine_dagster.core.serving.defaults import DISAGREEMENTS_LISTED

BUCKET_ROWS = 500_000
"""Cases per bucket when prediction files are compared: sets the memory of the join (~0.2 GiB)."""
_READ_BATCH_ROWS = 65_536


def compare_predictions(
    champion: pd.DataFrame,
    challenger: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    sample_size: int = DISAGREEMENTS_LISTED,
    *,
    champion_name: str | None = None,
    challenger_name: str | None = None,
) -> ComparisonReport:
    """Compare two models' predictions of the same cases, held in memory (see ``ComparisonReport``).

    Names default to the frames' ``model_version`` (e.g. "champion (v0003)"). Raises ValueError when
    a frame lacks a column, repeats a case id, holds no probability, or the two share no case.
    """
    tally = ComparisonTally(sample_size, with_labels=labels is not None)
    tally.add(champion, challenger, checked_labels(labels) if labels is not None else None)
    return tally.report(champion_name, challenger_name)


def compare_prediction_files(
    champion: str | Path | UPath,
    challenger: str | Path | UPath,
    labels: pd.DataFrame | None = None,
    sample_size: int = DISAGREEMENTS_LISTED,
    *,
    champion_name: str | None = None,
    challenger_name: str | None = None,
    bucket_rows: int = BUCKET_ROWS,
) -> ComparisonReport:
    """``compare_predictions`` of two predictions files (local or object store), in memory that does not grow
    with their size: both are split into buckets of about ``bucket_rows`` cases by a hash of the case id, in
    a temporary folder, and compared one bucket at a time. ``labels`` (small: the labelled cases) stay in
    memory."""
    if bucket_rows < 1:
        raise ValueError(f"bucket_rows must be at least 1, got {bucket_rows}")
    paths = {"champion": _as_upath(champion), "challenger": _as_upath(challenger)}
    rows = {role: _row_count(path) for role, path in paths.items()}
    buckets = max(1, math.ceil(max(rows.values()) / bucket_rows))
    known = checked_labels(labels) if labels is not None else None
    label_bucket = case_hashes(known[CASE_ID]) % np.uint64(buckets) if known is not None else None
    tally = ComparisonTally(sample_size, with_labels=known is not None)
    with tempfile.TemporaryDirectory(prefix="turbine-comparison-") as scratch:
        if buckets == 1:
            parts = {role: [path] for role, path in paths.items()}
        else:
            parts = {role: _split_into_buckets(path, buckets, Path(scratch) / role) for role, path in paths.items()}
        for bucket in range(buckets):
            frames = {role: _read(parts[role][bucket]) for role in paths}
            subset = known.loc[label_bucket == bucket] if known is not None else None
            tally.add(frames["champion"], frames["challenger"], subset)
            del frames
    return tally.report(champion_name, challenger_name)


def _as_upath(path: str | Path | UPath) -> UPath:
    return path if isinstance(path, UPath) else UPath(path)


def _row_count(path: UPath) -> int:
    with path.open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _columns(schema: pa.Schema) -> list[str]:
    return [c for c in (CASE_ID, P_MALIGNANT, PREDICTED_LABEL, MODEL_VERSION, THRESHOLD) if c in schema.names]


def _read(path: UPath | Path | None) -> pd.DataFrame:
    if path is None:  # a bucket no row of this side fell into
        return pd.DataFrame(
            {
                CASE_ID: pd.Series(dtype=object),
                P_MALIGNANT: pd.Series(dtype=float),
                PREDICTED_LABEL: pd.Series(dtype=np.int8),
            }
        )
    with path.open("rb") if isinstance(path, UPath) else open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        return parquet.read(columns=_columns(parquet.schema_arrow)).to_pandas()


def _split_into_buckets(path: UPath, buckets: int, folder: Path) -> list[Path | None]:
    """The file's rows written to ``buckets`` local Parquet files by a hash of the case id, reading a batch
    at a time; None for a bucket no row fell into."""
    folder.mkdir(parents=True)
    writers: dict[int, pq.ParquetWriter] = {}
    try:
        with path.open("rb") as handle:
            parquet = pq.ParquetFile(handle)
            columns = _columns(parquet.schema_arrow)
            for batch in parquet.iter_batches(batch_size=_READ_BATCH_ROWS, columns=columns):
                ids = batch.column(CASE_ID).to_numpy(zero_copy_only=False)
                bucket_of = case_hashes(ids) % np.uint64(buckets)
                order = np.argsort(bucket_of, kind="stable")
                sorted_buckets = bucket_of[order]
                table = pa.Table.from_batches([batch]).take(pa.array(order))
                bounds = np.flatnonzero(np.diff(sorted_buckets)) + 1
                for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(order)], strict=True):
                    if stop == start:
                        continue
                    bucket = int(sorted_buckets[start])
                    if bucket not in writers:
                        writers[bucket] = pq.ParquetWriter(folder / f"{bucket}.parquet", table.schema)
                    writers[bucket].write_table(table.slice(start, stop - start))
    finally:
        for writer in writers.values():
            writer.close()
    return [folder / f"{bucket}.parquet" if bucket in writers else None for bucket in range(buckets)]
