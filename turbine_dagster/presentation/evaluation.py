"""An evaluation as people read it: the metrics table and ROC, precision-recall and confusion-matrix plots."""

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score, roc_curve

from turbine_dagster.core.evaluation.metrics import (
    DEFAULT_THRESHOLD,
    LABELS,
    as_labels,
    as_scores,
    predict_labels,
    require_both_classes,
)
from turbine_dagster.core.schema import CLASS_NAMES, MALIGNANT
from turbine_dagster.presentation.figures import figure_markdown
from turbine_dagster.presentation.tables import compact_markdown_table


def metrics_table_markdown(report: Mapping[str, Any]) -> str:
    """Metrics at 0.5 and at the operating threshold side by side, with the bootstrap intervals."""
    default = report["at_default_threshold"]["classification_report"]
    operating = report["at_operating_threshold"]["classification_report"]
    intervals = report["bootstrap"]
    percent = round(intervals["confidence"] * 100)

    def interval(name: str | None) -> str:
        return f"{intervals[name]['low']:.3f} – {intervals[name]['high']:.3f}" if name else ""

    per_class = [  # (row, report section, report key, bootstrap interval)
        ("malignant recall", "malignant", "recall", "malignant_recall"),
        ("malignant precision", "malignant", "precision", "malignant_precision"),
        ("malignant F1", "malignant", "f1-score", None),
        ("benign recall", "benign", "recall", None),
        ("benign precision", "benign", "precision", None),
        ("benign F1", "benign", "f1-score", None),
    ]
    rows = [
        (name, f"{default[section][key]:.3f}", f"{operating[section][key]:.3f}", interval(interval_key))
        for name, section, key, interval_key in per_class
    ]
    rows.append(("accuracy", f"{default['accuracy']:.3f}", f"{operating['accuracy']:.3f}", ""))
    roc_auc, pr_auc = f"{report['roc_auc']:.4f}", f"{report['pr_auc']:.4f}"
    rows.append(("ROC-AUC (malignant positive)", roc_auc, roc_auc, interval("roc_auc")))
    rows.append(("PR-AUC (average precision)", pr_auc, pr_auc, ""))
    columns = [
        "metric",
        f"at {report['at_default_threshold']['threshold']:.2f}",
        f"at operating threshold {report['threshold']:.3f}",
        f"{percent} % interval (operating)",
    ]
    table = compact_markdown_table(pd.DataFrame(rows, columns=columns), align=dict.fromkeys(columns[1:], "right"))

    malignant_support = int(operating["malignant"]["support"])
    paragraphs = [
        table,
        f"Data: {report['data']}, {report['n']} cases, {malignant_support} malignant "
        f"(one missed cancer moves malignant recall by {1 / malignant_support:.3f}); malignant recall ≥ "
        f"{report['malignant_recall_lower_bound']:.3f} with {percent} % confidence (one-sided Clopper-Pearson).",
    ]
    if "threshold_choice" in report:
        choice = report["threshold_choice"]
        paragraphs.append(
            f"Threshold {choice['threshold']:.4f}: {choice['method']}, the k = {choice['k']}-th lowest of "
            f"n = {choice['n_malignant']} malignant scores, expected recall on new cases "
            f"{choice['expected_recall']:.3f} (target {choice['target_recall']:.2f}"
            + ("" if choice["certifiable"] else "; **not certifiable** at this target with so few malignant cases")
            + ")."
        )
    return "\n\n".join(paragraphs)


def evaluation_plots_markdown(y_true: Any, p_malignant: Any, threshold: float, data: str = "holdout") -> dict[str, str]:
    """ROC curve, precision-recall curve and confusion matrices as PNGs embedded in Markdown.

    Keys: ``roc_curve``, ``pr_curve``, ``confusion_matrix``; the curves mark the operating point.
    """
    labels = as_labels(y_true, "y_true")
    scores = as_scores(p_malignant, len(labels), "p_malignant")
    require_both_classes(labels, data)
    is_malignant = labels == MALIGNANT
    predicted_malignant = predict_labels(scores, threshold) == MALIGNANT
    recall = float(np.mean(predicted_malignant[is_malignant]))
    false_positive_rate = float(np.mean(predicted_malignant[~is_malignant]))
    precision = float(np.mean(is_malignant[predicted_malignant])) if predicted_malignant.any() else 0.0
    operating_label = f"operating threshold {threshold:.3f}"

    fpr, tpr, _ = roc_curve(is_malignant, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"ROC (AUC {roc_auc_score(is_malignant, scores):.4f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.scatter([false_positive_rate], [recall], color="crimson", zorder=3, label=operating_label)
    ax.set(xlabel="false positive rate (benign called malignant)", ylabel="malignant recall", title="ROC curve")
    ax.legend(loc="lower right")
    roc_markdown = figure_markdown(fig, "ROC curve")

    curve_precision, curve_recall, _ = precision_recall_curve(is_malignant, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(curve_recall, curve_precision, label=f"PR (AP {average_precision_score(is_malignant, scores):.4f})")
    ax.scatter([recall], [precision], color="crimson", zorder=3, label=operating_label)
    ax.set(xlabel="malignant recall", ylabel="malignant precision", title="Precision-recall curve", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    pr_markdown = figure_markdown(fig, "Precision-recall curve")

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), sharey=True, layout="constrained")
    for ax, at in zip(axes, (DEFAULT_THRESHOLD, threshold), strict=True):
        matrix = confusion_matrix(labels, predict_labels(scores, at), labels=LABELS)
        ax.imshow(matrix, cmap="Blues")
        for (row, column), count in np.ndenumerate(matrix):
            colour = "white" if count > matrix.max() / 2 else "black"
            ax.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=12)
        ax.set(
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=CLASS_NAMES,
            yticklabels=CLASS_NAMES,
            xlabel="predicted",
            title=f"threshold {at:.3f}",
        )
    axes[0].set_ylabel("true")
    fig.suptitle(f"Confusion matrix ({data})")
    confusion_markdown = figure_markdown(fig, "Confusion matrix")
    return {"roc_curve": roc_markdown, "pr_curve": pr_markdown, "confusion_matrix": confusion_markdown}
