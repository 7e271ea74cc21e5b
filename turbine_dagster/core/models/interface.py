"""What every model kind shares: the feature matrix, the label checks, and P(malignant) predictions."""

from typing import Any

import numpy as np
import pandas as pd

from turbine_dagster.core.evaluation.metrics import has_both_classes
from turbine_dagster.core.models.params import PREDICT_BATCH_ROWS
from turbine_dagster.core.schema import CLASS_NAMES, FEATURE_COLUMNS, MALIGNANT, TARGET
from turbine_dagster.core.storage.model_files import model_kind


def _where_suffix(where: str | None) -> str:
    return f" for {where}" if where else ""


def feature_matrix(frame: pd.DataFrame, *, split: str = "data", where: str | None = None) -> np.ndarray:
    """The features as float32, columns in FEATURE_COLUMNS order whatever the frame's own order."""
    missing = [column for column in FEATURE_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{split}{_where_suffix(where)}: feature column(s) {missing} missing; "
            f"the models need all {len(FEATURE_COLUMNS)} columns of turbine_dagster.core.schema.FEATURE_COLUMNS"
        )
    return frame.loc[:, list(FEATURE_COLUMNS)].to_numpy(dtype=np.float32)


def require_trainable_split(frame: pd.DataFrame, *, split: str, where: str | None = None) -> None:
    """Refuse a split a classifier cannot learn from or be validated on: empty, unlabelled, or one class only."""
    context = f"{split} split{_where_suffix(where)}"
    if frame.empty:
        raise ValueError(f"{context} is empty; training needs malignant and benign cases in every split")
    if TARGET not in frame.columns:
        raise ValueError(f"{context} has no '{TARGET}' column; training needs labelled cases")
    if frame[TARGET].isna().any():
        raise ValueError(f"{context}: {int(frame[TARGET].isna().sum())} rows have no '{TARGET}'; label or drop them")
    counts = frame[TARGET].value_counts()
    unknown = sorted(set(counts.index) - set(range(len(CLASS_NAMES))))
    if unknown:
        raise ValueError(f"{context}: '{TARGET}' holds {unknown}; expected 0 (malignant) or 1 (benign)")
    labels = frame[TARGET].to_numpy(dtype=int)
    if not has_both_classes(labels):
        raise ValueError(
            f"{context} has a single class ({CLASS_NAMES[labels[0]]} only, {len(frame)} rows); training needs both "
            f"malignant and benign cases: add data to the partition or change the split"
        )


def predict_malignant_proba(
    model: Any, features: pd.DataFrame | np.ndarray, batch_size: int = PREDICT_BATCH_ROWS
) -> np.ndarray:
    """P(malignant) per row, as float64, for a Keras, a CatBoost or a logistic model.

    A DataFrame is reordered to FEATURE_COLUMNS; an array must already be in that order.
    """
    matrix = feature_matrix(features) if isinstance(features, pd.DataFrame) else np.asarray(features, np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != len(FEATURE_COLUMNS):
        raise ValueError(f"features must have shape (rows, {len(FEATURE_COLUMNS)}), got {matrix.shape}")
    if len(matrix) == 0:
        return np.empty(0, dtype=np.float64)

    kind = model_kind(model)
    if kind == "tensorflow":
        # The sigmoid output already is P(malignant). Fixed-size predict_on_batch calls skip the per-call
        # setup of predict() (about 0.2 s each), which dominated chunked scoring.
        batches = [
            model.predict_on_batch(matrix[start : start + batch_size]) for start in range(0, len(matrix), batch_size)
        ]
        return np.concatenate([np.asarray(batch).reshape(-1) for batch in batches]).astype(np.float64)
    if kind == "logistic":
        # In batches, so the float64 copies of the features stay as bounded as the other kinds' batches.
        starts = range(0, len(matrix), batch_size)
        return np.concatenate([model.predict_malignant_proba(matrix[start : start + batch_size]) for start in starts])

    malignant_column = list(model.classes_).index(MALIGNANT)
    frame = pd.DataFrame(matrix, columns=list(FEATURE_COLUMNS))
    return model.predict_proba(frame, thread_count=-1)[:, malignant_column].astype(np.float64)
