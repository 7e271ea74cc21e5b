import json
import math

import numpy as np
import pandas as pd
import pytest

from turbine_dagster.core.monitoring.drift import (
    DriftResult,
    DriftRule,
    adjust_p_values,
    detect_drift,
    population_stability_index,
    quantile_bin_edges,
)
from turbine_dagster.core.schema import FEATURE_COLUMNS
from turbine_dagster.presentation.drift import drift_distributions_markdown, drift_table_markdown

SHIFTED = ["mean radius", "worst area", "texture error"]


def standard_normal_cases(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(rows, len(FEATURE_COLUMNS))), columns=FEATURE_COLUMNS)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return standard_normal_cases(400, seed=1)


@pytest.fixture(scope="module")
def shifted_current() -> pd.DataFrame:
    current = standard_normal_cases(400, seed=2)
    current[SHIFTED] += 2.0
    return current


def test_psi_matches_hand_computed_value_with_values_outside_reference_range():
    # Median edge 5.5: reference shares (0.5, 0.5); current 0, 1, 2 | 20 gives (0.75, 0.25).
    reference = np.arange(1.0, 11.0)
    current = np.array([0.0, 1.0, 2.0, 20.0])
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert population_stability_index(reference, current, bins=2) == pytest.approx(expected)
    assert expected == pytest.approx(0.274653, abs=1e-6)


def test_psi_floors_an_empty_bin_at_epsilon():
    reference = np.arange(1.0, 11.0)
    current = np.array([1.0, 2.0])  # the upper bin is empty
    expected = (1 - 0.5) * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert population_stability_index(reference, current, bins=2) == pytest.approx(expected)


def test_psi_of_identical_samples_is_zero():
    values = np.random.default_rng(0).normal(size=200)
    assert population_stability_index(values, values) == 0.0


def test_tied_reference_values_merge_duplicate_edges():
    # Quartiles of the reference are 0, 0 and 1.75: the duplicate 0 is dropped, leaving 3 bins.
    reference = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4], dtype=float)
    np.testing.assert_allclose(quantile_bin_edges(reference, bins=4), [0.0, 1.75])


def test_ks_statistic_and_p_value_match_hand_computed_values():
    # 1..4 vs 3..6: the ECDFs differ most at x=2 (0.5 vs 0) and x=4 (1 vs 0.5), so D = 0.5.
    # Exact p: of the C(8, 4) = 70 equally likely orderings, only the 2**4 = 16 that keep the
    # ECDFs within 1/4 of each other give D < 0.5, so P(D >= 0.5) = 54 / 70.
    reference = pd.DataFrame(
        np.repeat([[1.0], [2.0], [3.0], [4.0]], len(FEATURE_COLUMNS), axis=1),
        columns=FEATURE_COLUMNS,
    )
    result = detect_drift(reference, reference + 2.0)
    assert (result.features["ks_statistic"] == 0.5).all()
    np.testing.assert_allclose(result.features["p_value"], 54 / 70)


def test_holm_correction_matches_hand_computed_values():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; made monotone.
    p_values = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjust_p_values(p_values, "holm"), [0.03, 0.06, 0.06, 0.02])


def test_bonferroni_correction_multiplies_by_the_number_of_tests_capped_at_one():
    p_values = np.array([0.01, 0.04, 0.3, 0.005])
    np.testing.assert_allclose(adjust_p_values(p_values, "bonferroni"), [0.04, 0.16, 1.0, 0.02])


def test_identical_data_is_not_drift(reference):
    result = detect_drift(reference, reference)
    assert not result.drift_detected
    assert result.n_drifted == 0
    assert result.reason.startswith("No drift: 0 of 30 features drifted")


def test_large_shift_on_several_features_is_drift_with_those_features_flagged(reference, shifted_current):
    result = detect_drift(reference, shifted_current)
    assert result.drift_detected
    assert set(result.features.loc[result.features["drifted"], "feature"]) == set(SHIFTED)
    assert set(result.features["feature"].head(3)) == set(SHIFTED)  # sorted by PSI
    assert result.reason.startswith("Drift: 3 of 30 features drifted")


def test_rule_requiring_more_features_than_drifted_is_not_drift(reference, shifted_current):
    result = detect_drift(reference, shifted_current, rule=DriftRule(min_drifted_features=4))
    assert result.n_drifted == 3
    assert not result.drift_detected


def test_missing_feature_columns_are_named(reference):
    current = reference.drop(columns=["mean radius", "worst area"])
    with pytest.raises(ValueError, match=r"current data lacks feature columns \['mean radius', 'worst area'\]"):
        detect_drift(reference, current)


def test_non_finite_values_are_named(reference):
    current = reference.copy()
    current.loc[3, "mean texture"] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in \['mean texture'\]"):
        detect_drift(reference, current)


def test_large_current_data_is_compared_through_a_bounded_sample(reference, shifted_current):
    result = detect_drift(reference, shifted_current, max_rows=100)
    assert (result.rows_reference, result.rows_current, result.rows_current_total) == (400, 100, 400)


def test_result_round_trips_through_json(reference, shifted_current):
    result = detect_drift(reference, shifted_current)
    restored = DriftResult.from_dict(json.loads(json.dumps(result.to_dict())))
    pd.testing.assert_frame_equal(restored.features, result.features)
    assert restored.rule == result.rule
    assert (restored.drift_detected, restored.n_drifted, restored.reason) == (
        result.drift_detected,
        result.n_drifted,
        result.reason,
    )


def test_table_markdown_lists_the_top_features_most_shifted_first(reference, shifted_current):
    table = drift_table_markdown(detect_drift(reference, shifted_current), top=3)
    rows = table.splitlines()[2:]
    assert len(rows) == 3
    assert all(row.endswith("| yes |") for row in rows)


def test_distributions_markdown_embeds_a_png(reference, shifted_current):
    result = detect_drift(reference, shifted_current)
    markdown = drift_distributions_markdown(reference, shifted_current, result, top=2)
    assert markdown.startswith("![Distributions of the 2 most shifted features](data:image/png;base64,")
