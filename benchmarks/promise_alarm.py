"""False alarms and detection delay of the sequential alarm on the recall promise, to choose and justify its limit.

Usage: python benchmarks/promise_alarm.py [--runs 20000] [--max-weeks 2600] [--seed 0] [--json out.json]

Every run starts from a fresh statistic (a promotion) and simulates weeks of Poisson(cancers a week) malignant
outcomes, each missed with probability 1 - true recall, until the first alarm or ``--max-weeks`` (censored).

- False alarms, at true recall 0.98 (the promise kept) and 0.97 (the null edge, promise - tolerance). "Alarms per
  5 years" is 260 x alarms / weeks simulated: the rate of a team that reviews each alarm and restarts the
  statistic, estimable despite censoring. "ARL0 >=" is the mean run length with censored runs counted at the
  horizon: a lower bound, and the figure the goal is judged on.
- Detection delay, at true recall 0.94, 0.92, 0.90 from the first week: from a fresh statistic, the slowest start
  (a statistic already above 0 when recall drops only gets there sooner), so an upper bound for a drop later on.
- The limit search: mean ARL0 and delay at 40 cancers a week over a grid of decision limits. The default is the
  largest limit of the grid whose mean delay at recall 0.94 meets the detection goal, provided its ARL0 meets the
  false-alarm goal: the most protection from false alarms that still detects a drop in time.
"""

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
from measuring import load_average  # benchmarks/, on the path when run as a script

from turbine_dagster.core.monitoring.promise_alarm import AlarmRule, simulate_run_lengths

FIVE_YEARS = 260
"""Weekly batches in 5 years."""
ARL0_GOAL = FIVE_YEARS
"""Fewer than one false alarm per 5 years at recall 0.98: an average run to a false alarm above 260 weeks."""
DELAY_GOAL = 6.0
"""A drop to recall 0.94 detected within 6 weeks on average, at 40 cancers a week."""
GOAL_CANCERS_PER_WEEK = 40
"""A WDBC-sized team."""
CANCERS_PER_WEEK = (10, 40, 150)
KEPT_RECALLS = (0.98, 0.97)
DROPPED_RECALLS = (0.94, 0.92, 0.90)
SEARCH_LIMITS = tuple(np.round(np.arange(1.5, 3.51, 0.25), 2))

DEFAULT_RULE = AlarmRule()


def false_alarm_row(lengths: np.ndarray, max_weeks: int) -> dict:
    alarms = int(np.sum(lengths <= max_weeks))
    weeks_simulated = int(np.minimum(lengths, max_weeks).sum())
    median = float(np.median(lengths))
    return {
        "alarms_per_5_years": FIVE_YEARS * alarms / weeks_simulated,
        "alarmed_within_5_years": float(np.mean(lengths <= FIVE_YEARS)),
        "arl0_lower_bound": float(np.minimum(lengths, max_weeks).mean()),
        "weeks_per_alarm": weeks_simulated / alarms if alarms else None,
        "median": median if median <= max_weeks else None,
        "censored": 1 - alarms / len(lengths),
    }


def delay_row(lengths: np.ndarray, max_weeks: int) -> dict:
    return {
        "mean": float(np.minimum(lengths, max_weeks).mean()),
        "median": float(np.median(lengths)),
        "p90": float(np.quantile(lengths, 0.9)),
        "censored": float(np.mean(lengths > max_weeks)),
    }


def weeks(value: float | None, beyond: str) -> str:
    """Whole weeks, or ``beyond`` where the simulation saw too few alarms to say."""
    return beyond if value is None else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000, help="simulated runs per scenario")
    parser.add_argument("--max-weeks", type=int, default=2600, help="censoring horizon of a run, in weeks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if args.max_weeks < FIVE_YEARS:
        parser.error(f"--max-weeks must be at least {FIVE_YEARS}: the false alarms are counted over 5 years")
    started = time.perf_counter()
    rule = DEFAULT_RULE

    def run_lengths(true_recall: float, cancers_per_week: float, scenario_rule: AlarmRule = rule) -> np.ndarray:
        # A seed per (recall, volume): each row is reproducible on its own, whatever else the run simulates.
        scenario_seed = [args.seed, round(true_recall * 1000), round(cancers_per_week)]
        seed = int(np.random.SeedSequence(scenario_seed).generate_state(1)[0])
        return simulate_run_lengths(true_recall, cancers_per_week, scenario_rule, args.runs, args.max_weeks, seed)

    print(
        f"Bernoulli CUSUM on the miss rate: null recall {rule.null_recall:g} (promised {rule.promised_recall:g} - "
        f"tolerance {rule.tolerance:g}), alternative {rule.alarm_recall:g}; weights miss {rule.miss_weight:+.4f}, "
        f"catch {rule.catch_weight:+.4f}; decision limit {rule.decision_limit:g}.\n"
        f"{args.runs:,} runs per scenario, censored at {args.max_weeks:,} weeks; Poisson weekly cancers; "
        f"seed {args.seed}; load average {load_average()}.\n"
        f"For scale: a weekly 'recall < {rule.promised_recall:g}' alarm at recall {rule.promised_recall:g} and "
        f"Poisson({GOAL_CANCERS_PER_WEEK}) cancers fires in "
        f"{1 - np.exp(-GOAL_CANCERS_PER_WEEK * (1 - rule.promised_recall)):.0%} of weeks.\n"
    )

    search = []
    for limit in SEARCH_LIMITS:
        limited = replace(rule, decision_limit=float(limit))
        kept = false_alarm_row(run_lengths(0.98, GOAL_CANCERS_PER_WEEK, limited), args.max_weeks)
        dropped = delay_row(run_lengths(0.94, GOAL_CANCERS_PER_WEEK, limited), args.max_weeks)
        search.append({"decision_limit": float(limit), **kept, "delay_mean": dropped["mean"]})
    meeting = [
        row["decision_limit"]
        for row in search
        if row["arl0_lower_bound"] > ARL0_GOAL and row["delay_mean"] <= DELAY_GOAL
    ]
    chosen = max(meeting) if meeting else None
    print(f"Limit search at {GOAL_CANCERS_PER_WEEK} cancers/week: false alarms at recall 0.98, delay at 0.94.")
    print(
        pd.DataFrame(
            [
                {
                    "decision limit": f"{row['decision_limit']:.2f}",
                    "ARL0 mean >=": f"{row['arl0_lower_bound']:,.0f}",
                    "weeks per alarm": weeks(row["weeks_per_alarm"], "no alarm"),
                    "alarms / 5 y": f"{row['alarms_per_5_years']:.2f}",
                    "mean delay": f"{row['delay_mean']:.2f}",
                    "meets both": row["decision_limit"] in meeting,
                }
                for row in search
            ]
        ).to_string(index=False)
    )
    print(
        f"Largest limit meeting both goals: {chosen}; the rule's default: {rule.decision_limit:g}"
        f"{'' if chosen == rule.decision_limit else '  <- DIFFERENT: revisit the default'}.\n"
    )

    false_alarms = {
        (recall, volume): false_alarm_row(run_lengths(recall, volume), args.max_weeks)
        for recall in KEPT_RECALLS
        for volume in CANCERS_PER_WEEK
    }
    print("False alarms with the default limit (ARL0 in weeks).")
    print(
        pd.DataFrame(
            [
                {
                    "true recall": recall,
                    "cancers/week": volume,
                    "alarms / 5 y": f"{row['alarms_per_5_years']:.2f}",
                    "alarmed within 5 y": f"{row['alarmed_within_5_years']:.1%}",
                    "ARL0 mean >=": f"{row['arl0_lower_bound']:,.0f}",
                    "weeks per alarm": weeks(row["weeks_per_alarm"], "no alarm"),
                    "ARL0 median": weeks(row["median"], f"> {args.max_weeks}"),
                    "censored": f"{row['censored']:.1%}",
                }
                for (recall, volume), row in false_alarms.items()
            ]
        ).to_string(index=False)
    )

    delays = {
        (recall, volume): delay_row(run_lengths(recall, volume), args.max_weeks)
        for recall in DROPPED_RECALLS
        for volume in CANCERS_PER_WEEK
    }
    print("\nDetection delay with the default limit (weeks from the drop, a fresh statistic).")
    print(
        pd.DataFrame(
            [
                {
                    "true recall": recall,
                    "cancers/week": volume,
                    "mean": f"{row['mean']:.2f}",
                    "median": f"{row['median']:.0f}",
                    "90th pct": f"{row['p90']:.0f}",
                    "censored": f"{row['censored']:.1%}",
                }
                for (recall, volume), row in delays.items()
            ]
        ).to_string(index=False)
    )

    arl0 = false_alarms[0.98, GOAL_CANCERS_PER_WEEK]["arl0_lower_bound"]
    delay = delays[0.94, GOAL_CANCERS_PER_WEEK]["mean"]
    goals = {"false_alarm": arl0 > ARL0_GOAL, "detection": delay <= DELAY_GOAL}
    print(
        f"\n{'PASS' if goals['false_alarm'] else 'FAIL'} false alarms: at recall 0.98 and {GOAL_CANCERS_PER_WEEK} "
        f"cancers/week, ARL0 >= {arl0:,.0f} weeks (goal > {ARL0_GOAL}: fewer than one false alarm per 5 years)."
    )
    print(
        f"{'PASS' if goals['detection'] else 'FAIL'} detection: at recall 0.94 and {GOAL_CANCERS_PER_WEEK} "
        f"cancers/week, mean delay {delay:.2f} weeks (goal <= {DELAY_GOAL:g})."
    )
    print(f"Took {time.perf_counter() - started:.1f} s.")

    if args.json:
        figures = {
            "rule": asdict(rule),
            "runs": args.runs,
            "max_weeks": args.max_weeks,
            "seed": args.seed,
            "limit_search": search,
            "largest_limit_meeting_both_goals": chosen,
            "false_alarms": [
                {"true_recall": recall, "cancers_per_week": volume, **row}
                for (recall, volume), row in false_alarms.items()
            ],
            "detection_delay": [
                {"true_recall": recall, "cancers_per_week": volume, **row} for (recall, volume), row in delays.items()
            ],
            "goals_met": goals,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
