"""False-alarm and detection rates of the drift rule, to choose and justify its defaults.

Usage: python benchmarks/drift_power.py [--weeks 200] [--rows 500] [--reference-rows 285] [--seed 0]

What "drawn from the reference distribution" means here. The only real data is the 569 rows of
the bundled WDBC data. Comparing a reference with a bootstrap of *itself* would be dishonest: the
week would share the reference's own sampling quirks, look closer to it than a real week does, and
false alarms would be undercounted. So the population is the *smoothed* WDBC distribution: a row is
one of the 569 rows drawn at random plus Gaussian noise of 0.1 standard deviation per feature (the
noise breaks the ties that repeated rows would create; the demo data adds 0.05 per row). The
reference and every week are **independent samples of that population**, as a model's training
data and a later week are:

- the reference has `--reference-rows` rows (default 285, half the data: smaller than a team's
  training set is likely to be; a smaller reference makes PSI noisier and KS weaker, so larger
  references do at least as well);
- a week has between 0.5x and 1.5x `--rows` rows, uniformly, as weekly volumes vary.

Because both are i.i.d. draws of one continuous distribution, "no drift" holds exactly and the
measured false-alarm rate is the rule's own. Real weeks are rarely that clean (a clinic's case mix
differs from week to week), so a second no-drift scenario stresses the rule: each week is drawn
from a random half of the 569 cases only, a narrower case mix than the reference's. It has no
shift, but the KS test, which assumes both samples come from one distribution, sees a difference.

Drift is injected by adding +delta standard deviations (of the full data) to features chosen at
random each week. Every rule is applied to the same per-feature statistics, computed once per week
and scenario by `detect_drift`.
"""

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

from turbine_dagster.core.monitoring.drift import DriftRule, detect_drift
from turbine_dagster.core.schema import FEATURE_COLUMNS

NOISE_SD = 0.1
"""Standard deviation of the smoothed-bootstrap noise, in standard deviations of each feature."""

FALSE_ALARM_GOAL = 0.05
DETECTION_GOAL = 0.95


@dataclass(frozen=True)
class Scenario:
    name: str
    shift_sd: float = 0.0
    shifted_features: int = 0
    case_share: float = 1.0
    """Share of the 569 cases a week is drawn from: below 1, a narrower case mix (no shift)."""


NO_DRIFT = Scenario("no drift")
CASE_MIX = Scenario("no drift, half the cases", case_share=0.5)
GOAL_SHIFT = Scenario("+0.5 sd on 5", shift_sd=0.5, shifted_features=5)
SCENARIOS = (
    NO_DRIFT,
    CASE_MIX,
    Scenario("+0.25 sd on 5", shift_sd=0.25, shifted_features=5),
    GOAL_SHIFT,
    Scenario("+1 sd on 1", shift_sd=1.0, shifted_features=1),
)

DEFAULT_RULE = DriftRule()
RULES = tuple(DriftRule(min_drifted_features=k, psi_threshold=psi) for k in (1, 2, 3) for psi in (0.1, 0.2))


def smoothed_bootstrap(cases: np.ndarray, feature_sd: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    drawn = cases[rng.integers(0, len(cases), rows)]
    return drawn + rng.normal(0.0, NOISE_SD, drawn.shape) * feature_sd


def simulate_week(
    data: np.ndarray,
    feature_sd: np.ndarray,
    scenario: Scenario,
    mean_rows: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    cases = data[rng.choice(len(data), size=round(len(data) * scenario.case_share), replace=False)]
    rows = int(rng.integers(mean_rows // 2, mean_rows * 3 // 2 + 1))
    week = smoothed_bootstrap(cases, feature_sd, rows, rng)
    shifted = rng.choice(week.shape[1], size=scenario.shifted_features, replace=False)
    week[:, shifted] += scenario.shift_sd * feature_sd[shifted]
    return pd.DataFrame(week, columns=FEATURE_COLUMNS)


def wilson_interval(hits: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % confidence interval of a rate; unlike the normal approximation it is sane near 0 and 1."""
    rate = hits / trials
    shrink = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / shrink
    half_width = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials**2)) / shrink
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def rule_label(rule: DriftRule) -> str:
    label = f"k={rule.min_drifted_features}, PSI>={rule.psi_threshold:g}"
    return f"{label} (default)" if rule == DEFAULT_RULE else label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=200, help="simulated weeks per scenario")
    parser.add_argument("--rows", type=int, default=500, help="mean rows per week")
    parser.add_argument("--reference-rows", type=int, default=285, help="rows of the reference")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    data = load_breast_cancer().data
    feature_sd = data.std(axis=0, ddof=1)
    rng = np.random.default_rng(args.seed)

    alarms = {(rule, scenario): 0 for rule in RULES for scenario in SCENARIOS}
    chance_flags = 0  # features with uncorrected p < 0.05 in no-drift weeks
    for _ in range(args.weeks):
        reference = pd.DataFrame(
            smoothed_bootstrap(data, feature_sd, args.reference_rows, rng), columns=FEATURE_COLUMNS
        )
        for scenario in SCENARIOS:
            week = simulate_week(data, feature_sd, scenario, args.rows, rng)
            # The rules share alpha, bins and correction, so one statistics table serves them all.
            statistics = detect_drift(reference, week, rule=DEFAULT_RULE).features
            for rule in RULES:
                alarms[rule, scenario] += rule.decides_drift(statistics)
            if scenario is NO_DRIFT:
                chance_flags += int((statistics["p_value"] < 0.05).sum())

    rates = pd.DataFrame(
        {s.name: [alarms[rule, s] / args.weeks for rule in RULES] for s in SCENARIOS},
        index=[rule_label(rule) for rule in RULES],
    )
    print(
        f"Share of weeks flagged as drifted: {args.weeks} weeks per scenario of "
        f"{args.rows // 2}-{args.rows * 3 // 2} rows vs a {args.reference_rows}-row reference; "
        f"alpha {DEFAULT_RULE.alpha:g}, {DEFAULT_RULE.correction} correction, "
        f"{DEFAULT_RULE.bins} PSI bins, seed {args.seed}.\n"
        f"The first two columns are false alarms, the others detections.\n"
    )
    print(rates.map(lambda rate: f"{rate:.1%}").to_string())

    false_alarms = alarms[DEFAULT_RULE, NO_DRIFT]
    detections = alarms[DEFAULT_RULE, GOAL_SHIFT]
    false_low, false_high = wilson_interval(false_alarms, args.weeks)
    detect_low, detect_high = wilson_interval(detections, args.weeks)
    goal_met = false_alarms / args.weeks <= FALSE_ALARM_GOAL and detections / args.weeks >= DETECTION_GOAL
    print(
        f"\nDefault rule: false alarms {false_alarms}/{args.weeks} "
        f"(95 % CI {false_low:.1%}-{false_high:.1%}); detection at {GOAL_SHIFT.name} "
        f"{detections}/{args.weeks} (95 % CI {detect_low:.1%}-{detect_high:.1%}). Goal "
        f"(false alarms <= {FALSE_ALARM_GOAL:.0%}, detection >= {DETECTION_GOAL:.0%}): "
        f"{'met' if goal_met else 'NOT met'}."
    )
    print(
        f"Without correction, {chance_flags / args.weeks:.2f} of {len(FEATURE_COLUMNS)} features "
        f"a week reach KS p < 0.05 in no-drift weeks."
    )
    print(f"Took {time.perf_counter() - started:.1f} s.")


if __name__ == "__main__":
    main()
