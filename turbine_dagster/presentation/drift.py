"""A drift result as people read it: the per-feature table and reference-vs-current distribution plots."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from turbine_dagster.core.monitoring.drift import DriftResult
from turbine_dagster.presentation.figures import figure_markdown
from turbine_dagster.presentation.tables import compact_markdown_table


def _format_p(p: float) -> str:
    if p == 0.0:  # scipy returns 0 when the p-value underflows
        return "< 1e-300"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def drift_table_markdown(result: DriftResult, top: int | None = None) -> str:
    """The per-feature table, most shifted first (all features, or the `top` first)."""
    rows = result.features if top is None else result.features.head(top)
    table = pd.DataFrame(
        {
            "feature": rows["feature"],
            "PSI": [f"{psi:.3f}" for psi in rows["psi"]],
            "KS statistic": [f"{statistic:.3f}" for statistic in rows["ks_statistic"]],
            "corrected p": [_format_p(p) for p in rows["p_corrected"]],
            "drifted": ["yes" if drifted else "no" for drifted in rows["drifted"]],
        }
    )
    return compact_markdown_table(
        table, align={"PSI": "right", "KS statistic": "right", "corrected p": "right", "drifted": "center"}
    )


def drift_distributions_markdown(
    reference: pd.DataFrame, current: pd.DataFrame, result: DriftResult, top: int = 4
) -> str:
    """Histogram and ECDF, reference vs current, of the `top` features by PSI, as a Markdown PNG.

    Plots all rows of `current`; pass the same frame given to `detect_drift`, or a sample of it
    when it is large.
    """
    features = list(result.features["feature"].head(top))
    fig, axes = plt.subplots(len(features), 2, figsize=(10, 2.6 * len(features)), squeeze=False)
    for (histogram_axis, ecdf_axis), feature in zip(axes, features, strict=True):
        reference_values = reference[feature].to_numpy(dtype=float)
        current_values = current[feature].to_numpy(dtype=float)
        # Shared bin edges over both samples, so a shift outside the reference range stays visible.
        edges = np.histogram_bin_edges(np.concatenate([reference_values, current_values]), bins=30)
        histogram_axis.hist(reference_values, bins=edges, density=True, alpha=0.5, label="reference")
        histogram_axis.hist(current_values, bins=edges, density=True, alpha=0.5, label="current")
        histogram_axis.set_ylabel("density")
        for values, label in ((reference_values, "reference"), (current_values, "current")):
            ordered = np.sort(values)
            cumulative_share = np.arange(1, len(ordered) + 1) / len(ordered)
            ecdf_axis.step(ordered, cumulative_share, where="post", label=label)
        ecdf_axis.set_ylabel("cumulative share")
        row = result.features.set_index("feature").loc[feature]
        verdict = "drifted" if row.drifted else "not drifted"
        histogram_axis.set_title(f"{feature} ({verdict}): PSI {row.psi:.2f}", fontsize=10)
        ecdf_axis.set_title(
            f"{feature}: KS {row.ks_statistic:.2f}, corrected p {_format_p(row.p_corrected)}",
            fontsize=10,
        )
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return figure_markdown(fig, f"Distributions of the {len(features)} most shifted features")
