"""Dagster's standard table metadata — ``dagster/column_schema`` and ``dagster/row_count`` — for the tables assets
store, so the catalog shows each table's columns, their types (as stored in Parquet) and its size."""

from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa

from turbine_dagster.core.data.cases import FOLD, HOLDOUT_SCHEME_COLUMN, LAYOUT, WEEK
from turbine_dagster.core.data.history import FOLD_KEY, HOLDOUT_KEY
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, P_MALIGNANT, SOURCE_FILE, TARGET
from turbine_dagster.core.serving.columns import (
    MODEL_VERSION,
    PREDICTED_LABEL,
    REASON,
    SCORED_AT,
    SOURCE_ROW,
    THRESHOLD,
)

COLUMN_SCHEMA = "dagster/column_schema"
ROW_COUNT = "dagster/row_count"

COLUMN_DESCRIPTIONS = {
    CASE_ID: "Case id: the landing file's own, or derived from the case's content where its layout has none.",
    TARGET: "Diagnosis: 0 malignant, 1 benign.",
    WEEK: "Landing week the case came in.",
    SOURCE_FILE: "Landing file, relative to the landing root.",
    LAYOUT: "Published layout the file was recognised as.",
    FOLD: "Cross-fitting fold the case is held out in.",
    HOLDOUT_KEY: "Bytes 0-7 of SHA-256(case id): the case is in the holdout when this / 2^64 is below the share.",
    FOLD_KEY: "Bytes 8-15 of SHA-256(case id): the case's cross-fitting fold is this mod the folds.",
    HOLDOUT_SCHEME_COLUMN: "How the holdout was chosen (scheme and share): the gate pairs only equal schemes.",
    P_MALIGNANT: "P(malignant) from the model.",
    PREDICTED_LABEL: "0 malignant when p_malignant >= threshold, else 1 benign.",
    MODEL_VERSION: "Registry version (and checkpoint) that scored the case.",
    THRESHOLD: "Operating threshold the label was predicted at.",
    SCORED_AT: "When the case was scored (UTC).",
    SOURCE_ROW: "0-based data row in the source file.",
    REASON: "Why the row was not scored.",
}
FEATURE_DESCRIPTION = "Cell-nucleus measurement (WDBC feature)."


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type="string" if pa.types.is_large_string(field.type) else str(field.type),
                description=FEATURE_DESCRIPTION
                if field.name in FEATURE_COLUMNS
                else COLUMN_DESCRIPTIONS.get(field.name),
            )
            for field in schema
        ]
    )


def table_metadata(table: pd.DataFrame | pa.Schema, row_count: int | None = None) -> dict[str, Any]:
    """Column schema and row count of a frame (as Parquet stores it), or of a schema and a count."""
    if isinstance(table, pd.DataFrame):
        schema, row_count = pa.Schema.from_pandas(table, preserve_index=False), len(table)
    else:
        schema = table
    return {COLUMN_SCHEMA: column_schema(schema), **({ROW_COUNT: int(row_count)} if row_count is not None else {})}
