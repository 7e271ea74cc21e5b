import base64
import json
import tracemalloc

import numpy as np
import pytest
from scipy.stats import norm, rankdata

from turbine_dagster.core.evaluation import metrics
from turbine_dagster.core.evaluation.metrics import (
    bootstrap_intervals,
    conformal_threshold,
    evaluate_out_of_fold,
    evaluate_scores,
    headline_metrics,
    recall_lower_bound,
)
from turbine_dagster.core.schema import BENIGN, MALIGNANT
from turbine_dagster.presentation.evaluation import evaluation_plots_markdown, metrics_table_markdown

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INTERVAL_METRICS = ("malignant_recall", "malignant_precision", "roc_auc")
AGREEMENT_RESAMPLES = 2000


def noisy_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ~37 % malignant (as in WDBC) and an imperfect P(malignant)."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.37, MALIGNANT, BENIGN)
    scores = np.clip(np.where(labels == MALIGNANT, 0.7, 0.3) + rng.normal(0, 0.2, n), 0, 1)
    return labels, scores


def per_case_bootstrap(
    labels: np.ndarray, scores: np.ndarray, threshold: float, n_bootstrap: int, seed: int
) -> dict[str, np.ndarray]:
    """The reference: the stratified bootstrap that resamples cases, one score per drawn case (what
    ``bootstrap_intervals`` did before issue 20, at ~58 KB per case), ROC-AUC from mean ranks."""
    rng = np.random.default_rng(seed)
    malignant, benign = scores[labels == MALIGNANT], scores[labels == BENIGN]
    resampled_malignant = rng.choice(malignant, size=(n_bootstrap, len(malignant)))
    resampled_benign = rng.choice(benign, size=(n_bootstrap, len(benign)))
    true_positives = np.sum(resampled_malignant >= threshold, axis=1)
    predicted = true_positives + np.sum(resampled_benign >= threshold, axis=1)
    ranks = rankdata(np.hstack([resampled_malignant, resampled_benign]), axis=1)
    pairs = len(malignant) * len(benign)
    return {
        "malignant_recall": true_positives / len(malignant),
        "malignant_precision": np.divide(true_positives, predicted, out=np.zeros(n_bootstrap), where=predicted > 0),
        "roc_auc": (ranks[:, : len(malignant)].sum(axis=1) - len(malignant) * (len(malignant) + 1) / 2) / pairs,
    }


@pytest.fixture(scope="module")
def agreement_data() -> tuple[np.ndarray, np.ndarray, float, dict[str, np.ndarray]]:
    """300 noisy scores (ties at 0 and 1 from clipping), a threshold, and the reference's resampled metrics."""
    labels, scores = noisy_scores(300, seed=3)
    return labels, scores, 0.5, per_case_bootstrap(labels, scores, 0.5, AGREEMENT_RESAMPLES, seed=1)


def assert_intervals_agree(intervals: dict, reference: dict[str, np.ndarray], n_malignant: int) -> None:
    """Each interval end within Monte-Carlo error of the reference's. The p-quantile of B draws has a standard
    error of about sqrt(p (1 - p) / B) / density, the density of a normal of the draws' spread at that quantile;
    two independent runs differ by sqrt(2) of that, and 4 such errors are allowed (~6e-5 chance each for a
    correct method). Recall takes the values k / n_malignant, coarse next to that error: a quantile on the edge
    of an atom moves by one step, so one step is allowed on top (precision and ROC-AUC take far denser values)."""
    tail = (1 - intervals["confidence"]) / 2
    standard_error = np.sqrt(tail * (1 - tail) / AGREEMENT_RESAMPLES) / norm.pdf(norm.ppf(tail))
    for name in INTERVAL_METRICS:
        draws = reference[name]
        lattice_step = 1 / n_malignant if name == "malignant_recall" else 0.0
        tolerance = 4 * np.sqrt(2) * standard_error * draws.std() + lattice_step
        low, high = np.percentile(draws, [100 * tail, 100 * (1 - tail)])
        assert intervals[name]["low"] == pytest.approx(low, abs=tolerance), name
        assert intervals[name]["high"] == pytest.approx(high, abs=tolerance), name


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


def test_bootstrap_over_distinct_scores_agrees_with_the_per_case_bootstrap(agreement_data):
    labels, scores, threshold, reference = agreement_data
    intervals = bootstrap_intervals(labels, scores, threshold, AGREEMENT_RESAMPLES, seed=2)
    assert "distinct scores" in intervals["method"]
    assert intervals["n_bins"] == len(np.unique(scores))
    assert_intervals_agree(intervals, reference, int(np.sum(labels == MALIGNANT)))


@pytest.mark.parametrize("max_bins", [64, 16])
def test_bootstrap_over_quantile_bins_agrees_with_the_per_case_bootstrap(agreement_data, max_bins):
    labels, scores, threshold, reference = agreement_data
    intervals = bootstrap_intervals(labels, scores, threshold, AGREEMENT_RESAMPLES, seed=2, max_bins=max_bins)
    assert "quantile score bins" in intervals["method"]
    assert intervals["n_bins"] <= max_bins + 1  # the threshold may add an edge
    assert_intervals_agree(intervals, reference, int(np.sum(labels == MALIGNANT)))


def test_point_values_stay_exact_with_quantile_bins():
    labels, scores = noisy_scores(400, seed=5)
    threshold = float(np.quantile(scores, 0.55)) + 1e-4  # between bin edges unless it is one itself
    exact = evaluate_scores(labels, scores, threshold, "holdout", n_bootstrap=100)
    binned = bootstrap_intervals(labels, scores, threshold, n_bootstrap=100, max_bins=8)
    malignant = exact["at_operating_threshold"]["classification_report"]["malignant"]
    assert binned["malignant_recall"]["point"] == pytest.approx(malignant["recall"])
    assert binned["malignant_precision"]["point"] == pytest.approx(malignant["precision"])
    assert binned["roc_auc"]["point"] == pytest.approx(exact["roc_auc"])


def test_bootstrap_intervals_do_not_depend_on_the_resampling_block(monkeypatch):
    labels, scores = noisy_scores(300, seed=6)
    whole = bootstrap_intervals(labels, scores, 0.5, n_bootstrap=500)
    monkeypatch.setattr(metrics, "_BLOCK_CELLS", 1000)  # a few resamples per block
    assert bootstrap_intervals(labels, scores, 0.5, n_bootstrap=500) == whole


def test_bootstrap_memory_does_not_grow_with_the_resamples():
    """10x the resamples, the same peak: resamples are counts over score bins, drawn in blocks. 1024 quantile bins
    (of 50 k distinct scores) keep it fast; both calls draw more than one block of resamples."""
    labels, scores = noisy_scores(50_000, seed=7)
    peaks = []
    for n_bootstrap in (200, 2000):
        tracemalloc.start()
        try:
            bootstrap_intervals(labels, scores, 0.5, n_bootstrap, max_bins=1024)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < 1.2 * peaks[0]
    assert peaks[1] < 200 * len(scores) + 16 * 2**20  # the per-case bootstrap needed ~58 KB per case at 1000


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


def test_all_evidence_pools_out_of_fold_and_holdout_cases_at_one_threshold():
    from turbine_dagster.core.evaluation.metrics import ALL_EVIDENCE, evaluate_all_evidence, evaluate_scores

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(np.where(labels == MALIGNANT, 0.7, 0.3) + rng.normal(0, 0.2, 300), 0, 1)
    evidence = evaluate_all_evidence(labels[:240], scores[:240], labels[240:], scores[240:], 0.45, n_bootstrap=200)
    pooled = evaluate_scores(labels, scores, 0.45, ALL_EVIDENCE, n_bootstrap=200)

    assert evidence["n"] == 300 and evidence["data"] == ALL_EVIDENCE
    assert evidence["roc_auc"] == pooled["roc_auc"]
    assert evidence["at_operating_threshold"] == pooled["at_operating_threshold"]
    with pytest.raises(ValueError, match="holdout scores has 59 values for 60 labels"):
        evaluate_all_evidence(labels[:240], scores[:240], labels[240:], scores[241:], 0.45)
