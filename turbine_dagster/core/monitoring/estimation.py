"""A scored week's recall and precision estimated from its scores alone, before its diagnoses land:
confidence-based performance estimation (CBPE, as in NannyML).

If P(malignant) is calibrated (of the cases scored p, a share p is malignant), a week scored p_i at threshold t
has known expected outcome counts: true positives E[TP] = sum of p_i >= t, missed cancers E[FN] = sum of
p_i < t, false positives E[FP] = sum of (1 - p_i) over p_i >= t. Estimated recall is E[TP] / (E[TP] + E[FN]),
precision E[TP] / (E[TP] + E[FP]).

It is only as good as calibration, so calibration is checked on the holdout (labeled cases the model never
trained on) and the estimate says which scores it trusted: the raw scores when their holdout calibration error
(ECE) is both small and within what chance gives calibrated scores; else the scores through an isotonic map
fitted on the holdout, when that map's cross-fitted ECE passes the same test; else none ("not estimable", with
the reason), as also when the holdout has too few malignant cases to judge. Either way the flagged cases are the
ones the model flags, raw p >= t: recalibration changes how likely a case is malignant, not the decision.
Malignant is class 0 (see ``schema``).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold

from turbine_dagster.core.evaluation.metrics import as_labels, as_scores
from turbine_dagster.core.schema import MALIGNANT

# The figures below are from benchmarks/performance_estimate.py: WDBC, 3 x 5-fold outer CV, the holdout a share
# of each outer-training fold (20 %: 91 cases, 34 malignant, unless said), stand-in models.
CALIBRATION_BINS = 10
"""Equal-mass bins of the reliability table: ~9 cases a bin on a 91-case holdout."""
MIN_MALIGNANT_CASES = 20
"""Fewest malignant holdout cases calibration is judged on. At 17 (a 10 % holdout) chance alone lets calibrated
logistic-regression scores reach an ECE of 0.062 (median of the 95th percentiles), above the ceiling, and
deliberately distorted ones (P(malignant) cubed: ECE median 0.041) sat at their chance level (0.040): the check
could not tell them apart. At 26 it caught the distortion in 11 of 15 holdouts, at 34 in 13 of 15."""
MAX_EXPECTED_CALIBRATION_ERROR = 0.05
"""Largest holdout ECE at which scores are trusted, whatever chance allows. Calibrated logistic-regression scores
had ECE 0.006-0.035 (median 0.024) on 34-malignant holdouts, so the ceiling leaves them alone there; it binds on
small holdouts, where chance allows more than an estimate can bear. Alone it is too loose for sharp scores: the
cubed scores had ECE 0.028-0.069 and passed it in 10 of 15 holdouts, hence the chance test beside it."""
CHANCE_LEVEL = 0.95
"""Scores also fail when their ECE is above what this share of holdouts stays under when the outcomes are drawn
from these very scores: sharp scores have a small chance ECE (0.032 for the cubed ones), so a fixed ceiling alone
hides their real miscalibration. It caught the cubed scores in 13 of 15 holdouts and passed the calibrated
logistic regression in all 15; truly calibrated holdouts fail it 5 % of the time by construction."""
CHANCE_DRAWS = 1000
"""Simulated holdouts of outcomes drawn from the scores themselves, behind ``chance_calibration_error``."""
CALIBRATION_SEED = 0
"""Default seed of those simulated outcomes."""
INTERVAL_LEVEL = 0.90
"""Share of the realised recall (and precision) the reported interval covers when the probabilities are right."""
OUTCOME_DRAWS = 4000
"""Simulated weeks of outcomes behind each interval: its 5 % tails rest on 200 draws each."""
ESTIMATE_SEED = 0
"""Default seed of the simulated outcomes."""
MAX_PROBABILITY_GROUPS = 512
"""Most groups of cases the simulation draws binomial counts over (see ``_simulated_malignant_counts``)."""
RECALIBRATION_FOLDS = 5
"""Folds of the holdout that cross-fit the isotonic map's own calibration check."""
RECALIBRATION_SEED = 0
"""Default seed of the recalibration's folds."""

RAW_SCORES = "raw scores"
ISOTONIC_RECALIBRATION = "isotonic recalibration on the holdout"
NOT_ESTIMABLE = "not estimable"
EstimationMethod = Literal["raw scores", "isotonic recalibration on the holdout", "not estimable"]


def _probabilities(p_malignant: Any, n_rows: int, name: str) -> np.ndarray:
    scores = as_scores(p_malignant, n_rows, name)
    if np.any((scores < 0.0) | (scores > 1.0)):
        raise ValueError(f"{name} holds values outside [0, 1]; P(malignant) is a probability")
    return scores


def _labels_and_scores(labels: Any, p_malignant: Any) -> tuple[np.ndarray, np.ndarray]:
    codes = as_labels(labels, "labels")
    if len(codes) == 0:
        raise ValueError("labels are empty: calibration needs labeled cases (the holdout)")
    return codes, _probabilities(p_malignant, len(codes), "p_malignant")


def _simulated_malignant_counts(probabilities: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` samples of how many of the cases are malignant, each malignant with its probability (a
    Poisson-binomial count). Cases sharing a probability are one binomial draw; beyond ``MAX_PROBABILITY_GROUPS``
    distinct probabilities, cases are pooled in equal-mass groups of neighbouring probabilities drawn at the
    group's mean: the mean count stays exact and the spread grows by at most the within-group spread (a
    slightly wider interval), while the work stays O(draws x groups) whatever the week's size."""
    values, counts = np.unique(probabilities, return_counts=True)
    if len(values) > MAX_PROBABILITY_GROUPS:
        groups = np.array_split(np.sort(probabilities), MAX_PROBABILITY_GROUPS)
        values = np.array([group.mean() for group in groups])
        counts = np.array([len(group) for group in groups])
    return rng.binomial(counts, values, size=(draws, len(values))).sum(axis=1)


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-mass bin of a reliability plot: its mean P(malignant) against the share that was malignant."""

    mean_predicted: float
    observed_malignant_rate: float
    cases: int


@dataclass(frozen=True)
class CalibrationCheck:
    """How well P(malignant) matched outcomes on labeled cases (the holdout)."""

    cases: int
    malignant_cases: int
    expected_calibration_error: float
    """Case-weighted mean over the bins of |mean predicted - observed malignant rate|."""
    maximum_calibration_error: float
    """Largest of those gaps over the bins: with ~9 cases a bin, mostly noise; reported, not gated on."""
    chance_calibration_error: float
    """The ECE that ``CHANCE_LEVEL`` of holdouts stay under when the outcomes are drawn from these very scores
    (perfect calibration): what chance alone gives with this many cases and scores this sharp."""
    brier_score: float
    """Mean squared difference between P(malignant) and the outcome (1 malignant, 0 benign)."""
    reliability: tuple[ReliabilityBin, ...]
    """Equal-mass bins in ascending order of score."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "malignant_cases": self.malignant_cases,
            "expected_calibration_error": self.expected_calibration_error,
            "maximum_calibration_error": self.maximum_calibration_error,
            "chance_calibration_error": self.chance_calibration_error,
            "brier_score": self.brier_score,
            "reliability": [
                {
                    "mean_predicted": b.mean_predicted,
                    "observed_malignant_rate": b.observed_malignant_rate,
                    "cases": b.cases,
                }
                for b in self.reliability
            ],
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "CalibrationCheck":
        return cls(
            cases=int(document["cases"]),
            malignant_cases=int(document["malignant_cases"]),
            expected_calibration_error=float(document["expected_calibration_error"]),
            maximum_calibration_error=float(document["maximum_calibration_error"]),
            chance_calibration_error=float(document["chance_calibration_error"]),
            brier_score=float(document["brier_score"]),
            reliability=tuple(
                ReliabilityBin(float(b["mean_predicted"]), float(b["observed_malignant_rate"]), int(b["cases"]))
                for b in document["reliability"]
            ),
        )


def _chance_calibration_error(bin_scores: list[np.ndarray], draws: int, rng: np.random.Generator) -> float:
    """The ``CHANCE_LEVEL`` quantile of the ECE over ``draws`` holdouts whose outcomes are drawn from the scores."""
    cases = sum(len(scores) for scores in bin_scores)
    errors = np.zeros(draws)
    for scores in bin_scores:
        drawn_rates = _simulated_malignant_counts(scores, draws, rng) / len(scores)
        errors += len(scores) / cases * np.abs(scores.mean() - drawn_rates)
    return float(np.quantile(errors, CHANCE_LEVEL))


def _equal_mass_bins(scores: np.ndarray, bins: int) -> list[np.ndarray]:
    """Case indices of up to ``bins`` bins of about equal size in score order. Tied scores share a bin (that of
    their first position), so which tied case lands where never depends on the input order; bins left empty
    by ties are dropped."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    first_of_tie = np.searchsorted(ordered, ordered, side="left")
    bin_of_position = first_of_tie * bins // len(scores)
    starts = np.flatnonzero(np.diff(bin_of_position, prepend=-1))
    return np.split(order, starts[1:])


def check_calibration(
    labels: Any, p_malignant: Any, bins: int = CALIBRATION_BINS, seed: int = CALIBRATION_SEED
) -> CalibrationCheck:
    """Reliability table, ECE (with what chance alone gives), maximum calibration error and Brier score of
    ``p_malignant`` against ``labels`` (class codes: 0 malignant, 1 benign). Bins hold equal numbers of cases in
    score order (fewer when there are fewer cases or tied scores), so no bin is left near-empty by scores piled
    up near 0 and 1."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    codes, scores = _labels_and_scores(labels, p_malignant)
    malignant = (codes == MALIGNANT).astype(np.float64)
    bin_rows = _equal_mass_bins(scores, bins)
    reliability = tuple(
        ReliabilityBin(float(scores[rows].mean()), float(malignant[rows].mean()), len(rows)) for rows in bin_rows
    )
    gaps = np.array([abs(b.mean_predicted - b.observed_malignant_rate) for b in reliability])
    weights = np.array([b.cases for b in reliability]) / len(scores)
    chance = _chance_calibration_error([scores[rows] for rows in bin_rows], CHANCE_DRAWS, np.random.default_rng(seed))
    return CalibrationCheck(
        cases=len(scores),
        malignant_cases=int(malignant.sum()),
        expected_calibration_error=float(np.dot(weights, gaps)),
        maximum_calibration_error=float(gaps.max()),
        chance_calibration_error=chance,
        brier_score=float(np.mean((scores - malignant) ** 2)),
        reliability=reliability,
    )


@dataclass(frozen=True)
class Recalibration:
    """An isotonic map of P(malignant) fitted on holdout outcomes, as plain numbers: between the breakpoints
    ``x`` (ascending) it interpolates ``y`` linearly, outside it holds the end values (as sklearn's
    ``IsotonicRegression(out_of_bounds="clip")`` predicts)."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    check: CalibrationCheck
    """Calibration of the holdout's scores through maps fitted without them (cross-fitted): the map's own
    check on the holdout it was fitted on would be near perfect by construction."""

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)
        if len(x) == 0 or len(x) != len(y):
            raise ValueError(
                f"a recalibration needs as many y as x breakpoints, at least one; got {len(x)} x, {len(y)} y"
            )
        if not (
            np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)
        ):
            raise ValueError("recalibration breakpoints must be finite, x strictly and y weakly increasing")
        if y[0] < 0.0 or y[-1] > 1.0:
            raise ValueError(f"recalibrated probabilities must lie in [0, 1], got {y[0]} to {y[-1]}")

    def apply(self, p_malignant: Any) -> np.ndarray:
        scores = np.asarray(p_malignant, dtype=np.float64).reshape(-1)
        return np.interp(_probabilities(scores, len(scores), "p_malignant"), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", "x": list(self.x), "y": list(self.y), "check": self.check.to_dict()}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "Recalibration":
        if document.get("method") != "isotonic":
            raise ValueError(f"unknown recalibration method {document.get('method')!r}; expected 'isotonic'")
        return cls(
            x=tuple(float(v) for v in document["x"]),
            y=tuple(float(v) for v in document["y"]),
            check=CalibrationCheck.from_dict(document["check"]),
        )


def _isotonic(codes: np.ndarray, scores: np.ndarray) -> IsotonicRegression:
    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, codes == MALIGNANT)


def fit_recalibration(
    labels: Any,
    p_malignant: Any,
    folds: int = RECALIBRATION_FOLDS,
    seed: int = RECALIBRATION_SEED,
    bins: int = CALIBRATION_BINS,
) -> Recalibration:
    """The isotonic regression of holdout outcomes (``labels``: 0 malignant, 1 benign) on the holdout's
    ``p_malignant``, with its calibration checked by ``folds``-fold cross-fitting on that holdout."""
    codes, scores = _labels_and_scores(labels, p_malignant)
    n_malignant = int(np.sum(codes == MALIGNANT))
    if min(n_malignant, len(codes) - n_malignant) < folds:
        raise ValueError(
            f"the holdout has {n_malignant} malignant and {len(codes) - n_malignant} benign cases; cross-fitting "
            f"the recalibration's check needs at least {folds} of each (estimate without recalibration)"
        )
    cross_fitted = np.empty(len(scores))
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(scores, codes)
    for fit_rows, check_rows in splits:
        cross_fitted[check_rows] = _isotonic(codes[fit_rows], scores[fit_rows]).predict(scores[check_rows])
    model = _isotonic(codes, scores)
    return Recalibration(
        x=tuple(float(v) for v in model.X_thresholds_),
        y=tuple(float(v) for v in model.y_thresholds_),
        check=check_calibration(codes, cross_fitted, bins),
    )


@dataclass(frozen=True)
class PerformanceEstimate:
    """A scored week's expected recall and precision, from its scores alone (see the module's docstring).

    The intervals are the spread of the realised recall and precision if each case is malignant with its
    probability: the outcomes' own chance, not the error of the calibration behind the probabilities.
    Estimates are None when not estimable (``reason`` says why), and recall or precision when undefined
    (no expected cancer, no flagged case).
    """

    method: EstimationMethod
    reason: str | None
    threshold: float
    cases: int
    flagged_cases: int
    calibration_error: float
    """Holdout ECE of the scores the estimate would use (raw or cross-fitted recalibrated)."""
    expected_cancers: float | None
    expected_missed_cancers: float | None
    estimated_recall: float | None
    estimated_precision: float | None
    recall_interval: tuple[float, float] | None
    precision_interval: tuple[float, float] | None
    interval_level: float = INTERVAL_LEVEL

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "reason": self.reason,
            "threshold": self.threshold,
            "cases": self.cases,
            "flagged_cases": self.flagged_cases,
            "calibration_error": self.calibration_error,
            "expected_cancers": self.expected_cancers,
            "expected_missed_cancers": self.expected_missed_cancers,
            "estimated_recall": self.estimated_recall,
            "estimated_precision": self.estimated_precision,
            "recall_interval": None if self.recall_interval is None else list(self.recall_interval),
            "precision_interval": None if self.precision_interval is None else list(self.precision_interval),
            "interval_level": self.interval_level,
        }


def _calibration_problem(check: CalibrationCheck, max_expected_calibration_error: float) -> str | None:
    """Why ``check``'s scores are not calibrated well enough to estimate from, or None when they are."""
    error = check.expected_calibration_error
    if error > max_expected_calibration_error:
        return f"ECE {error:.3f} is above {max_expected_calibration_error:g}"
    if error > check.chance_calibration_error:
        return (
            f"ECE {error:.3f} is above the {check.chance_calibration_error:.3f} that calibrated scores like these "
            f"exceed by chance in {1 - CHANCE_LEVEL:.0%} of holdouts"
        )
    return None


def _choose_scores(
    calibration: CalibrationCheck,
    recalibration: Recalibration | None,
    max_expected_calibration_error: float,
    min_malignant_cases: int,
) -> tuple[EstimationMethod, str | None, float]:
    """Which scores to trust, why none when none, and the holdout ECE of the ones it would use."""
    if calibration.malignant_cases < min_malignant_cases:
        return (
            NOT_ESTIMABLE,
            f"the holdout holds {calibration.malignant_cases} malignant cases; judging calibration needs at least "
            f"{min_malignant_cases}",
            calibration.expected_calibration_error,
        )
    raw_problem = _calibration_problem(calibration, max_expected_calibration_error)
    if raw_problem is None:
        return RAW_SCORES, None, calibration.expected_calibration_error
    if recalibration is None:
        return (
            NOT_ESTIMABLE,
            f"raw scores on the holdout: {raw_problem}; and no recalibration was given",
            calibration.expected_calibration_error,
        )
    recalibrated_problem = _calibration_problem(recalibration.check, max_expected_calibration_error)
    if recalibrated_problem is None:
        return ISOTONIC_RECALIBRATION, None, recalibration.check.expected_calibration_error
    return (
        NOT_ESTIMABLE,
        f"raw scores on the holdout: {raw_problem}; isotonically recalibrated (cross-fitted): {recalibrated_problem}",
        recalibration.check.expected_calibration_error,
    )


def _interval(values: np.ndarray) -> tuple[float, float] | None:
    if len(values) == 0:
        return None
    tail = (1.0 - INTERVAL_LEVEL) / 2
    # The realised rates are discrete: take observed values on the outside, so the interval holds at least
    # INTERVAL_LEVEL of them.
    return float(np.quantile(values, tail, method="lower")), float(np.quantile(values, 1 - tail, method="higher"))


def estimate_performance(
    p_malignant: Any,
    threshold: float,
    calibration: CalibrationCheck,
    recalibration: Recalibration | None = None,
    max_expected_calibration_error: float = MAX_EXPECTED_CALIBRATION_ERROR,
    min_malignant_cases: int = MIN_MALIGNANT_CASES,
    draws: int = OUTCOME_DRAWS,
    seed: int = ESTIMATE_SEED,
) -> PerformanceEstimate:
    """Expected recall and precision of a week's raw ``p_malignant`` at ``threshold`` (a case is flagged when
    p >= threshold), with the served model's holdout ``calibration`` and, optionally, its ``recalibration``
    deciding which probabilities to trust (see the module's docstring)."""
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    scores = np.asarray(p_malignant, dtype=np.float64).reshape(-1)
    scores = _probabilities(scores, len(scores), "p_malignant")
    if len(scores) == 0:
        raise ValueError("p_malignant is empty: a week with no scored case has no performance to estimate")
    flagged = scores >= threshold
    method, reason, calibration_error = _choose_scores(
        calibration, recalibration, max_expected_calibration_error, min_malignant_cases
    )
    counts = {"threshold": float(threshold), "cases": len(scores), "flagged_cases": int(flagged.sum())}
    if method == NOT_ESTIMABLE:
        return PerformanceEstimate(
            method=method,
            reason=reason,
            calibration_error=calibration_error,
            expected_cancers=None,
            expected_missed_cancers=None,
            estimated_recall=None,
            estimated_precision=None,
            recall_interval=None,
            precision_interval=None,
            **counts,
        )

    probabilities = scores if method == RAW_SCORES else recalibration.apply(scores)
    expected_caught = float(probabilities[flagged].sum())
    expected_missed = float(probabilities[~flagged].sum())
    expected_cancers = expected_caught + expected_missed
    # E[TP] + E[FP] is the sum of p + (1 - p) over the flagged cases: their count.
    n_flagged = counts["flagged_cases"]

    # Flagged and unflagged cases are independent: their malignant counts are drawn apart.
    caught_rng, missed_rng = np.random.default_rng(seed).spawn(2)
    caught = _simulated_malignant_counts(probabilities[flagged], draws, caught_rng)
    missed = _simulated_malignant_counts(probabilities[~flagged], draws, missed_rng)
    cancers = caught + missed
    return PerformanceEstimate(
        method=method,
        reason=None,
        calibration_error=calibration_error,
        expected_cancers=expected_cancers,
        expected_missed_cancers=expected_missed,
        estimated_recall=expected_caught / expected_cancers if expected_cancers > 0 else None,
        estimated_precision=expected_caught / n_flagged if n_flagged > 0 else None,
        recall_interval=_interval(caught[cancers > 0] / cancers[cancers > 0]),
        precision_interval=_interval(caught / n_flagged) if n_flagged > 0 else None,
        **counts,
    )


CALIBRATION_KEY = "calibration"
RECALIBRATION_KEY = "recalibration"
CALIBRATION_RECORD = "performance_estimate_calibration"
"""The registry entry's metrics key holding ``calibration_record``."""


def calibration_record(labels: Any, p_malignant: Any) -> dict[str, Any]:
    """What a registry entry keeps to estimate its version's performance later: the calibration check of these
    labeled scores and, where it can be fitted, their isotonic recalibration."""
    try:
        recalibration = fit_recalibration(labels, p_malignant).to_dict()
    except ValueError:  # too few cases of a class to cross-fit it: the raw check alone decides
        recalibration = None
    return {CALIBRATION_KEY: check_calibration(labels, p_malignant).to_dict(), RECALIBRATION_KEY: recalibration}


def estimate_from_record(p_malignant: Any, threshold: float, record: Mapping[str, Any] | None) -> PerformanceEstimate:
    """``estimate_performance`` from a registry entry's ``calibration_record``; not estimable without one."""
    scores = _probabilities(p_malignant, len(np.asarray(p_malignant).reshape(-1)), "p_malignant")
    if not record or record.get(CALIBRATION_KEY) is None:
        return PerformanceEstimate(
            method=NOT_ESTIMABLE,
            reason="the version was registered without a calibration check",
            threshold=float(threshold),
            cases=len(scores),
            flagged_cases=int(np.sum(scores >= threshold)),
            calibration_error=float("nan"),
            expected_cancers=None,
            expected_missed_cancers=None,
            estimated_recall=None,
            estimated_precision=None,
            recall_interval=None,
            precision_interval=None,
        )
    recalibration = record.get(RECALIBRATION_KEY)
    return estimate_performance(
        scores,
        threshold,
        CalibrationCheck.from_dict(record[CALIBRATION_KEY]),
        Recalibration.from_dict(recalibration) if recalibration else None,
    )
