import base64
import json

import numpy as np
import pytest

from turbine_dagster.core.evaluation import (
    choose_operating_threshold,
    evaluate_predictions,
    evaluation_plots_markdown,
    headline_metrics,
    malignant_recall_at,
    metrics_table_markdown,
)
from turbine_dagster.core.schema import BENIGN, MALIGNANT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def noisy_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ~37 % malignant (as in WDBC) and an imperfect P(malignant)."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.37, MALIGNANT, BENIGN)
    scores = np.clip(np.where(labels == MALIGNANT, 0.7, 0.3) + rng.normal(0, 0.2, n), 0, 1)
    return labels, scores


@pytest.fixture(scope="module")
def report() -> dict:
    y_test, p_test = noisy_scores(120, seed=1)
    y_validation, p_validation = noisy_scores(120, seed=2)
    return evaluate_predictions(y_test, p_test, y_validation, p_validation, n_bootstrap=300)


@pytest.mark.parametrize("target_recall", [0.9, 0.95, 0.98, 1.0])
def test_operating_threshold_reaches_the_target_recall_on_the_data_it_was_chosen_on(target_recall):
    labels, scores = noisy_scores(200, seed=3)
    threshold = choose_operating_threshold(labels, scores, target_recall)
    assert malignant_recall_at(labels, scores, threshold) >= target_recall


def test_operating_threshold_is_the_highest_reaching_the_target_when_precision_falls_with_it():
    labels = np.array([MALIGNANT] * 4 + [BENIGN] * 4)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.65, 0.5, 0.2, 0.1])
    # 3 of 4 cancers are caught from 0.7 down; 0.7 raises no false alarm, lower thresholds do.
    assert choose_operating_threshold(labels, scores, target_recall=0.75) == pytest.approx(0.7)


def test_operating_threshold_goes_lower_when_that_is_more_precise():
    labels = np.array([MALIGNANT] * 5 + [BENIGN] * 2)
    scores = np.array([0.9, 0.5, 0.45, 0.44, 0.43, 0.6, 0.1])
    # Target 1/5: 0.9 is precise (1/1); target 2/5: 0.5 gives 2/3, but 0.43 catches all 5 for 5/6.
    assert choose_operating_threshold(labels, scores, target_recall=0.4) == pytest.approx(0.43)


def test_malignant_is_class_zero_in_every_metric():
    # A model that ranks class 0 highest is perfect only if class 0 is the malignant, positive class.
    labels = np.array([MALIGNANT] * 3 + [BENIGN] * 5)
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.2, 0.1, 0.05])
    report = evaluate_predictions(labels, scores, labels, scores, target_recall=1.0, n_bootstrap=50)

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
    assert report["validation_malignant_recall"] >= report["target_recall"]
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

    y_test, p_test = noisy_scores(120, seed=1)
    y_validation, p_validation = noisy_scores(120, seed=2)
    again = evaluate_predictions(y_test, p_test, y_validation, p_validation, n_bootstrap=300)
    assert again["bootstrap"] == report["bootstrap"]


def test_headline_metrics_are_flat_floats_at_the_operating_threshold(report):
    headline = headline_metrics(report)
    assert set(headline) == {
        "malignant_recall", "malignant_precision", "benign_precision", "malignant_f1",
        "roc_auc", "pr_auc", "accuracy", "threshold",
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


def test_plots_are_png_images_in_markdown():
    labels, scores = noisy_scores(80, seed=4)
    plots = evaluation_plots_markdown(labels, scores, threshold=0.4)
    assert set(plots) == {"roc_curve", "pr_curve", "confusion_matrix"}
    for markdown in plots.values():
        assert markdown.startswith("![")
        encoded = markdown.split("base64,", 1)[1].rstrip(")")
        assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)


def test_a_test_split_with_one_class_is_refused_with_the_counts():
    labels = np.array([BENIGN] * 6)
    with pytest.raises(ValueError, match="test split has 0 malignant and 6 benign"):
        evaluate_predictions(labels, np.full(6, 0.2), np.array([MALIGNANT, BENIGN]), np.array([0.9, 0.1]))


def test_a_threshold_needs_malignant_cases_in_validation():
    with pytest.raises(ValueError, match="no malignant case"):
        choose_operating_threshold(np.array([BENIGN, BENIGN]), np.array([0.2, 0.3]))
