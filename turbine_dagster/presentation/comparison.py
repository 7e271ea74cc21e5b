"""A champion-challenger comparison as people read it in the Dagster UI: Markdown tables and a P(malignant) plot."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from turbine_dagster.core.schema import CASE_ID, MALIGNANT
from turbine_dagster.core.serving.comparison_report import (
    HISTOGRAM_BINS,
    ComparisonReport,
    LabeledMetrics,
    histogram_quantile,
)
from turbine_dagster.presentation.figures import figure_markdown
from turbine_dagster.presentation.tables import compact_markdown_table


def _share(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _label_name(code: int) -> str:
    return "malignant" if code == MALIGNANT else "benign"


def _labelled_row(name: str, metrics: LabeledMetrics) -> list[str]:
    return [
        name,
        _share(metrics.malignant_recall),
        _share(metrics.malignant_precision),
        f"{metrics.true_positives:,} of {metrics.n_malignant:,}",
        f"{metrics.n_predicted_malignant:,}",
    ]


def comparison_markdown(report: ComparisonReport) -> str:
    """Summary, disagreement sample, score shift and (when labelled) recall/precision, as Markdown tables."""
    champion, challenger = report.champion_name, report.challenger_name
    summary = [
        ["cases compared", f"{report.n_compared:,}"],
        ["agreement rate", f"{report.agreement_rate:.4f}"],
        ["disagreements", f"{report.n_disagree:,}"],
        [f"malignant by {champion} only", f"{report.champion_only_malignant:,}"],
        [f"malignant by {challenger} only", f"{report.challenger_only_malignant:,}"],
        [f"scored by {champion} only", f"{report.n_champion_only:,}"],
        [f"scored by {challenger} only", f"{report.n_challenger_only:,}"],
        [f"threshold {champion}", _share(report.champion_threshold)],
        [f"threshold {challenger}", _share(report.challenger_threshold)],
    ]
    parts = [compact_markdown_table(pd.DataFrame(summary, columns=["", "value"]), align={"value": "right"})]

    shift = report.shift
    quantiles = [["mean", f"{shift['champion_mean']:.4f}", f"{shift['challenger_mean']:.4f}"]] + [
        [q, f"{values['champion']:.4f}", f"{values['challenger']:.4f}"] for q, values in shift["quantiles"].items()
    ]
    parts += [
        f"**P(malignant) shift** ({challenger} - {champion}): mean difference {shift['mean_difference']:+.4f}, "
        f"mean absolute difference {shift['mean_absolute_difference']:.4f}, "
        f"largest {shift['max_absolute_difference']:.4f}, KS statistic {shift['ks_statistic']:.4f}",
        compact_markdown_table(
            pd.DataFrame(quantiles, columns=["quantile", champion, challenger]),
            align={"quantile": "right", champion: "right", challenger: "right"},
        ),
    ]

    sample = report.sample
    parts.append(f"**Disagreements** ({len(sample)} of {report.n_disagree:,}, largest P(malignant) difference first)")
    if len(sample):
        disagreements = [
            [
                str(row[CASE_ID]),
                f"{row['champion_p_malignant']:.4f}",
                _label_name(row["champion_label"]),
                f"{row['challenger_p_malignant']:.4f}",
                _label_name(row["challenger_label"]),
            ]
            for row in sample.to_dict("records")
        ]
        headers = [
            CASE_ID,
            f"{champion} P(malignant)",
            f"{champion} says",
            f"{challenger} P(malignant)",
            f"{challenger} says",
        ]
        probabilities = {headers[1]: "right", headers[3]: "right"}
        parts.append(compact_markdown_table(pd.DataFrame(disagreements, columns=headers), align=probabilities))

    if report.labeled is not None:
        counts = report.labeled["champion"]
        labelled = [
            _labelled_row(name, report.labeled[role])
            for role, name in (("champion", champion), ("challenger", challenger))
        ]
        split = report.labeled_disagreements
        headers = ["model", "malignant recall", "malignant precision", "malignant found", "predicted malignant"]
        parts += [
            f"**On the {counts.n_labeled:,} compared cases with a label** ({counts.n_malignant:,} malignant)",
            compact_markdown_table(
                pd.DataFrame(labelled, columns=headers), align={column: "right" for column in headers[1:]}
            ),
            f"Labelled disagreements: {split['n']:,}; {champion} right on {split['champion_right']:,}, "
            f"{challenger} right on {split['challenger_right']:,}.",
        ]
    return "\n\n".join(parts)


def p_malignant_plot_markdown(report: ComparisonReport) -> str:
    """Histogram and ECDF of P(malignant) of both models, and case-by-case scatter, as a Markdown PNG.

    Drawn from the report's fixed-size distributions: the compared cases' histograms and a sample of at most
    PLOT_MAX_POINTS of them for the scatter.
    """
    champion_name, challenger_name = report.champion_name, report.challenger_name
    distributions = report.distributions
    fig, (histogram_axis, ecdf_axis, scatter_axis) = plt.subplots(1, 3, figsize=(15, 4))

    edges = np.linspace(0.0, 1.0, 41)
    fine_edges = np.minimum((edges * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS)
    levels = np.linspace(0.0, 1.0, 513)
    for histogram, name in ((distributions.champion, champion_name), (distributions.challenger, challenger_name)):
        cumulative = np.r_[0, np.cumsum(histogram)]
        counts = cumulative[fine_edges[1:]] - cumulative[fine_edges[:-1]]
        histogram_axis.stairs(counts, edges, fill=True, alpha=0.5, label=name)
        # The ECDF through 513 quantiles: the same curve as every point, at a fixed cost.
        ecdf_axis.plot([histogram_quantile(cumulative[1:], level) for level in levels], levels, label=name)
    histogram_axis.set_xlabel("P(malignant)")
    histogram_axis.set_ylabel("cases")
    histogram_axis.set_title("Distribution")
    histogram_axis.legend(fontsize=8)
    ecdf_axis.set_xlabel("P(malignant)")
    ecdf_axis.set_ylabel("cumulative share")
    ecdf_axis.set_title("ECDF")

    shown = distributions.sample
    disagree = shown["disagree"].to_numpy(dtype=bool)
    scatter_axis.scatter(
        shown["p_champion"][~disagree], shown["p_challenger"][~disagree], s=6, alpha=0.4, label="same label"
    )
    scatter_axis.scatter(
        shown["p_champion"][disagree], shown["p_challenger"][disagree], s=10, color="tab:red", label="different label"
    )
    scatter_axis.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
    scatter_axis.set_xlabel(f"{champion_name} P(malignant)")
    scatter_axis.set_ylabel(f"{challenger_name} P(malignant)")
    scatter_axis.set_title(f"Case by case ({len(shown):,} of {report.n_compared:,})")
    scatter_axis.legend(fontsize=8)
    fig.tight_layout()
    return figure_markdown(fig, f"P(malignant): {champion_name} vs {challenger_name}")
