"""The sequential alarm on the recall promise."""

import datetime as dt
import json
import math

import numpy as np
import pytest

from turbine_dagster.core.monitoring.promise_alarm import (
    AlarmRule,
    AlarmState,
    WeeklyOutcomes,
    run_alarm,
    simulate_run_lengths,
)

MISS = math.log(0.06 / 0.03)  # ln(p1 / p0) with null recall 0.97 and alarm recall 0.94
CATCH = math.log(0.94 / 0.97)  # ln((1 - p1) / (1 - p0))


def weekly(counts: list[tuple[int, int]]) -> list[WeeklyOutcomes]:
    """(malignant outcomes, missed) per week, for consecutive Mondays from 2026-11-02 on."""
    first = dt.date(2026, 11, 2)
    return [WeeklyOutcomes((first + dt.timedelta(weeks=i)).isoformat(), n, m) for i, (n, m) in enumerate(counts)]


def test_default_rule_weighs_a_miss_and_a_catch_by_their_log_likelihood_ratios():
    rule = AlarmRule()
    assert rule.null_recall == pytest.approx(0.97)
    assert rule.miss_weight == pytest.approx(MISS)
    assert rule.catch_weight == pytest.approx(CATCH)


def test_cusum_matches_hand_computed_statistic_and_excursion():
    weeks = weekly([(40, 0), (40, 3), (40, 2), (10, 0)])
    state = run_alarm(weeks)
    # Week 1: 40 catches only, floored at 0. Weeks 2-4 rise from 0 without touching it again.
    week2 = 3 * MISS + 37 * CATCH
    week3 = week2 + 2 * MISS + 38 * CATCH
    week4 = week3 + 10 * CATCH
    assert [statistic for _, statistic in state.path] == pytest.approx([0.0, week2, week3, week4])
    assert (week2, week3, week4) == pytest.approx((0.9170, 1.1095, 0.7954), abs=1e-4)
    assert state.statistic == pytest.approx(week4)
    assert not state.fired and state.fired_week is None
    assert state.excursion_start_week == weeks[1].week
    assert (state.excursion_missed, state.excursion_malignant_outcomes) == (5, 90)
    assert state.statistic == pytest.approx(5 * MISS + 85 * CATCH)


def test_promised_recall_exactly_kept_never_fires_even_with_misses_bunched_into_one_week():
    # 4 misses in 200 cancers every 5 weeks, all in one week: recall exactly 0.98, for 10 years.
    state = run_alarm(weekly([(40, 4), (40, 0), (40, 0), (40, 0), (40, 0)] * 104))
    assert not state.fired
    assert max(statistic for _, statistic in state.path) == pytest.approx(4 * MISS + 36 * CATCH)
    assert max(statistic for _, statistic in state.path) < AlarmRule().decision_limit


def test_fires_at_the_first_crossing_and_stays_fired_after_the_statistic_falls_back():
    weeks = weekly([(40, 0), (40, 8), (40, 0), (40, 0), (40, 0), (40, 0)])
    state = run_alarm(weeks)
    assert 8 * MISS + 32 * CATCH >= AlarmRule().decision_limit
    assert state.fired and state.fired_week == weeks[1].week
    assert state.statistic == 0.0  # four clean weeks of 40 (-1.26 each) brought it back down
    assert state.excursion_start_week is None
    assert (state.excursion_missed, state.excursion_malignant_outcomes) == (0, 0)


def test_reset_at_since_week_ignores_the_weeks_before_the_promotion():
    weeks = weekly([(40, 8), (40, 1), (40, 2)])
    state = run_alarm(weeks, since_week=weeks[1].week)
    assert not state.fired
    assert [week for week, _ in state.path] == [weeks[1].week, weeks[2].week]
    assert state.statistic == pytest.approx(max(0.0, MISS + 39 * CATCH) + 2 * MISS + 38 * CATCH)
    assert state.since_week == weeks[1].week
    assert run_alarm(weeks, since_week="2027-01-01").path == ()


def test_a_promotion_after_the_alarm_clears_it():
    weeks = weekly([(40, 8), (40, 0)])
    assert run_alarm(weeks).fired
    assert not run_alarm(weeks, since_week=weeks[1].week).fired


def test_state_round_trips_through_json():
    state = run_alarm(weekly([(40, 8), (40, 3), (40, 1)]))
    stored = json.loads(json.dumps(state.to_dict()))
    assert stored == state.to_dict()
    assert AlarmState.from_dict(stored) == state


@pytest.mark.parametrize(
    "settings",
    [
        {"promised_recall": 1.0},
        {"tolerance": -0.01},
        {"alarm_recall": 0.97},  # not below the null recall 0.98 - 0.01
        {"alarm_recall": 0.0},
        {"decision_limit": 0.0},
        {"decision_limit": math.inf},
    ],
)
def test_rule_rejects_settings_that_cannot_make_a_test(settings):
    with pytest.raises(ValueError):
        AlarmRule(**settings)


@pytest.mark.parametrize(
    ("malignant_outcomes", "missed", "message"),
    [(3, 4, "missed=4 with malignant_outcomes=3"), (3, -1, "0 <= missed"), (2.5, 1, "whole number")],
)
def test_weekly_outcomes_reject_impossible_counts(malignant_outcomes, missed, message):
    with pytest.raises(ValueError, match=message):
        WeeklyOutcomes("2026-11-02", malignant_outcomes, missed)


@pytest.mark.parametrize("order", [[1, 0], [0, 0]])
def test_weeks_out_of_order_or_repeated_are_rejected(order):
    weeks = weekly([(40, 1), (40, 1)])
    with pytest.raises(ValueError, match="ascending order"):
        run_alarm([weeks[i] for i in order])


def test_simulated_false_alarms_at_the_promised_recall_are_rarer_than_one_per_five_years():
    lengths = simulate_run_lengths(0.98, 40, runs=500, max_weeks=1300, seed=1)
    # Censored runs count at the horizon, so the mean is a lower bound of the average run length (~850 weeks in
    # benchmarks/promise_alarm.py). Over seeds it averages ~690 here, with a standard error of ~20: asserting
    # twice the 260-week goal leaves a margin of ~8 standard errors.
    assert np.minimum(lengths, 1300).mean() > 2 * 260


def test_simulated_drop_to_recall_090_is_detected_within_a_few_weeks():
    lengths = simulate_run_lengths(0.90, 40, runs=500, max_weeks=52, seed=2)
    assert (lengths <= 52).all()
    assert lengths.mean() < 4
    assert np.median(lengths) <= 3


def test_simulation_is_reproducible_for_a_seed():
    first = simulate_run_lengths(0.94, 40, runs=50, max_weeks=100, seed=3)
    np.testing.assert_array_equal(first, simulate_run_lengths(0.94, 40, runs=50, max_weeks=100, seed=3))
