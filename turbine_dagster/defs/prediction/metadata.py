"""What the UI shows of each prediction asset: table schemas, counts a person checks first, and the Markdown
reports, built from the core's results."""

from typing import Any

import dagster as dg
import pandas as pd

from turbine_dagster.core.models.checkpoints import Checkpoint
from turbine_dagster.core.monitoring.drift import DriftResult
from turbine_dagster.core.registry.versions import ModelVersion, model_reference, scoring_threshold
from turbine_dagster.core.serving.columns import OUTPUT_SCHEMA, QUARANTINE_SCHEMA
from turbine_dagster.core.serving.comparison_report import DISAGREEMENT_COLUMNS, ComparisonReport
from turbine_dagster.defs.table_metadata import column_schema, table_metadata
from turbine_dagster.presentation.comparison import comparison_markdown, p_malignant_plot_markdown
from turbine_dagster.presentation.drift import drift_distributions_markdown, drift_table_markdown
from turbine_dagster.presentation.scoring import unusual_values_markdown


def summary_metadata(summary) -> dict[str, Any]:
    """What a person checks first about a scoring run's input: the layouts it came in, unusually large values."""
    layouts = pd.Series(summary.layouts, dtype="object").value_counts().sort_index()
    return {
        "layouts": dg.MetadataValue.json({str(name): int(count) for name, count in layouts.items()}),
        "rows_with_unusually_large_values": summary.rows_unusually_large,
        **(
            {
                "unusually_large_values": dg.MetadataValue.md(
                    unusual_values_markdown(summary.unusually_large_by_feature, summary.unusually_large_examples)
                )
            }
            if summary.rows_unusually_large
            else {}
        ),
    }


def batch_predictions_metadata(
    summary, version: ModelVersion, checkpoint: Checkpoint | None, ignored: list[str]
) -> dict[str, Any]:
    """A scoring run's output (schema, counts, speed, where it went), the model it used, and its input."""
    return {
        **table_metadata(OUTPUT_SCHEMA, summary.rows_scored),
        "quarantine_column_schema": dg.MetadataValue.table_schema(column_schema(QUARANTINE_SCHEMA)),
        "rows_scored": summary.rows_scored,
        "rows_quarantined": summary.rows_quarantined,
        "rows_per_second": round(summary.rows_per_second, 1),
        "share_predicted_malignant": summary.share_predicted_malignant,
        "model_version": model_reference(version, checkpoint),
        "model_type": version.model_type,
        "threshold": scoring_threshold(version, checkpoint),
        "output_uri": dg.MetadataValue.path(summary.output_uri),
        **({"quarantine_uri": dg.MetadataValue.path(summary.quarantine_uri)} if summary.quarantine_uri else {}),
        "source_files": dg.MetadataValue.md(
            "\n".join(f"- {name} ({layout})" for name, layout in zip(summary.files, summary.layouts, strict=True))
        ),
        **summary_metadata(summary),
        **({"ignored_landing_entries": dg.MetadataValue.json(ignored)} if ignored else {}),
    }


def drift_metadata(
    result: DriftResult, reference: pd.DataFrame, current: pd.DataFrame, version: ModelVersion
) -> dict[str, Any]:
    """The drift decision, its largest shift, and the per-feature table and distributions."""
    top = result.features.iloc[0]
    return {
        "drift_detected": result.drift_detected,
        "drifted_features": result.n_drifted,
        "reason": result.reason,
        "max_psi": float(top["psi"]),
        "most_drifted_feature": str(top["feature"]),
        "rows_compared": result.rows_current,
        "reference_version": version.label,
        "features": dg.MetadataValue.md(drift_table_markdown(result)),
        "distributions": dg.MetadataValue.md(drift_distributions_markdown(reference, current, result)),
    }


def comparison_metadata(
    report: ComparisonReport,
    stored: dict,
    champion: ModelVersion,
    challenger: ModelVersion,
    challenger_checkpoint: Checkpoint | None,
) -> dict[str, Any]:
    """The comparison's headline numbers, its report and plot, and the table it stores (``stored``, the report's
    dict): its sample of the most different disagreements."""
    stored_sample = pd.DataFrame.from_records(
        stored["disagreement_sample"],
        columns=[column for column in DISAGREEMENT_COLUMNS if column != "difference"],
    )
    return {
        **table_metadata(stored_sample),
        "champion": model_reference(champion),
        "challenger": model_reference(challenger, challenger_checkpoint),
        "cases_compared": report.n_compared,
        "agreement_rate": report.agreement_rate,
        "champion_only_malignant": report.champion_only_malignant,
        "challenger_only_malignant": report.challenger_only_malignant,
        "ks_statistic": report.shift["ks_statistic"],
        "mean_difference": report.shift["mean_difference"],
        "labeled_cases": labeled_cases(report),
        "comparison": dg.MetadataValue.md(comparison_markdown(report)),
        "p_malignant": dg.MetadataValue.md(p_malignant_plot_markdown(report)),
    }


def labeled_cases(report: ComparisonReport) -> int:
    """Compared cases whose label has landed."""
    return 0 if report.labeled is None else report.labeled["champion"].n_labeled
