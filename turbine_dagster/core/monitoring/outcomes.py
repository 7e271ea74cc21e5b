"""Diagnoses of scored cases, joined to the predictions that scored them: what the promise delivered.

A team lands outcomes as they come, under ``<landing>/outcomes/team=<t>/week=<w>/`` (``w``: the week they
landed), in any file the landing zone reads: a case id (``case_id`` or ``id``) and the diagnosis (``target``
0 = malignant / 1 = benign, or ``diagnosis`` M / B); a file in one of the labeled layouts works as it is. A case
diagnosed more than once keeps its latest diagnosis (a later landing week, then a later file name wins) and is
counted as re-diagnosed.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from scipy.stats import beta
from upath import UPath

from turbine_dagster.core.data import landing, layouts
from turbine_dagster.core.schema import BENIGN, CASE_ID, MALIGNANT, TARGET
from turbine_dagster.core.serving.columns import MODEL_VERSION, PREDICTED_LABEL

LANDED_WEEK = "landed_week"
ID_COLUMNS = (CASE_ID, "id")
_DIAGNOSIS_CODES = {"M": MALIGNANT, "B": BENIGN}
CONFIDENCE = 0.95


def read_outcome_file(path: UPath, root: UPath) -> pa.Table:
    """``case_id`` and ``target`` (0/1) of one outcome file; LandingError naming the file and the problem."""
    name = landing.relative_name(path, root)
    if path.suffix.lower() == ".data":  # UCI's wdbc.data has no header: its labeled layout reads it
        table = layouts.read_labels(path, root)
    else:
        table = _id_and_label(path, name)
    return pa.table({CASE_ID: table.column(CASE_ID).cast(pa.string()), TARGET: _codes(table.column(TARGET), name)})


def _id_and_label(path: UPath, name: str) -> pa.Table:
    try:
        with path.open("rb") as handle:
            if path.suffix.lower() == ".parquet":
                table = pq.read_table(handle)
            else:
                table = pacsv.read_csv(handle, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    except Exception as error:
        raise landing.LandingError(f"cannot read {name}: {str(error).splitlines()[0]}") from error
    columns = set(table.column_names)
    id_column = next((column for column in ID_COLUMNS if column in columns), None)
    label_column = next((column for column in (TARGET, layouts.DIAGNOSIS) if column in columns), None)
    if id_column is None or label_column is None:
        raise landing.LandingError(
            f"{name}: an outcome file needs a case id column ({' or '.join(ID_COLUMNS)}) and the diagnosis "
            f"({TARGET} 0/1 or {layouts.DIAGNOSIS} M/B); it has {sorted(columns)}"
        )
    return pa.table({CASE_ID: table.column(id_column), TARGET: table.column(label_column)})


def _code(value: Any) -> int | None:
    """0/1 (as numbers or text) or M/B, as a class code; None for anything else."""
    text = str(value).strip().upper() if value is not None else ""
    if text in _DIAGNOSIS_CODES:
        return _DIAGNOSIS_CODES[text]
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number in (MALIGNANT, BENIGN) else None


def _codes(labels: pa.ChunkedArray | pa.Array, name: str) -> pa.Array:
    values = labels.to_pylist()
    codes = [_code(value) for value in values]
    bad = sorted({str(value) for value, code in zip(values, codes, strict=True) if code is None})
    if bad:
        raise landing.LandingError(
            f"{name}: diagnoses {bad[:5]} are neither {TARGET} 0 (malignant) / 1 (benign) nor {layouts.DIAGNOSIS} "
            f"M / B ({sum(code is None for code in codes)} rows)"
        )
    return pa.array(codes, pa.int8())


@dataclass(frozen=True)
class LandedOutcomes:
    outcomes: pd.DataFrame
    """``case_id``, ``target``, ``landed_week``: one row per diagnosed case, its latest diagnosis."""
    files: int
    rows: int
    rediagnosed: int
    """Cases diagnosed more than once (the latest diagnosis is kept)."""
    changed_diagnosis: int
    """Of those, cases whose later diagnosis differs from an earlier one."""


def landed_outcomes(root: UPath, team: str, up_to_week: str | None = None) -> LandedOutcomes:
    """Every outcome ``team`` has landed (up to ``up_to_week`` when given), latest diagnosis per case."""
    parts, files = [], 0
    for week in landing.landed_weeks(root, landing.OUTCOMES, team):
        if up_to_week is not None and week > up_to_week:
            continue
        for order, path in enumerate(
            landing.data_files(landing.partition_dir(root, landing.OUTCOMES, team, week), root)
        ):
            table = read_outcome_file(path, root).to_pandas()
            parts.append(table.assign(**{LANDED_WEEK: week, "_order": order}))
            files += 1
    if not parts:
        empty = pd.DataFrame({CASE_ID: pd.Series(dtype=str), TARGET: pd.Series(dtype="int8"), LANDED_WEEK: []})
        return LandedOutcomes(empty, 0, 0, 0, 0)
    every = pd.concat(parts, ignore_index=True)
    every["_row"] = np.arange(len(every))
    every = every.sort_values([LANDED_WEEK, "_order", "_row"])
    repeated = every[every.duplicated(CASE_ID, keep=False)]
    changed = int((repeated.groupby(CASE_ID)[TARGET].nunique() > 1).sum())
    latest = every.drop_duplicates(CASE_ID, keep="last").drop(columns=["_order", "_row"]).reset_index(drop=True)
    return LandedOutcomes(latest, files, len(every), int(repeated[CASE_ID].nunique()), changed)


def clopper_pearson(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    if trials == 0:
        return None
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    return low, high


@dataclass(frozen=True)
class RealisedPerformance:
    """One model version's scored cases of one week against the diagnoses that have landed for them."""

    model_version: str
    scored: int
    scored_malignant: int
    """Cases the model called malignant."""
    diagnosed: int
    diagnosed_of_called_malignant: int
    diagnosed_of_called_benign: int
    caught: int
    missed: int
    false_alarms: int
    cleared: int
    malignant_recall: float | None
    malignant_recall_ci: tuple[float, float] | None
    malignant_precision: float | None
    malignant_precision_ci: tuple[float, float] | None

    @property
    def completeness_called_malignant(self) -> float | None:
        return self.diagnosed_of_called_malignant / self.scored_malignant if self.scored_malignant else None

    @property
    def completeness_called_benign(self) -> float | None:
        called_benign = self.scored - self.scored_malignant
        return self.diagnosed_of_called_benign / called_benign if called_benign else None

    @property
    def recall_is_biased(self) -> bool:
        """Cases called benign are followed up less, and a missed cancer surfaces only through follow-up: recall
        measured while they are less complete than the cases called malignant overstates it."""
        malignant, benign = self.completeness_called_malignant, self.completeness_called_benign
        return malignant is not None and benign is not None and benign < malignant

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "completeness_called_malignant": self.completeness_called_malignant,
            "completeness_called_benign": self.completeness_called_benign,
            "recall_is_biased": self.recall_is_biased,
        }


def realised_by_version(predictions: pd.DataFrame, outcomes: pd.DataFrame) -> list[RealisedPerformance]:
    """Per model version in ``predictions`` (``case_id``, ``predicted_label``, ``model_version``): confusion counts
    on the cases whose diagnosis is in ``outcomes`` (``case_id``, ``target``), recall and precision with their
    Clopper-Pearson intervals, and how complete the diagnoses are among the cases called malignant and benign."""
    joined = predictions.loc[:, [CASE_ID, PREDICTED_LABEL, MODEL_VERSION]].merge(
        outcomes.loc[:, [CASE_ID, TARGET]], on=CASE_ID, how="left"
    )
    results = []
    for version, scored in joined.groupby(MODEL_VERSION, sort=True):
        called = scored[PREDICTED_LABEL].to_numpy() == MALIGNANT
        diagnosed = scored[TARGET].notna().to_numpy()
        malignant = diagnosed & (scored[TARGET].to_numpy(dtype=float, na_value=np.nan) == MALIGNANT)
        benign = diagnosed & ~malignant
        caught, missed = int(np.sum(called & malignant)), int(np.sum(~called & malignant))
        false_alarms, cleared = int(np.sum(called & benign)), int(np.sum(~called & benign))
        results.append(
            RealisedPerformance(
                model_version=str(version),
                scored=int(len(scored)),
                scored_malignant=int(called.sum()),
                diagnosed=int(diagnosed.sum()),
                diagnosed_of_called_malignant=int(np.sum(diagnosed & called)),
                diagnosed_of_called_benign=int(np.sum(diagnosed & ~called)),
                caught=caught,
                missed=missed,
                false_alarms=false_alarms,
                cleared=cleared,
                malignant_recall=caught / (caught + missed) if caught + missed else None,
                malignant_recall_ci=clopper_pearson(caught, caught + missed),
                malignant_precision=caught / (caught + false_alarms) if caught + false_alarms else None,
                malignant_precision_ci=clopper_pearson(caught, caught + false_alarms),
            )
        )
    return results


def unmatched_outcomes(outcomes: pd.DataFrame, scored_case_ids: Sequence[str] | pd.Series) -> int:
    """Diagnoses whose case id no scored week holds: counted, never dropped silently."""
    return int((~outcomes[CASE_ID].isin(pd.Index(scored_case_ids))).sum())
