import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from turbine_dagster.core.monitoring.estimation import (
    ISOTONIC_RECALIBRATION,
    MAX_EXPECTED_CALIBRATION_ERROR,
    NOT_ESTIMABLE,
    RAW_SCORES,
    CalibrationCheck,
    Recalibration,
    check_calibration,
    estimate_performance,
    fit_recalibration,
)
from turbine_dagster.core.schema import BENIGN, MALIGNANT

THRESHOLD = 0.1


def sharp_scores(cases: int, rng: np.random.Generator) -> np.ndarray:
    """P(malignant) piled up near 0 and 1, as a good model scores WDBC: ~40 % of cases near 1."""
    near_one = rng.random(cases) < 0.4
    return np.where(near_one, rng.beta(6.0, 1.0, cases), rng.beta(1.0, 12.0, cases))


def outcomes(p_malignant: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Class codes drawn from the probabilities themselves: calibrated by construction."""
    return np.where(rng.random(len(p_malignant)) < p_malignant, MALIGNANT, BENIGN)


def realised(labels: np.ndarray, p_malignant: np.ndarray, threshold: float) -> tuple[float, float]:
    flagged, malignant = p_malignant >= threshold, labels == MALIGNANT
    return malignant[flagged].sum() / malignant.sum(), malignant[flagged].mean()


@pytest.fixture(scope="module")
def calibrated_holdout() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    scores = sharp_scores(1000, rng)
    return outcomes(scores, rng), scores


@pytest.fixture(scope="module")
def calibrated_check(calibrated_holdout) -> CalibrationCheck:
    return check_calibration(*calibrated_holdout)


@pytest.fixture(scope="module")
def cubed_holdout() -> tuple[np.ndarray, np.ndarray]:
    """Outcomes drawn from p, scores p**3: the same ranking, P(malignant) far too low in the middle."""
    rng = np.random.default_rng(2)
    p_true = rng.random(2000)
    return outcomes(p_true, rng), p_true**3


def test_estimates_on_calibrated_scores_cover_the_realised_recall_and_precision(calibrated_check):
    rng = np.random.default_rng(3)
    recall_hits = precision_hits = 0
    recall_errors = []
    weeks = 200
    for _ in range(weeks):
        scores = sharp_scores(120, rng)
        labels = outcomes(scores, rng)
        estimate = estimate_performance(scores, THRESHOLD, calibrated_check, draws=1000)
        assert estimate.method == RAW_SCORES
        recall, precision = realised(labels, scores, THRESHOLD)
        recall_hits += estimate.recall_interval[0] <= recall <= estimate.recall_interval[1]
        precision_hits += estimate.precision_interval[0] <= precision <= estimate.precision_interval[1]
        recall_errors.append(estimate.estimated_recall - recall)
    # Nominal 90 %; the intervals of discrete rates include their end values, so a little above is expected.
    # Binomial sd of a 200-week coverage is ~0.02.
    assert 0.85 <= recall_hits / weeks <= 0.98
    assert 0.85 <= precision_hits / weeks <= 0.98
    assert abs(np.mean(recall_errors)) < 0.01


def test_calibration_check_flags_cubed_scores(cubed_holdout):
    check = check_calibration(*cubed_holdout)
    assert check.expected_calibration_error > MAX_EXPECTED_CALIBRATION_ERROR
    assert check.expected_calibration_error > check.chance_calibration_error


def test_isotonic_recalibration_of_cubed_scores_estimates_the_true_recall(cubed_holdout):
    labels, cubed = cubed_holdout
    recalibration = fit_recalibration(labels, cubed)
    rng = np.random.default_rng(4)
    p_true = rng.random(500)
    week = p_true**3
    threshold = 0.2**3
    true_recall = p_true[week >= threshold].sum() / p_true.sum()
    true_precision = p_true[week >= threshold].mean()

    estimate = estimate_performance(week, threshold, check_calibration(labels, cubed), recalibration)
    assert estimate.method == ISOTONIC_RECALIBRATION
    assert estimate.estimated_recall == pytest.approx(true_recall, abs=0.02)
    assert estimate.estimated_precision == pytest.approx(true_precision, abs=0.03)
    # The raw cubed scores would have promised far too few cancers.
    assert week[week >= threshold].mean() < true_precision - 0.2


def test_too_few_malignant_holdout_cases_is_not_estimable():
    rng = np.random.default_rng(5)
    scores = np.concatenate([rng.uniform(0.8, 1.0, 15), rng.uniform(0.0, 0.2, 100)])
    labels = np.array([MALIGNANT] * 15 + [BENIGN] * 100)
    estimate = estimate_performance([0.9, 0.05, 0.5], THRESHOLD, check_calibration(labels, scores))
    assert estimate.method == NOT_ESTIMABLE
    assert estimate.reason == "the holdout holds 15 malignant cases; judging calibration needs at least 20"
    assert estimate.estimated_recall is None and estimate.recall_interval is None
    assert (estimate.cases, estimate.flagged_cases) == (3, 2)


def test_miscalibrated_raw_scores_without_recalibration_are_not_estimable(cubed_holdout):
    estimate = estimate_performance([0.9, 0.05], THRESHOLD, check_calibration(*cubed_holdout))
    assert estimate.method == NOT_ESTIMABLE
    assert "raw scores on the holdout: ECE" in estimate.reason
    assert "no recalibration was given" in estimate.reason


def test_poor_calibration_even_after_recalibration_is_not_estimable(cubed_holdout):
    poor = check_calibration(*cubed_holdout)
    recalibration = Recalibration(x=(0.0, 1.0), y=(0.0, 1.0), check=poor)
    estimate = estimate_performance([0.9, 0.05], THRESHOLD, poor, recalibration)
    assert estimate.method == NOT_ESTIMABLE
    assert "isotonically recalibrated (cross-fitted): ECE" in estimate.reason
    assert estimate.estimated_precision is None


def test_calibrated_raw_scores_are_preferred_to_a_recalibration(calibrated_holdout, calibrated_check):
    recalibration = fit_recalibration(*calibrated_holdout)
    estimate = estimate_performance([0.9, 0.05], THRESHOLD, calibrated_check, recalibration)
    assert estimate.method == RAW_SCORES
    assert estimate.calibration_error == calibrated_check.expected_calibration_error


def test_ece_of_a_perfectly_calibrated_reliability_table_is_zero():
    # Ten bins of ten cases scored k / 10, k of them malignant.
    scores = np.repeat(np.arange(10) / 10, 10)
    labels = np.concatenate([[MALIGNANT] * k + [BENIGN] * (10 - k) for k in range(10)])
    check = check_calibration(labels, scores)
    assert check.expected_calibration_error == pytest.approx(0.0, abs=1e-12)
    assert check.maximum_calibration_error == pytest.approx(0.0, abs=1e-12)
    assert [b.cases for b in check.reliability] == [10] * 10
    assert [b.mean_predicted for b in check.reliability] == pytest.approx(np.arange(10) / 10)
    # Brier: a bin scored q with a share q malignant contributes q (1 - q).
    assert check.brier_score == pytest.approx(np.mean([q * (1 - q) for q in np.arange(10) / 10]))


def test_ece_and_maximum_error_match_a_hand_computed_table():
    # Bins of 2 in score order: (0.1, 0.3) none malignant, (0.6, 0.8) both.
    check = check_calibration([BENIGN, BENIGN, MALIGNANT, MALIGNANT], [0.3, 0.1, 0.8, 0.6], bins=2)
    assert [b.mean_predicted for b in check.reliability] == pytest.approx([0.2, 0.7])
    assert [b.observed_malignant_rate for b in check.reliability] == [0.0, 1.0]
    assert check.expected_calibration_error == pytest.approx(0.25)
    assert check.maximum_calibration_error == pytest.approx(0.3)
    assert check.brier_score == pytest.approx((0.01 + 0.09 + 0.04 + 0.16) / 4)


def test_chance_error_of_sharp_scores_is_small_and_of_uncertain_ones_large():
    rng = np.random.default_rng(6)
    sharp = np.where(rng.random(200) < 0.4, 0.99, 0.01)
    uncertain = rng.uniform(0.3, 0.7, 200)
    sharp_check = check_calibration(outcomes(sharp, rng), sharp)
    uncertain_check = check_calibration(outcomes(uncertain, rng), uncertain)
    assert sharp_check.chance_calibration_error < 0.02
    assert uncertain_check.chance_calibration_error > 0.08


def test_tied_scores_share_a_bin_whatever_the_input_order():
    scores = np.r_[np.full(90, 0.9), np.full(10, 0.1)]
    # Malignant cases first: splitting the tie by position would leave a bin of benign cases scored 0.9.
    labels = np.r_[[MALIGNANT] * 81, [BENIGN] * 9, [MALIGNANT], [BENIGN] * 9]
    check = check_calibration(labels, scores)
    assert [b.cases for b in check.reliability] == [10, 90]
    assert [b.mean_predicted for b in check.reliability] == pytest.approx([0.1, 0.9])
    assert check.expected_calibration_error == pytest.approx(0.0, abs=1e-12)


def test_malignant_is_class_zero():
    scores = np.full(100, 0.9)
    labels = np.array([MALIGNANT] * 90 + [BENIGN] * 10)
    check = check_calibration(labels, scores)
    assert check.malignant_cases == 90
    assert check.expected_calibration_error == pytest.approx(0.0, abs=1e-12)
    assert check_calibration(1 - labels, scores).expected_calibration_error == pytest.approx(0.8)
    recalibration = fit_recalibration(
        np.array([MALIGNANT] * 10 + [BENIGN] * 10), np.r_[np.full(10, 0.6), np.full(10, 0.4)]
    )
    assert recalibration.apply([0.6, 0.4]).tolist() == [1.0, 0.0]


def test_expected_counts_are_sums_of_the_probabilities(calibrated_check):
    estimate = estimate_performance([0.9, 0.6, 0.2, 0.1], 0.5, calibrated_check)
    assert estimate.flagged_cases == 2
    assert estimate.expected_cancers == pytest.approx(1.8)
    assert estimate.expected_missed_cancers == pytest.approx(0.3)
    assert estimate.estimated_recall == pytest.approx(1.5 / 1.8)
    assert estimate.estimated_precision == pytest.approx(1.5 / 2)


def test_flagged_cases_follow_the_raw_scores_not_the_recalibrated_ones(cubed_holdout):
    everything_even = Recalibration(x=(0.0, 1.0), y=(0.5, 0.5), check=check_calibration([MALIGNANT, BENIGN], [1, 0]))
    estimate = estimate_performance(
        [0.1, 0.2, 0.4, 0.9], 0.3, check_calibration(*cubed_holdout), everything_even, min_malignant_cases=0
    )
    assert estimate.method == ISOTONIC_RECALIBRATION
    assert estimate.flagged_cases == 2
    assert estimate.expected_cancers == pytest.approx(2.0)
    assert estimate.estimated_recall == pytest.approx(0.5)
    assert estimate.estimated_precision == pytest.approx(0.5)


def test_a_week_with_no_flagged_case_has_no_precision(calibrated_check):
    estimate = estimate_performance([0.01, 0.02, 0.03], 0.5, calibrated_check)
    assert estimate.flagged_cases == 0
    assert estimate.estimated_recall == 0.0
    assert estimate.estimated_precision is None and estimate.precision_interval is None


def test_a_week_with_no_possible_cancer_has_no_recall(calibrated_check):
    estimate = estimate_performance([0.0, 0.0], 0.5, calibrated_check)
    assert estimate.expected_cancers == 0.0
    assert estimate.estimated_recall is None and estimate.recall_interval is None


def test_intervals_are_seeded_and_hold_the_estimate(calibrated_check):
    scores = sharp_scores(200, np.random.default_rng(7))
    first = estimate_performance(scores, THRESHOLD, calibrated_check, seed=11)
    assert first == estimate_performance(scores, THRESHOLD, calibrated_check, seed=11)
    assert first.recall_interval[0] <= first.estimated_recall <= first.recall_interval[1]
    assert first.precision_interval[0] <= first.estimated_precision <= first.precision_interval[1]


def test_a_large_week_interval_matches_the_normal_approximation(calibrated_check):
    # 50,000 distinct scores are pooled into groups; the spread must still be the Poisson-binomial one.
    scores = sharp_scores(50_000, np.random.default_rng(8))
    estimate = estimate_performance(scores, THRESHOLD, calibrated_check)
    flagged = scores >= THRESHOLD
    sd = np.sqrt(np.sum(scores[flagged] * (1 - scores[flagged]))) / flagged.sum()
    low, high = estimate.precision_interval
    assert (high - low) / 2 == pytest.approx(1.645 * sd, rel=0.1)


def test_recalibration_applies_as_sklearn_isotonic_regression_predicts(cubed_holdout):
    labels, scores = cubed_holdout
    recalibration = fit_recalibration(labels, scores)
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels == MALIGNANT)
    points = np.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(recalibration.apply(points), isotonic.predict(points))
    assert recalibration.check.cases == len(labels)


def test_calibration_check_round_trips_through_json(calibrated_check):
    assert CalibrationCheck.from_dict(json.loads(json.dumps(calibrated_check.to_dict()))) == calibrated_check


def test_recalibration_round_trips_through_json(cubed_holdout):
    recalibration = fit_recalibration(*cubed_holdout)
    document = json.loads(json.dumps(recalibration.to_dict()))
    assert document["method"] == "isotonic"
    assert Recalibration.from_dict(document) == recalibration


def test_performance_estimate_to_dict_is_plain_json(calibrated_check):
    document = estimate_performance([0.9, 0.6, 0.2], 0.5, calibrated_check).to_dict()
    assert json.loads(json.dumps(document)) == document
    assert document["method"] == RAW_SCORES and document["interval_level"] == 0.9


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1], [0.5, float("nan")], "NaN or infinite"),
        ([0, 1], [0.5, 1.2], r"outside \[0, 1\]"),
        ([0, 1], [-0.1, 0.5], r"outside \[0, 1\]"),
        ([0, 1, 1], [0.5, 0.5], "has 2 values for 3 labels"),
        ([0, 2], [0.5, 0.5], r"expected 0 \(malignant\) or 1 \(benign\)"),
        ([], [], "labels are empty"),
    ],
)
def test_check_calibration_rejects_invalid_inputs(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        check_calibration(labels, scores)


@pytest.mark.parametrize(
    ("scores", "threshold", "message"),
    [
        ([0.5, float("inf")], 0.5, "NaN or infinite"),
        ([0.5, 1.5], 0.5, r"outside \[0, 1\]"),
        ([], 0.5, "p_malignant is empty"),
        ([0.5], float("nan"), "threshold must be a finite number"),
    ],
)
def test_estimate_performance_rejects_invalid_inputs(calibrated_check, scores, threshold, message):
    with pytest.raises(ValueError, match=message):
        estimate_performance(scores, threshold, calibrated_check)


def test_fit_recalibration_needs_cases_of_both_classes_in_every_fold():
    with pytest.raises(ValueError, match="3 malignant and 10 benign cases"):
        fit_recalibration([MALIGNANT] * 3 + [BENIGN] * 10, np.linspace(0, 1, 13))


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ((0.2, 0.1), (0.0, 1.0), "x strictly and y weakly increasing"),
        ((0.1, 0.2), (0.5, 0.4), "x strictly and y weakly increasing"),
        ((0.1, 0.2), (0.0, 1.5), r"must lie in \[0, 1\]"),
        ((0.1,), (0.0, 1.0), "as many y as x"),
    ],
)
def test_recalibration_rejects_invalid_breakpoints(calibrated_check, x, y, message):
    with pytest.raises(ValueError, match=message):
        Recalibration(x=x, y=y, check=calibrated_check)


def test_recalibration_from_dict_rejects_an_unknown_method(calibrated_check):
    with pytest.raises(ValueError, match="unknown recalibration method 'platt'"):
        Recalibration.from_dict({"method": "platt", "x": [0.0], "y": [0.0], "check": calibrated_check.to_dict()})
