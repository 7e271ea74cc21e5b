"""Labeled case data: loading from the landing zone, validation rules, stratified splits.

The same cell-level rules (text in a numeric column, NaN, inf) serve two callers: the blocking
checks on ``raw_data`` (counts per column and file) and batch scoring (a reason per row, for the
quarantine file). They live here once.
"""

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from upath import UPath

from turbine_dagster.core import landing
from turbine_dagster.core.schema import BENIGN, CASE_ID, CLASS_NAMES, FEATURE_COLUMNS, MALIGNANT, SOURCE_FILE, TARGET

WEEK = "week"
LABELED_COLUMNS = (CASE_ID, *FEATURE_COLUMNS, TARGET)


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


def load_labeled_cases(root: UPath, team: str, week: str, window_weeks: int = 0) -> pd.DataFrame:
    """All labeled cases of ``team`` landed up to ``week`` (within the window), one frame.

    Fails on what makes a table impossible (no files, unreadable or unsupported files, missing
    columns); value problems are kept in the frame for the checks to report with file names.
    """
    weeks = weeks_in_window(landing.landed_weeks(root, landing.LABELED, team), landing.validate_week(week), window_weeks)
    frames = []
    for landed_week in weeks:
        for path in landing.data_files(landing.partition_dir(root, landing.LABELED, team, landed_week), root):
            name = landing.relative_name(path, root)
            frame = landing.read_file(path, root)
            missing = [c for c in LABELED_COLUMNS if c not in frame.columns]
            if missing:
                listed = ", ".join(f"'{c}'" for c in missing)
                raise landing.LandingError(
                    f"column {listed} missing in {name} ({len(frame)} rows); every labeled file needs "
                    f"'{CASE_ID}', the 30 feature columns and '{TARGET}'"
                )
            frame = frame.loc[:, list(LABELED_COLUMNS)].assign(**{WEEK: landed_week, SOURCE_FILE: name})
            frames.append(frame)
    if not frames or sum(len(f) for f in frames) == 0:
        folder = landing.relative_name(landing.partition_dir(root, landing.LABELED, team, week), root)
        raise EmptyPartitionError(
            f"no labeled cases for {team} up to week {week} (looked under {folder} and earlier weeks"
            f"{f' within {window_weeks} week(s)' if window_weeks else ''}); land files there or run "
            "`turbine-demo-data`"
        )
    return _storable(pd.concat(frames, ignore_index=True))


def landed_labels(root: UPath, team: str, case_ids: set[str]) -> pd.DataFrame | None:
    """``case_id`` and ``target`` of the given cases whose labels have landed in any week; None when none has."""
    weeks = landing.landed_weeks(root, landing.LABELED, team)
    if not weeks:
        return None
    cases = load_labeled_cases(root, team, weeks[-1])
    labeled = cases.loc[cases[CASE_ID].isin(case_ids), [CASE_ID, TARGET]]
    return labeled if len(labeled) else None


def _storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns stay numeric; a column holding text is kept as text so nothing is lost and
    Parquet can store it, and the numeric check reports it."""
    frame[CASE_ID] = frame[CASE_ID].astype(str)
    for column in (*FEATURE_COLUMNS, TARGET):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].astype("string")
    return frame


def cell_problems(frame: pd.DataFrame, column: str) -> dict[str, pd.Series]:
    """Boolean masks of the bad cells of one feature column, by kind of problem."""
    values = frame[column]
    numeric = pd.to_numeric(values, errors="coerce").astype("float64")
    missing = values.isna().to_numpy()
    not_numeric = numeric.isna().to_numpy() & ~missing
    infinite = np.isinf(numeric.to_numpy(na_value=np.nan))
    return {"is not numeric": not_numeric, "is NaN": missing, "is infinite": infinite}


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
        for problem in _per_file(frame, cell_problems(frame, column)["is not numeric"], column, "is not numeric")
    ]
    return CheckOutcome("feature columns numeric", problems)


def check_finite_features(frame: pd.DataFrame) -> CheckOutcome:
    problems = []
    for column in FEATURE_COLUMNS:
        masks = cell_problems(frame, column)
        problems += _per_file(frame, masks["is NaN"], column, "is NaN")
        problems += _per_file(frame, masks["is infinite"], column, "is infinite")
    return CheckOutcome("no NaN or infinite values", problems)


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


def row_problems(frame: pd.DataFrame) -> pd.Series:
    """A reason per row ('' when the row is clean), naming each bad column: the quarantine's words."""
    reasons = pd.Series("", index=frame.index, dtype="object")
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
    seed: int = 42
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


HOLDOUT_SCHEME = "case-id-sha256-holdout"
HOLDOUT_SCHEME_COLUMN = "holdout_scheme"
"""Carried by the holdout table, so whatever reads it knows (and registers) the scheme it came from."""
FOLD = "fold"


def in_holdout(case_ids: pd.Series, test_fraction: float) -> np.ndarray:
    """True for the case ids in the holdout: a pure function of each id (a SHA-256 bucket), so a case stays
    in the same split every week, whatever else landed."""
    buckets = [int.from_bytes(hashlib.sha256(str(case).encode()).digest()[:8], "big") / 2**64 for case in case_ids]
    return np.asarray(buckets) < test_fraction


def development_and_holdout(frame: pd.DataFrame, params: SplitParams = SplitParams()) -> tuple[pd.DataFrame, pd.DataFrame]:
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
