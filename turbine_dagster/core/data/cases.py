"""Labeled case data: loading from the landing zone, the value rules that the ``raw_data`` checks and batch
scoring share, and the stratified holdout and cross-fitting splits."""

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import StratifiedKFold
from upath import UPath

from turbine_dagster.core.data import landing, layouts
from turbine_dagster.core.data.cells import text_not_numbers, to_float64
from turbine_dagster.core.schema import BENIGN, CASE_ID, CLASS_NAMES, FEATURE_COLUMNS, MALIGNANT, SOURCE_FILE, TARGET

WEEK = "week"
LAYOUT = "layout"
"""The layout each case's file came in (``layouts.LAYOUTS``)."""
ALL_WEEKS = 0
"""The ``window_weeks`` that keeps every landed week up to the requested one (the default)."""
MIN_CASES_PER_CLASS = 10
"""Fewest cases of each class a training set may hold (the ``raw_data`` check's default minimum)."""
TRAINING_SEED = 42
"""Default seed of training's random draws: the fold assignment, each fold's early-stopping share and the
models' own randomness."""


class EmptyPartitionError(ValueError):
    """No landing data at all for the requested team and weeks."""


@dataclass(frozen=True)
class Problem:
    """One rule broken by some rows of one file."""

    column: str
    file: str
    rows: int
    detail: str

    def sentence(self) -> str:
        return f"column '{self.column}' {self.detail}: {self.rows} row(s) in {self.file}"


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def description(self) -> str:
        if self.passed:
            return f"{self.name}: passed"
        return f"{self.name} failed: " + "; ".join(p.sentence() for p in self.problems)


def weeks_in_window(available: list[str], week: str, window_weeks: int) -> list[str]:
    """Landed weeks up to and including ``week``; ``window_weeks`` > 0 keeps only the last N weeks."""
    end = dt.date.fromisoformat(week)
    start = end - dt.timedelta(weeks=window_weeks - 1) if window_weeks > 0 else dt.date.min
    return [w for w in available if start <= dt.date.fromisoformat(w) <= end]


def load_labeled_cases(root: UPath, team: str, week: str, window_weeks: int = ALL_WEEKS) -> pd.DataFrame:
    """All labeled cases of ``team`` landed up to ``week`` (within the window), one frame.

    Files may come in any of the published WDBC layouts (``layouts``); each case keeps the layout its
    file came in (``LAYOUT``). Fails on what makes a table impossible (no files, unreadable, unsupported
    or ambiguous files, missing columns); value problems are kept in the frame for the checks to report
    with file names.
    """
    weeks = weeks_in_window(
        landing.landed_weeks(root, landing.LABELED, team), landing.validate_week(week), window_weeks
    )
    frames = []
    for landed_week in weeks:
        for path in landing.data_files(landing.partition_dir(root, landing.LABELED, team, landed_week), root):
            frame, layout = layouts.read_cases(path, root, landing.LABELED)
            frames.append(
                frame.assign(**{WEEK: landed_week, SOURCE_FILE: landing.relative_name(path, root), LAYOUT: layout.name})
            )
    if not frames or sum(len(f) for f in frames) == 0:
        folder = landing.relative_name(landing.partition_dir(root, landing.LABELED, team, week), root)
        raise EmptyPartitionError(
            f"no labeled cases for {team} up to week {week} (looked under {folder} and earlier weeks"
            f"{f' within {window_weeks} week(s)' if window_weeks else ''}); land files there or run "
            "`turbine-demo-data`"
        )
    return _storable(pd.concat(frames, ignore_index=True))


def landed_labels(root: UPath, team: str, case_ids: set[str] | None = None) -> pd.DataFrame | None:
    """``case_id`` and ``target`` of the cases whose labels have landed in any week (of the given cases, or of
    all); None when none has."""
    weeks = landing.landed_weeks(root, landing.LABELED, team)
    if not weeks:
        return None
    cases = load_labeled_cases(root, team, weeks[-1])
    labeled = cases.loc[cases[CASE_ID].isin(case_ids) if case_ids is not None else slice(None), [CASE_ID, TARGET]]
    return labeled if len(labeled) else None


def _storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns stay numeric; a column holding text is kept as text so nothing is lost and
    Parquet can store it, and the numeric check reports it."""
    frame[CASE_ID] = frame[CASE_ID].astype(str)
    for column in (*FEATURE_COLUMNS, TARGET):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].astype("string")
    return frame


NOT_NUMERIC = "is not numeric"
MISSING = "is NaN"
INFINITE = "is infinite"
BEYOND_FLOAT32 = "is beyond float32 range (infinite to the model)"
NEGATIVE = "is negative (no measurement is)"
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The models read features as float32: a larger magnitude, finite in float64, reaches them as inf."""

UNUSUALLY_LARGE_FACTOR = 1.25
UNUSUALLY_LARGE: dict[str, float] = {
    column: UNUSUALLY_LARGE_FACTOR * float(largest)
    for column, largest in zip(FEATURE_COLUMNS, load_breast_cancer().data.max(axis=0), strict=True)
}
"""Per feature, the value above which a measurement is unusually large: a quarter beyond the largest of the
569 WDBC cases. Such values are valid (large nuclei are what cancers have): scored and flagged, not refused."""


def value_problems(values: np.ndarray) -> dict[str, np.ndarray]:
    """Masks of the numbers (float64) no model should get, by kind; NaN (a missing value) is none of them."""
    finite = np.isfinite(values)
    return {
        INFINITE: np.isinf(values),
        BEYOND_FLOAT32: finite & (np.abs(values) > FLOAT32_MAX),
        NEGATIVE: finite & (values < 0),  # all 30 WDBC features are sizes, counts or ratios of them
    }


def usable(values: np.ndarray) -> np.ndarray:
    """True where a number (float64) can be scored: finite, within float32's range, not negative."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (np.abs(values) <= FLOAT32_MAX) & (values >= 0)


def _cells(frame: pd.DataFrame | pa.RecordBatch, column: str) -> pa.Array:
    """One column as Arrow, whatever holds it: a numeric column as float64 (NaN as NaN), others as text."""
    if isinstance(frame, pa.RecordBatch):
        return frame.column(column)
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return pa.array(values.to_numpy(dtype=np.float64, na_value=np.nan))
    try:
        return pa.array(values, pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects: each cell's text
        return pa.array([None if pd.isna(v) else str(v) for v in values], pa.string())


def cell_problems(frame: pd.DataFrame | pa.RecordBatch, column: str) -> dict[str, np.ndarray]:
    """Boolean masks of the bad cells of one feature column, by kind of problem (the messages' words)."""
    cells = _cells(frame, column)
    numbers = to_float64(cells)
    not_numeric = text_not_numbers(cells)
    return {NOT_NUMERIC: not_numeric, MISSING: np.isnan(numbers) & ~not_numeric, **value_problems(numbers)}


def unusually_large(frame: pd.DataFrame | pa.RecordBatch) -> pd.Series | np.ndarray:
    """True for the rows with some feature above its UNUSUALLY_LARGE bound (a Series for a frame)."""
    rows = np.zeros(len(frame), dtype=bool)
    for column in FEATURE_COLUMNS:
        rows |= unusually_large_cells(to_float64(_cells(frame, column)), column)
    return pd.Series(rows, index=frame.index) if isinstance(frame, pd.DataFrame) else rows


def unusually_large_cells(values: np.ndarray, column: str) -> np.ndarray:
    """The usable values of ``column`` above its UNUSUALLY_LARGE bound."""
    with np.errstate(invalid="ignore"):
        return usable(values) & (values > UNUSUALLY_LARGE[column])


def unusual_values_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per feature with unusually large values: how many, the largest, and the bound (for metadata)."""
    rows = []
    for column in FEATURE_COLUMNS:
        values = to_float64(_cells(frame, column))
        mask = unusually_large_cells(values, column)
        if mask.any():
            rows.append(
                {
                    "feature": column,
                    "rows": int(mask.sum()),
                    "largest": float(values[mask].max()),
                    "unusual above": round(UNUSUALLY_LARGE[column], 6),
                }
            )
    return pd.DataFrame(rows, columns=["feature", "rows", "largest", "unusual above"])


def _per_file(frame: pd.DataFrame, mask, column: str, detail: str) -> list[Problem]:
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    counts = frame.loc[mask, SOURCE_FILE].value_counts(sort=False)
    return [Problem(column, file, int(rows), detail) for file, rows in sorted(counts.items())]


def check_numeric_features(frame: pd.DataFrame) -> CheckOutcome:
    problems = [
        problem
        for column in FEATURE_COLUMNS
        for problem in _per_file(frame, cell_problems(frame, column)[NOT_NUMERIC], column, NOT_NUMERIC)
    ]
    return CheckOutcome("feature columns numeric", problems)


def check_finite_features(frame: pd.DataFrame) -> CheckOutcome:
    """Every feature value usable by a model: not NaN, not infinite, within float32's range, not negative."""
    problems = []
    for column in FEATURE_COLUMNS:
        masks = cell_problems(frame, column)
        for detail in (MISSING, INFINITE, BEYOND_FLOAT32, NEGATIVE):
            problems += _per_file(frame, masks[detail], column, detail)
    return CheckOutcome("no NaN, infinite, out-of-range or negative values", problems)


def check_labels(frame: pd.DataFrame) -> CheckOutcome:
    valid = frame[TARGET].isin([MALIGNANT, BENIGN]).to_numpy(dtype=bool)
    detail = f"holds a label other than {MALIGNANT} ({CLASS_NAMES[MALIGNANT]}) or {BENIGN} ({CLASS_NAMES[BENIGN]})"
    return CheckOutcome("labels valid", _per_file(frame, ~valid, TARGET, detail))


def check_unique_case_ids(frame: pd.DataFrame) -> CheckOutcome:
    duplicated = frame[CASE_ID].duplicated(keep=False).to_numpy()
    return CheckOutcome("case ids unique", _per_file(frame, duplicated, CASE_ID, "repeats a case id"))


def check_rows_per_class(frame: pd.DataFrame, minimum: int) -> CheckOutcome:
    counts = class_counts(frame)
    problems = [
        Problem(TARGET, "all files", counts[name], f"has fewer than {minimum} {name} cases")
        for name in CLASS_NAMES
        if counts[name] < minimum
    ]
    return CheckOutcome(f"at least {minimum} rows per class", problems)


def row_problems(frame: pd.DataFrame | pa.RecordBatch) -> pd.Series:
    """A reason per row ('' when the row is clean), naming each bad column: the quarantine's words."""
    index = frame.index if isinstance(frame, pd.DataFrame) else pd.RangeIndex(frame.num_rows)
    reasons = pd.Series("", index=index, dtype="object")
    for column in FEATURE_COLUMNS:
        for detail, mask in cell_problems(frame, column).items():
            if mask.any():
                reasons[mask] = reasons[mask] + f"'{column}' {detail}; "
    return reasons.str.rstrip("; ")


def class_counts(frame: pd.DataFrame) -> dict[str, int]:
    labels = pd.to_numeric(frame[TARGET], errors="coerce")
    return {CLASS_NAMES[code]: int((labels == code).sum()) for code in (MALIGNANT, BENIGN)}


def fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of the cases: the data version recorded with every model trained on them."""
    hashed = pd.util.hash_pandas_object(frame.loc[:, [CASE_ID, *FEATURE_COLUMNS, TARGET]], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class SplitParams:
    """How labeled cases are divided: a fixed holdout by case id, and cross-fitting folds over the rest."""

    test_fraction: float = 0.2
    """Share of case ids held out for the final grade and the promotion gate, never trained or tuned on."""
    folds: int = 5
    """Cross-fitting folds over the development cases (out-of-fold scores choose thresholds and champions)."""
    seed: int = TRAINING_SEED
    """Seed of the stratified fold assignment (the holdout depends on the case ids alone)."""

    def __post_init__(self):
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.folds < 2:
            raise ValueError(f"cross-fitting needs at least 2 folds, got {self.folds}")

    @property
    def scheme(self) -> str:
        """Names the holdout: versions trained under the same scheme never saw each other's holdout cases."""
        return f"{HOLDOUT_SCHEME}:{self.test_fraction:g}"


EARLY_STOPPING_FRACTION = 0.2
"""Default share of each cross-fitting fold's training cases held back for early stopping."""
HOLDOUT_SCHEME = "case-id-sha256-holdout"
HOLDOUT_SCHEME_COLUMN = "holdout_scheme"
"""Carried by the holdout table, so whatever reads it knows (and registers) the scheme it came from."""
FOLD = "fold"


def in_holdout(case_ids: pd.Series, test_fraction: float) -> np.ndarray:
    """True for the case ids in the holdout: a pure function of each id (a SHA-256 bucket), so a case stays
    in the same split every week, whatever else landed."""
    buckets = [int.from_bytes(hashlib.sha256(str(case).encode()).digest()[:8], "big") / 2**64 for case in case_ids]
    return np.asarray(buckets) < test_fraction


def development_and_holdout(
    frame: pd.DataFrame, params: SplitParams = SplitParams()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The development cases (with a stratified ``fold`` for cross-fitting) and the fixed holdout."""
    holdout_mask = in_holdout(frame[CASE_ID], params.test_fraction)
    development, holdout = frame.loc[~holdout_mask], frame.loc[holdout_mask]
    for name, part, needed in (("development", development, params.folds), ("holdout", holdout, 1)):
        counts = class_counts(part)
        if min(counts.values()) < needed:
            raise ValueError(
                f"the {name} cases ({len(part)} of {len(frame)}, holdout share {params.test_fraction:g} by case id) "
                f"have class counts {counts}; need at least {needed} of each class"
                + (f" for {params.folds} cross-fitting folds" if name == "development" else "")
                + ": land more cases or change the split"
            )
    folds = StratifiedKFold(n_splits=params.folds, shuffle=True, random_state=params.seed)
    fold_of_row = np.empty(len(development), dtype=np.int64)
    for fold, (_, rows) in enumerate(folds.split(np.zeros(len(development)), development[TARGET].astype(int))):
        fold_of_row[rows] = fold
    development = development.assign(**{FOLD: fold_of_row})
    return development.reset_index(drop=True), holdout.reset_index(drop=True)
