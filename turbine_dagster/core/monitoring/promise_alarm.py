"""The sequential alarm on the recall promise: a Bernoulli CUSUM on the miss rate among malignant outcomes.

A serving champion promises expected malignant recall >= ``promised_recall`` on the cases it scores. Their
diagnoses land weeks later, and a team sees about 40 cancers a week: a weekly "recall < 0.98" alarm is noise (at
recall exactly 0.98, a week of 40 cancers has at least one miss 55 % of the time). The evidence is summed across
weeks instead, by the log-likelihood-ratio CUSUM of "miss rate p1" against "miss rate p0":

    S_t = max(0, S_(t-1) + missed_t * ln(p1 / p0) + caught_t * ln((1 - p1) / (1 - p0)))

with p0 = 1 - (promised_recall - tolerance) and p1 = 1 - alarm_recall. It fires when S_t >= decision_limit. A
miss pushes S up, a caught cancer pulls it down a little; the floor at 0 keeps a long good stretch from banking
credit against a later drop. A promotion starts a fresh statistic: the new version has made no promise yet.

The default limit comes from ``benchmarks/promise_alarm.py``, which simulates weeks of Poisson(40) cancers.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np

from turbine_dagster.core.evaluation.metrics import DEFAULT_TARGET_RECALL


@dataclass(frozen=True)
class AlarmRule:
    """What the alarm tests and when it fires."""

    promised_recall: float = DEFAULT_TARGET_RECALL
    """The expected malignant recall the champion's split-conformal threshold promises."""
    tolerance: float = 0.01
    """How far below the promise a champion may really sit and still count as keeping it: the promise is an
    expectation over calibration draws, so one champion's true recall can be a little lower. The null is
    recall = promised_recall - tolerance (0.97 by default)."""
    alarm_recall: float = 0.94
    """The recall worth acting on: the alternative the CUSUM is tuned to detect fastest."""
    decision_limit: float = 2.5
    """The alarm fires when the statistic reaches this. From ``benchmarks/promise_alarm.py`` at Poisson(40)
    cancers a week: the largest limit on a 0.25 grid whose mean detection delay at recall 0.94 is within the
    6-week goal (5.75 weeks; 2.75 takes 6.25). Its average run to a false alarm at recall 0.98 is ~880 weeks
    (>= 832 counting censored runs at 2,600), over three times the 260-week (5-year) goal."""

    def __post_init__(self) -> None:
        # Fail when the rule is configured, not at the first alarm weeks later.
        if not 0 < self.promised_recall < 1:
            raise ValueError(f"promised_recall must be between 0 and 1, got {self.promised_recall}")
        if not 0 <= self.tolerance < self.promised_recall:
            raise ValueError(
                f"tolerance must be >= 0 and below promised_recall={self.promised_recall}, got {self.tolerance}"
            )
        if not 0 < self.alarm_recall < self.null_recall:
            raise ValueError(
                f"alarm_recall must be between 0 and promised_recall - tolerance = {self.null_recall:g} "
                f"(the recall the alarm treats as kept), got {self.alarm_recall}"
            )
        if not (math.isfinite(self.decision_limit) and self.decision_limit > 0):
            raise ValueError(f"decision_limit must be a positive number, got {self.decision_limit}")

    @property
    def null_recall(self) -> float:
        return self.promised_recall - self.tolerance

    @property
    def null_miss_rate(self) -> float:
        return 1 - self.null_recall

    @property
    def alarm_miss_rate(self) -> float:
        return 1 - self.alarm_recall

    @property
    def miss_weight(self) -> float:
        """Log-likelihood ratio of one missed cancer, ln(p1 / p0): positive."""
        return math.log(self.alarm_miss_rate / self.null_miss_rate)

    @property
    def catch_weight(self) -> float:
        """Log-likelihood ratio of one caught cancer, ln((1 - p1) / (1 - p0)): negative."""
        return math.log((1 - self.alarm_miss_rate) / (1 - self.null_miss_rate))

    def weekly_evidence(self, malignant_outcomes: Any, missed: Any) -> Any:
        """What a week adds to the statistic before the floor at 0 (scalars or numpy arrays alike)."""
        return missed * self.miss_weight + (malignant_outcomes - missed) * self.catch_weight


@dataclass(frozen=True)
class WeeklyOutcomes:
    """One week's diagnoses of cases the champion scored: the malignant ones, and those it scored benign."""

    week: str
    """The week's key. Keys are compared as strings, so they must sort chronologically (ISO dates do)."""
    malignant_outcomes: int
    missed: int

    def __post_init__(self) -> None:
        for name in ("malignant_outcomes", "missed"):
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool):
                raise ValueError(f"week {self.week}: {name} must be a whole number, got {value!r}")
        if not 0 <= self.missed <= self.malignant_outcomes:
            raise ValueError(
                f"week {self.week}: missed={self.missed} with malignant_outcomes={self.malignant_outcomes}; "
                f"missed counts malignant cases the champion scored benign, so 0 <= missed <= malignant_outcomes"
            )


@dataclass(frozen=True)
class AlarmState:
    """The alarm after the last week counted."""

    statistic: float
    decision_limit: float
    fired: bool
    """Whether the statistic reached the limit at any week since the reset: it stays fired until the next one."""
    fired_week: str | None
    """The first week the statistic reached the limit."""
    since_week: str | None
    """The reset (a promotion): weeks before it were not counted. None counts every week."""
    excursion_start_week: str | None
    """The first week of the current rise: the statistic was 0 the week before (or it is the first week counted).
    None while the statistic is 0."""
    excursion_missed: int
    excursion_malignant_outcomes: int
    """Misses and malignant outcomes from ``excursion_start_week`` on: the evidence the statistic now sums."""
    path: tuple[tuple[str, float], ...]
    """(week, statistic) for every week counted, oldest first."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe types only, for storage and sensors."""
        return {
            "statistic": float(self.statistic),
            "decision_limit": float(self.decision_limit),
            "fired": bool(self.fired),
            "fired_week": self.fired_week,
            "since_week": self.since_week,
            "excursion_start_week": self.excursion_start_week,
            "excursion_missed": int(self.excursion_missed),
            "excursion_malignant_outcomes": int(self.excursion_malignant_outcomes),
            "path": [{"week": week, "statistic": float(statistic)} for week, statistic in self.path],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AlarmState":
        return cls(
            **{key: value for key, value in data.items() if key != "path"},
            path=tuple((point["week"], point["statistic"]) for point in data["path"]),
        )


def _check_ascending(weeks: Sequence[WeeklyOutcomes]) -> None:
    for earlier, later in zip(weeks, weeks[1:], strict=False):
        if not earlier.week < later.week:
            raise ValueError(
                f"weeks must be in ascending order without repeats: {earlier.week!r} is followed by "
                f"{later.week!r}; sort the outcomes by week and sum any week given twice"
            )


def run_alarm(
    weeks: Sequence[WeeklyOutcomes], rule: AlarmRule = AlarmRule(), since_week: str | None = None
) -> AlarmState:
    """Apply the CUSUM week by week to the weeks from ``since_week`` (the last promotion) on."""
    _check_ascending(weeks)
    statistic = 0.0
    fired_week = None
    excursion_start_week = None
    excursion_missed = excursion_outcomes = 0
    path = []
    for outcomes in weeks:
        if since_week is not None and outcomes.week < since_week:
            continue
        if statistic == 0:
            excursion_start_week = outcomes.week
            excursion_missed = excursion_outcomes = 0
        statistic = max(0.0, statistic + rule.weekly_evidence(outcomes.malignant_outcomes, outcomes.missed))
        excursion_missed += outcomes.missed
        excursion_outcomes += outcomes.malignant_outcomes
        if statistic >= rule.decision_limit and fired_week is None:
            fired_week = outcomes.week
        path.append((outcomes.week, statistic))
    if statistic == 0:
        excursion_start_week = None
        excursion_missed = excursion_outcomes = 0
    return AlarmState(
        statistic=statistic,
        decision_limit=rule.decision_limit,
        fired=fired_week is not None,
        fired_week=fired_week,
        since_week=since_week,
        excursion_start_week=excursion_start_week,
        excursion_missed=excursion_missed,
        excursion_malignant_outcomes=excursion_outcomes,
        path=tuple(path),
    )


def simulate_run_lengths(
    true_recall: float,
    cancers_per_week: float,
    rule: AlarmRule = AlarmRule(),
    runs: int = 10_000,
    max_weeks: int = 2600,
    seed: int = 0,
) -> np.ndarray:
    """Weeks until the first alarm in ``runs`` independent simulations from a fresh statistic (a promotion).

    Each week has Poisson(``cancers_per_week``) malignant outcomes, as weekly volumes vary, of which
    Binomial(outcomes, 1 - ``true_recall``) are missed. An alarm in the first week is 1; a run without an alarm
    within ``max_weeks`` reports ``max_weeks + 1`` (censored), so a mean over runs is a lower bound of the
    average run length.
    """
    if not 0 <= true_recall <= 1:
        raise ValueError(f"true_recall must be between 0 and 1, got {true_recall}")
    if not cancers_per_week > 0:
        raise ValueError(f"cancers_per_week must be positive, got {cancers_per_week}")
    if runs < 1 or max_weeks < 1:
        raise ValueError(f"runs and max_weeks must be >= 1, got runs={runs}, max_weeks={max_weeks}")
    rng = np.random.default_rng(seed)
    run_lengths = np.full(runs, max_weeks + 1)
    running = np.arange(runs)  # runs without an alarm yet: only these are simulated further
    statistic = np.zeros(runs)
    for week in range(1, max_weeks + 1):
        outcomes = rng.poisson(cancers_per_week, running.size)
        missed = rng.binomial(outcomes, 1 - true_recall)
        statistic = np.maximum(0.0, statistic + rule.weekly_evidence(outcomes, missed))
        fired = statistic >= rule.decision_limit
        run_lengths[running[fired]] = week
        running, statistic = running[~fired], statistic[~fired]
        if running.size == 0:
            break
    return run_lengths
