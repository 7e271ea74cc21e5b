"""The columns of the files scoring writes: the predictions file and the quarantine file.

Plain names and Arrow schemas only, so that readers of these files (the comparison, the Dagster layer)
need not load the model libraries that scoring imports.
"""

import pyarrow as pa

from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, P_MALIGNANT, SOURCE_FILE

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
