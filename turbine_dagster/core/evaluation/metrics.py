"""Evaluation of P(malignant) predictions: operating threshold, classification reports, intervals.

The threshold is chosen on out-of-fold scores (``conformal_threshold``) and a model is graded on
cases nothing was chosen on (the holdout): a decision is never judged on the data that made it.
Malignant is class 0 (see ``schema``); every "malignant" metric here treats class 0 as the
positive class, and a case is predicted malignant iff ``p_malignant >= threshold``.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import beta
from sklearn.metrics import average_precision_score, classification_report, confusion_matrix, roc_auc_score

from turbine_dagster.core.schema import BENIGN, CLASS_NAMES, MALIGNANT

DEFAULT_THRESHOLD = 0.5
DEFAULT_TARGET_RECALL = 0.98
CONFIDENCE = 0.95
N_BOOTSTRAP = 1000
"""Bootstrap resamples behind every 95 % interval."""
BOOTSTRAP_SEED = 0
"""Default seed of the bootstrap resampling."""
MAX_BINS = 4096
"""Most score bins the bootstrap resamples counts over: up to this many distinct scores are bins of their own
(the per-case bootstrap exactly, in distribution); more are pooled into this many quantile bins (one more
where the threshold adds an edge)."""
_BLOCK_CELLS = 2**18
"""Resample-by-bin counts drawn at once (2 MiB of int64): what bounds the bootstrap's working memory."""
LABELS = [MALIGNANT, BENIGN]
# Class counts are small (~43 malignant in a test split), so k/n must not lose to float noise.
_RATIO_SLACK = 1e-9


def as_labels(y_true: Any, name: str) -> np.ndarray:
    """Class codes as a flat int array; ValueError naming ``name`` for any code but malignant or benign."""
    labels = np.asarray(y_true).astype(int).reshape(-1)
    unknown = sorted(set(np.unique(labels)) - set(LABELS))
    if unknown:
        raise ValueError(f"{name} holds {unknown}; expected {MALIGNANT} (malignant) or {BENIGN} (benign)")
    return labels


def as_scores(p_malignant: Any, n_rows: int, name: str) -> np.ndarray:
    """P(malignant) as a flat float64 array, one per label; ValueError for a length mismatch or a non-finite value."""
    scores = np.asarray(p_malignant, dtype=np.float64).reshape(-1)
    if len(scores) != n_rows:
        raise ValueError(f"{name} has {len(scores)} values for {n_rows} labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} holds NaN or infinite values; P(malignant) must be finite")
    return scores


def has_both_classes(labels: np.ndarray) -> bool:
    """Whether class codes hold malignant and benign cases: a classifier can neither learn from nor be graded on
    fewer."""
    return bool(np.any(labels == MALIGNANT) and np.any(labels == BENIGN))


def require_both_classes(labels: np.ndarray, split: str) -> None:
    """ValueError with the class counts unless ``labels`` (valid class codes) hold both classes."""
    if not has_both_classes(labels):
        n_malignant = int(np.sum(labels == MALIGNANT))
        raise ValueError(
            f"{split} data has {n_malignant} malignant and {len(labels) - n_malignant} benign cases; "
            f"evaluation needs both classes"
        )


def predict_labels(p_malignant: Any, threshold: float) -> np.ndarray:
    """Class codes: MALIGNANT where ``p_malignant >= threshold``, BENIGN elsewhere."""
    return np.where(np.asarray(p_malignant, dtype=np.float64) >= threshold, MALIGNANT, BENIGN)


@dataclass(frozen=True)
class ThresholdChoice:
    """The operating threshold and what it promises on new cases (split-conformal on held-out scores).

    With the ``n`` held-out malignant scores sorted ascending, the threshold is the ``k``-th lowest,
    ``k = floor((n + 1) * (1 - target_recall))``: a new malignant case scores at or above it with
    probability ``1 - k / (n + 1)`` >= the target (``expected_recall``), whatever the model. ``k = 0``
    (fewer than ``1 / (1 - target) - 1`` malignant cases) cannot certify the target: the lowest score is
    taken and ``certifiable`` is False.
    """

    threshold: float
    target_recall: float
    n_malignant: int
    k: int
    expected_recall: float
    certifiable: bool
    observed_recall: float
    """Share of the held-out malignant scores at or above the threshold."""
    recall_lower_bound: float
    """One-sided Clopper-Pearson lower bound of recall at ``CONFIDENCE`` from the held-out malignant cases."""
    observed_precision: float
    method: str = "split-conformal on out-of-fold scores"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recall_lower_bound(caught: int, malignant: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson lower confidence bound of a recall of ``caught`` out of ``malignant``."""
    if malignant <= 0 or not 0 <= caught <= malignant:
        raise ValueError(f"need 0 <= caught <= malignant and malignant > 0, got {caught} of {malignant}")
    return 0.0 if caught == 0 else float(beta.ppf(1 - confidence, caught, malignant - caught + 1))


def conformal_threshold(y_true: Any, p_malignant: Any, target_recall: float = DEFAULT_TARGET_RECALL) -> ThresholdChoice:
    """The split-conformal operating threshold (see ``ThresholdChoice``) from scores of cases the model never
    fitted, early-stopped or chose anything on (out-of-fold predictions).

    Recall outranks precision: the threshold is never raised for precision, nor lowered to raise the
    lower bound; precision is reported.
    """
    if not 0.0 < target_recall < 1.0:
        raise ValueError(f"target_recall must be in (0, 1), got {target_recall}")
    labels = as_labels(y_true, "y_true")
    scores = as_scores(p_malignant, len(labels), "p_malignant")
    malignant_scores = np.sort(scores[labels == MALIGNANT])
    n_malignant = len(malignant_scores)
    if n_malignant == 0:
        raise ValueError("cannot choose an operating threshold: the held-out scores hold no malignant case")
    k = math.floor((n_malignant + 1) * (1 - target_recall) + _RATIO_SLACK)
    threshold = float(malignant_scores[max(k, 1) - 1])
    caught = int(np.sum(malignant_scores >= threshold))
    flagged = int(np.sum(scores >= threshold))
    return ThresholdChoice(
        threshold=threshold,
        target_recall=float(target_recall),
        n_malignant=n_malignant,
        k=k,
        expected_recall=1 - max(k, 1) / (n_malignant + 1),
        certifiable=k > 0,
        observed_recall=caught / n_malignant,
        recall_lower_bound=recall_lower_bound(caught, n_malignant),
        observed_precision=caught / flagged,
    )


def _report(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    predicted = predict_labels(scores, threshold)
    return {
        "threshold": float(threshold),
        "classification_report": classification_report(
            labels,
            predicted,
            labels=LABELS,
            target_names=list(CLASS_NAMES),
            output_dict=True,
            zero_division=0,
        ),
        # Rows are the true class, columns the predicted class, both in LABELS order.
        "confusion_matrix": confusion_matrix(labels, predicted, labels=LABELS).tolist(),
    }


def _interval(values: np.ndarray, point: float) -> dict[str, float]:
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"point": float(point), "low": float(low), "high": float(high)}


def _score_bins(scores: np.ndarray, threshold: float, max_bins: int) -> tuple[np.ndarray, str]:
    """Lower edges (ascending) of the bootstrap's score bins, and what they are: the distinct scores if there
    are at most ``max_bins``, else ``max_bins`` quantile bins of the scores with ``threshold`` an edge too."""
    ordered = np.sort(scores)
    starts_a_value = np.empty(len(ordered), dtype=bool)
    starts_a_value[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_a_value[1:])
    if np.count_nonzero(starts_a_value) <= max_bins:
        return ordered[starts_a_value], "distinct scores"
    edges = [ordered[:1], ordered[np.arange(1, max_bins) * len(ordered) // max_bins]]
    if ordered[0] < threshold <= ordered[-1]:
        edges.append(np.array([threshold]))
    return np.unique(np.concatenate(edges)), "quantile score bins"


def _half_wins(malignant: np.ndarray, benign_below: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Twice the Mann-Whitney count per row: malignant-benign pairs with the malignant case in a higher bin count
    2, pairs in one bin 1. ``benign_below[:, i]`` holds the benign cases in the ``i`` lowest benign bins;
    ``low``/``high`` index it at the benign bins below / at or below each malignant bin."""
    return np.einsum("ij,ij->i", malignant, benign_below[:, low] + benign_below[:, high])


def bootstrap_intervals(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    max_bins: int = MAX_BINS,
) -> dict[str, Any]:
    """Percentile 95 % intervals of malignant recall, malignant precision and ROC-AUC.

    Resampling is stratified (class counts held fixed), so every resample has both classes and
    ROC-AUC is always defined; a precision with no predicted malignant case counts as 0, as in
    the classification report. A percentile interval cannot extend past what the sample shows: at
    a point recall of 1.0 it collapses to [1, 1], so read it with the malignant count.

    A resample is drawn as counts, not cases: per class, how many of its cases fall in each score bin,
    one multinomial draw of the class count over the class' bin shares (what drawing its cases with
    replacement does to the bin counts). When the bins are the distinct scores (at most ``max_bins``) this
    is the per-case bootstrap exactly, in distribution. Beyond, the bins are quantiles of the scores with
    the threshold an edge: recall and precision stay exact per resample, and ROC-AUC counts pairs within a
    bin as ties, the ordering counts cannot see credited at its value in the sample (the point AUC minus
    the sample's binned AUC), which is also its mean over resamples. Resamples are drawn in blocks:
    memory is O(n + block x bins), whatever ``n_bootstrap``; time is O(n log n + n_bootstrap x bins).
    """
    require_both_classes(labels, "bootstrap")
    edges, bins_are = _score_bins(scores, threshold, max_bins)
    case_bins = np.searchsorted(edges, scores, side="right") - 1
    malignant_counts = np.bincount(case_bins[labels == MALIGNANT], minlength=len(edges))
    benign_counts = np.bincount(case_bins[labels == BENIGN], minlength=len(edges))
    del case_bins
    n_malignant, n_benign = int(malignant_counts.sum()), int(benign_counts.sum())
    flagged = edges >= threshold  # a bin's cases all score at or above the threshold, or all below

    # Each class is drawn over the bins it occupies only; bins are compared through their edge positions.
    malignant_bins, benign_bins = np.flatnonzero(malignant_counts), np.flatnonzero(benign_counts)
    low = np.searchsorted(benign_bins, malignant_bins, side="left")
    high = np.searchsorted(benign_bins, malignant_bins, side="right")

    def twice_wins(malignant: np.ndarray, benign: np.ndarray) -> np.ndarray:
        benign_below = np.zeros((len(benign), len(benign_bins) + 1), dtype=np.int64)
        np.cumsum(benign, axis=1, out=benign_below[:, 1:])
        return _half_wins(malignant, benign_below, low, high)

    point_auc = float(roc_auc_score(labels == MALIGNANT, scores))
    pairs = n_malignant * n_benign
    within_bin_order = 0.0
    if bins_are != "distinct scores":
        binned_auc = twice_wins(malignant_counts[None, malignant_bins], benign_counts[None, benign_bins])[0]
        within_bin_order = point_auc - binned_auc / (2 * pairs)

    malignant_rng, benign_rng = np.random.default_rng(seed).spawn(2)
    malignant_shares = malignant_counts[malignant_bins] / n_malignant
    benign_shares = benign_counts[benign_bins] / n_benign
    malignant_flagged = flagged[malignant_bins].astype(np.int64)
    benign_flagged = flagged[benign_bins].astype(np.int64)
    true_positives = np.empty(n_bootstrap, dtype=np.int64)
    false_positives = np.empty(n_bootstrap, dtype=np.int64)
    roc_auc = np.empty(n_bootstrap)
    block = max(1, _BLOCK_CELLS // (len(malignant_bins) + len(benign_bins)))
    for start in range(0, n_bootstrap, block):
        rows = slice(start, min(start + block, n_bootstrap))
        size = rows.stop - rows.start
        malignant = malignant_rng.multinomial(n_malignant, malignant_shares, size=size)
        benign = benign_rng.multinomial(n_benign, benign_shares, size=size)
        true_positives[rows] = malignant @ malignant_flagged
        false_positives[rows] = benign @ benign_flagged
        roc_auc[rows] = twice_wins(malignant, benign) / (2 * pairs) + within_bin_order

    recall = true_positives / n_malignant
    predicted_malignant = true_positives + false_positives
    precision = np.divide(true_positives, predicted_malignant, out=np.zeros(n_bootstrap), where=predicted_malignant > 0)
    point_tp = int(malignant_counts[flagged].sum())
    point_predicted = point_tp + int(benign_counts[flagged].sum())
    return {
        "method": f"stratified percentile bootstrap, multinomial counts over {bins_are}",
        "n_bins": int(len(edges)),
        "confidence": CONFIDENCE,
        "n_resamples": n_bootstrap,
        "seed": seed,
        "threshold": float(threshold),
        "malignant_recall": _interval(recall, point_tp / n_malignant),
        "malignant_precision": _interval(precision, point_tp / point_predicted if point_predicted else 0.0),
        "roc_auc": _interval(roc_auc, point_auc),
    }


def evaluate_scores(
    y_true: Any,
    p_malignant: Any,
    threshold: float,
    data: str,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """The JSON-serialisable evaluation of P(malignant) scores on one data set at a given threshold.

    ``data`` names the cases (``out-of-fold``, ``holdout``). Keys: ``data``, ``threshold``, ``n``,
    ``n_malignant``, ``roc_auc``, ``pr_auc`` (average precision), ``at_default_threshold`` and
    ``at_operating_threshold`` (each ``threshold``, ``classification_report``, ``confusion_matrix``),
    ``malignant_recall_lower_bound`` (one-sided Clopper-Pearson) and ``bootstrap`` (intervals at the
    operating threshold).
    """
    labels = as_labels(y_true, "y_true")
    scores = as_scores(p_malignant, len(labels), "p_malignant")
    require_both_classes(labels, data)
    is_malignant = labels == MALIGNANT
    return {
        "data": data,
        "threshold": float(threshold),
        "n": int(len(labels)),
        "n_malignant": int(is_malignant.sum()),
        "roc_auc": float(roc_auc_score(is_malignant, scores)),
        "pr_auc": float(average_precision_score(is_malignant, scores)),
        "at_default_threshold": _report(labels, scores, DEFAULT_THRESHOLD),
        "at_operating_threshold": _report(labels, scores, threshold),
        "malignant_recall_lower_bound": recall_lower_bound(
            int(np.sum(scores[is_malignant] >= threshold)), int(is_malignant.sum())
        ),
        "bootstrap": bootstrap_intervals(labels, scores, threshold, n_bootstrap, seed),
    }


def evaluate_out_of_fold(
    y_true: Any,
    p_out_of_fold: Any,
    target_recall: float = DEFAULT_TARGET_RECALL,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """A model's decision report: its conformal threshold chosen on its out-of-fold scores, and every
    metric on those same scores (what champion selection compares; never the holdout).

    ``evaluate_scores``'s keys plus ``target_recall`` and ``threshold_choice`` (``ThresholdChoice.to_dict``).
    """
    choice = conformal_threshold(y_true, p_out_of_fold, target_recall)
    report = evaluate_scores(y_true, p_out_of_fold, choice.threshold, "out-of-fold", n_bootstrap, seed)
    return {**report, "target_recall": float(target_recall), "threshold_choice": choice.to_dict()}


ALL_EVIDENCE = "out-of-fold and holdout"


def evaluate_all_evidence(
    out_of_fold_labels: Any,
    out_of_fold_scores: Any,
    holdout_labels: Any,
    holdout_scores: Any,
    threshold: float,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """``evaluate_scores`` over every labeled case a model has an honest score for: its out-of-fold scores (each from
    the fold model that never fitted the case) and its holdout scores: every labeled case rather than the holdout's
    share, so a bar judged on it is decided far less by which few cases the holdout drew. The out-of-fold part is
    where the threshold was set (its recall sits near the target by construction); the holdout part is the
    independent check: read both (``evaluate_scores`` of each) beside this one."""
    parts = [("out-of-fold", out_of_fold_labels, out_of_fold_scores), ("holdout", holdout_labels, holdout_scores)]
    labels, scores = [], []
    for name, part_labels, part_scores in parts:
        labels.append(as_labels(part_labels, f"{name} labels"))
        scores.append(as_scores(part_scores, len(labels[-1]), f"{name} scores"))
    labels, scores = np.concatenate(labels), np.concatenate(scores)
    return evaluate_scores(labels, scores, threshold, ALL_EVIDENCE, n_bootstrap, seed)


def headline_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """Flat floats at the operating threshold, for metadata the UI plots over time."""
    at_threshold = report["at_operating_threshold"]["classification_report"]
    malignant, benign = at_threshold[CLASS_NAMES[MALIGNANT]], at_threshold[CLASS_NAMES[BENIGN]]
    return {
        "malignant_recall": float(malignant["recall"]),
        "malignant_precision": float(malignant["precision"]),
        "benign_precision": float(benign["precision"]),
        "malignant_f1": float(malignant["f1-score"]),
        "roc_auc": float(report["roc_auc"]),
        "pr_auc": float(report["pr_auc"]),
        "accuracy": float(at_threshold["accuracy"]),
        "threshold": float(report["threshold"]),
        "malignant_recall_lower_bound": float(report["malignant_recall_lower_bound"]),
    }
