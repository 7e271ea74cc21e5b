import base64
import json

import numpy as np
import pytest

from turbine_dagster.core.evaluation.metrics import (
    conformal_threshold,
    evaluate_out_of_fold,
    evaluate_scores,
    headline_metrics,
    recall_lower_bound,
)
from turbine_dagster.core.schema import BENIGN, MALIGNANT
from turbine_dagster.presentation.evaluation import evaluation_plots_markdown, metrics_table_markdown

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def noisy_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ~37 % malignant (as in WDBC) and an imperfect P(malignant)."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.37, MALIGNANT, BENIGN)
    scores = np.clip(np.where(labels == MALIGNANT, 0.7, 0.3) + rng.normal(0, 0.2, n), 0, 1)
    return labels, scores


@pytest.fixture(scope="module")
def report() -> dict:
    labels, scores = noisy_scores(240, seed=1)
    return evaluate_out_of_fold(labels, scores, target_recall=0.9, n_bootstrap=300)


def test_conformal_threshold_is_the_kth_lowest_malignant_score():
    labels = np.array([MALIGNANT] * 99 + [BENIGN] * 3)
    scores = np.r_[np.arange(1, 100) / 100, [0.005, 0.5, 0.995]]
    choice = conformal_threshold(labels, scores, target_recall=0.98)
    # k = floor((99 + 1) * 0.02) = 2: the second-lowest malignant score; expected recall 1 - 2/100.
    assert (choice.k, choice.threshold, choice.n_malignant) == (2, 0.02, 99)
    assert choice.expected_recall == pytest.approx(0.98) and choice.certifiable
    assert choice.observed_recall == pytest.approx(98 / 99)
    assert choice.observed_precision == pytest.approx(98 / 100)  # 0.5 and 0.995 are flagged, 0.005 is not
    assert choice.recall_lower_bound == pytest.approx(recall_lower_bound(98, 99))


def test_too_few_malignant_cases_cannot_certify_the_target():
    labels = np.array([MALIGNANT] * 40 + [BENIGN] * 60)
    scores = np.r_[np.linspace(0.3, 0.9, 40), np.linspace(0.0, 0.5, 60)]
    choice = conformal_threshold(labels, scores, target_recall=0.98)
    assert choice.k == 0 and not choice.certifiable
    assert choice.threshold == pytest.approx(0.3)  # the lowest malignant score
    assert choice.expected_recall == pytest.approx(40 / 41)


def test_conformal_threshold_keeps_its_promise_on_new_cases():
    """Over many calibration/new-case draws, recall on new cases averages at least the target."""
    rng = np.random.default_rng(0)
    recalls = []
    for _ in range(300):
        calibration = rng.beta(4, 1.5, 150)
        new_cases = rng.beta(4, 1.5, 1000)
        threshold = conformal_threshold(np.full(150, MALIGNANT), calibration, target_recall=0.95).threshold
        recalls.append(np.mean(new_cases >= threshold))
    assert np.mean(recalls) >= 0.95


def test_recall_lower_bound_is_the_one_sided_clopper_pearson_bound():
    from scipy.stats import beta

    assert recall_lower_bound(150, 150) == pytest.approx(0.05 ** (1 / 150))
    assert recall_lower_bound(147, 150) == pytest.approx(beta.ppf(0.05, 147, 4))
    assert recall_lower_bound(0, 10) == 0.0
    with pytest.raises(ValueError):
        recall_lower_bound(11, 10)


def test_malignant_is_class_zero_in_every_metric():
    # A model that ranks class 0 highest is perfect only if class 0 is the malignant, positive class.
    labels = np.array([MALIGNANT] * 3 + [BENIGN] * 5)
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.2, 0.1, 0.05])
    report = evaluate_scores(labels, scores, 0.7, "holdout", n_bootstrap=50)

    assert report["roc_auc"] == 1.0
    assert report["pr_auc"] == 1.0
    malignant = report["at_operating_threshold"]["classification_report"]["malignant"]
    assert malignant["support"] == 3
    assert malignant["recall"] == malignant["precision"] == 1.0
    assert report["at_operating_threshold"]["confusion_matrix"] == [[3, 0], [0, 5]]


def test_report_holds_both_thresholds_and_is_json_serialisable(report):
    assert json.loads(json.dumps(report)) == report
    assert report["at_default_threshold"]["threshold"] == 0.5
    assert report["at_operating_threshold"]["threshold"] == report["threshold"]
    assert report["data"] == "out-of-fold"
    assert report["threshold_choice"]["threshold"] == report["threshold"]
    assert report["threshold_choice"]["observed_recall"] >= report["target_recall"]
    for at in ("at_default_threshold", "at_operating_threshold"):
        classes = report[at]["classification_report"]
        assert {"malignant", "benign", "accuracy", "macro avg", "weighted avg"} <= set(classes)


def test_bootstrap_intervals_bracket_the_point_values_and_repeat_with_the_seed(report):
    for name in ("malignant_recall", "malignant_precision", "roc_auc"):
        interval = report["bootstrap"][name]
        assert interval["low"] <= interval["point"] <= interval["high"]
        assert interval["low"] < interval["high"]
    headline = headline_metrics(report)
    assert report["bootstrap"]["malignant_recall"]["point"] == headline["malignant_recall"]
    assert report["bootstrap"]["roc_auc"]["point"] == pytest.approx(report["roc_auc"])

    again = evaluate_out_of_fold(*noisy_scores(240, seed=1), target_recall=0.9, n_bootstrap=300)
    assert again["bootstrap"] == report["bootstrap"]


def test_headline_metrics_are_flat_floats_at_the_operating_threshold(report):
    headline = headline_metrics(report)
    assert set(headline) == {
        "malignant_recall",
        "malignant_precision",
        "benign_precision",
        "malignant_f1",
        "roc_auc",
        "pr_auc",
        "accuracy",
        "threshold",
        "malignant_recall_lower_bound",
    }
    assert all(type(value) is float for value in headline.values())
    operating = report["at_operating_threshold"]["classification_report"]
    assert headline["malignant_recall"] == operating["malignant"]["recall"]
    assert headline["benign_precision"] == operating["benign"]["precision"]


def test_metrics_table_shows_both_thresholds_and_the_intervals(report):
    table = metrics_table_markdown(report)
    assert "| malignant recall |" in table
    assert f"at operating threshold {report['threshold']:.3f}" in table
    low = report["bootstrap"]["malignant_recall"]["low"]
    assert f"{low:.3f} –" in table
    assert "split-conformal" in table and f"k = {report['threshold_choice']['k']}" in table


def test_plots_are_png_images_in_markdown():
    labels, scores = noisy_scores(80, seed=4)
    plots = evaluation_plots_markdown(labels, scores, threshold=0.4)
    assert set(plots) == {"roc_curve", "pr_curve", "confusion_matrix"}
    for markdown in plots.values():
        assert markdown.startswith("![")
        encoded = markdown.split("base64,", 1)[1].rstrip(")")
        assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)


def test_a_holdout_with_one_class_is_refused_with_the_counts():
    labels = np.array([BENIGN] * 6)
    with pytest.raises(ValueError, match="holdout data has 0 malignant and 6 benign"):
        evaluate_scores(labels, np.full(6, 0.2), 0.5, "holdout")


def test_a_threshold_needs_malignant_cases():
    with pytest.raises(ValueError, match="no malignant case"):
        conformal_threshold(np.array([BENIGN, BENIGN]), np.array([0.2, 0.3]))
