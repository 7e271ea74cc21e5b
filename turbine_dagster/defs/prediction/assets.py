"""Batch predictions and drift monitoring of one team's week, from the team's serving champion.

This side reads only the model registry and the scoring landing data. Both assets declare the
training location's ``serving_champion`` as their upstream (same asset key), so the UI draws one
graph from raw data to predictions across the two code locations.
"""

import functools
from collections.abc import Iterator

import dagster as dg
import pandas as pd
from pydantic import Field

from turbine_dagster.core.data import cases as data
from turbine_dagster.core.data import landing
from turbine_dagster.core.models.checkpoints import Checkpoint
from turbine_dagster.core.monitoring import drift
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.core.registry.versions import (
    ModelVersion,
    RegistryLookupError,
    model_reference,
    scoring_threshold,
)
from turbine_dagster.defs.code_versions import versioned
from turbine_dagster.defs.partitions import team_and_week, team_week_partitions
from turbine_dagster.defs.resources import LandingZone, ModelRegistryResource, PartitionFolders
from turbine_dagster.defs.retries import STORAGE_RETRY_POLICY
from turbine_dagster.defs.table_metadata import column_schema, table_metadata
from turbine_dagster.presentation.drift import drift_distributions_markdown, drift_table_markdown

SERVING_CHAMPION = dg.AssetKey("serving_champion")
OWNERS = ["team:ml-platform"]
# Every asset here works on one team's week from its serving champion, and skips a week with no data.
prediction_side_asset = functools.partial(
    dg.asset,
    partitions_def=team_week_partitions,
    owners=OWNERS,
    deps=[SERVING_CHAMPION],
    output_required=False,
    retry_policy=STORAGE_RETRY_POLICY,
)


class BatchPredictionConfig(dg.Config):
    chunk_rows: int = Field(100_000, ge=1, description="Rows read, validated and scored at a time: bounds memory.")
    batch_size: int = Field(8192, ge=1, description="Rows per Keras predict batch.")
    model_version: str | None = Field(
        None, description="Registry version to score with (3 or v0003); default: the team's serving champion."
    )
    checkpoint: str | None = Field(
        None, description="A checkpoint of that version, e.g. epoch-0005; default: the version's own model."
    )


class ChallengerComparisonConfig(dg.Config):
    challenger_version: str | None = Field(
        None, description="Registry version to compare with the serving champion; default: the newest one not serving."
    )
    challenger_checkpoint: str | None = Field(None, description="A checkpoint of the challenger version.")
    sample_size: int = Field(20, ge=1, description="Disagreeing cases listed in the metadata.")
    chunk_rows: int = Field(100_000, ge=1)


class DriftConfig(dg.Config):
    min_drifted_features: int = Field(1, ge=1, description="The week drifts when at least this many features drift.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance of the Holm-corrected KS test per feature.")
    psi_threshold: float = Field(0.2, ge=0, description="A drifted feature also needs at least this PSI.")
    max_rows: int = Field(20_000, ge=100, description="Scoring rows sampled for the comparison.")
    seed: int = Field(0)


def resolve_model(
    context: dg.AssetExecutionContext, store: ModelRegistry, team: str, version: str | None, checkpoint: str | None
) -> tuple[ModelVersion, Checkpoint | None]:
    """The version and checkpoint asked for; without a version, the team's serving champion."""
    if version is None and checkpoint is None:
        return serving_version(context, store, team), None
    try:
        return store.resolve(team, version, checkpoint)
    except RegistryLookupError as error:
        raise dg.Failure(
            description=f"{context.asset_key.to_user_string()} for {context.partition_key}: {error}",
            allow_retries=False,
        ) from error


def serving_version(context: dg.AssetExecutionContext, store: ModelRegistry, team: str) -> ModelVersion:
    version = store.serving(team)
    if version is None:
        raise dg.Failure(
            description=f"{context.asset_key.to_user_string()} for {context.partition_key}: team {team} has no serving "
            f"champion in the model registry ({store.root}). Train one first: run the training_pipeline job "
            f"of the turbine-training location for a {team} partition, and let its promotion gate promote it.",
            allow_retries=False,
        )
    return version


def scoring_files(context: dg.AssetExecutionContext, landing_zone: LandingZone, team: str, week: str):
    root = landing_zone.path()
    folder = landing.partition_dir(root, landing.SCORING, team, week)
    strays = ignored_entries(context, root, team)
    if strays:
        context.log.warning(
            f"{context.asset_key.to_user_string()} for {context.partition_key}: {landing.stray_warning(strays)}"
        )
    try:
        return root, landing.data_files(folder, root)
    except landing.LandingError as error:
        raise dg.Failure(
            description=f"{context.asset_key.to_user_string()} for {context.partition_key}: {error}",
            allow_retries=False,
        ) from error


def ignored_entries(context: dg.AssetExecutionContext, root, team: str) -> list[str]:
    """What lies in the team's scoring folder but is never read (a mistyped week folder); one listing per run."""
    return landing.stray_entries(root, landing.SCORING, team)


def _skipped_empty(context: dg.AssetExecutionContext, root, team: str, week: str) -> None:
    folder = landing.relative_name(landing.partition_dir(root, landing.SCORING, team, week), root)
    context.log.warning(f"{context.partition_key}: no scoring cases under {folder}; nothing to do, skipped")


def score_with(
    context: dg.AssetExecutionContext,
    store: ModelRegistry,
    version: ModelVersion,
    checkpoint: Checkpoint | None,
    files,
    root,
    folder,
    name: str,
    chunk_rows: int,
    batch_size: int = 8192,
):
    from turbine_dagster.core.serving import scoring  # TensorFlow loads in runs, not in the code server

    reference = model_reference(version, checkpoint)
    threshold = scoring_threshold(version, checkpoint)
    context.log.info(
        f"scoring {len(files)} file(s) with {reference} ({version.model_type}) at threshold {threshold:.4f}"
    )
    try:
        return scoring.score_partition(
            files,
            root,
            store.load_model(version, checkpoint),
            threshold=threshold,
            model_version=reference,
            output=folder / f"{name}.parquet",
            quarantine=folder / f"{name}-quarantine.parquet",
            chunk_rows=chunk_rows,
            batch_size=batch_size,
            on_progress=lambda progress: context.log.info(progress.message()),
        )
    except (landing.LandingError, scoring.ModelOutputError) as error:
        raise dg.Failure(
            description=f"{context.asset_key.to_user_string()} for {context.partition_key}: {error}",
            allow_retries=False,
        ) from error


def summary_metadata(summary) -> dict:
    """What a person checks first about a scoring run's input: the layouts it came in, unusually large values."""
    layouts = pd.Series(summary.layouts, dtype="object").value_counts().sort_index()
    unusual = pd.DataFrame(
        {"feature": list(summary.unusually_large_by_feature), "rows": list(summary.unusually_large_by_feature.values())}
    )
    return {
        "layouts": dg.MetadataValue.json({str(name): int(count) for name, count in layouts.items()}),
        "rows_with_unusually_large_values": summary.rows_unusually_large,
        **(
            {
                "unusually_large_values": dg.MetadataValue.md(
                    unusual.to_markdown(index=False) + "\n\nExamples: " + ", ".join(summary.unusually_large_examples)
                )
            }
            if summary.rows_unusually_large
            else {}
        ),
    }


@versioned
@prediction_side_asset(
    group_name="prediction",
    kinds={"parquet"},
    description="Scores the team's scoring cases of the week in chunks with the serving champion at its operating "
    "threshold; rows that break the data rules are quarantined with their reason.",
)
def batch_predictions(
    context: dg.AssetExecutionContext,
    config: BatchPredictionConfig,
    landing_zone: LandingZone,
    registry: ModelRegistryResource,
    prediction_store: PartitionFolders,
) -> Iterator[dg.MaterializeResult]:
    team, week = team_and_week(context)
    store = registry.registry()
    version, checkpoint = resolve_model(context, store, team, config.model_version, config.checkpoint)
    root, files = scoring_files(context, landing_zone, team, week)
    if not files:
        _skipped_empty(context, root, team, week)
        return
    reference = model_reference(version, checkpoint)
    # The champion's predictions are the partition's; any other model's go beside them, named by reference.
    name = (
        "predictions"
        if (config.model_version, config.checkpoint) == (None, None)
        else f"predictions-{reference.replace('/', '-')}"
    )
    summary = score_with(
        context,
        store,
        version,
        checkpoint,
        files,
        root,
        prediction_store.folder(team, week),
        name,
        config.chunk_rows,
        config.batch_size,
    )
    if summary.empty:
        _skipped_empty(context, root, team, week)
        return
    from turbine_dagster.core.serving.columns import OUTPUT_SCHEMA, QUARANTINE_SCHEMA

    yield dg.MaterializeResult(
        metadata={
            **table_metadata(OUTPUT_SCHEMA, summary.rows_scored),
            "quarantine_column_schema": dg.MetadataValue.table_schema(column_schema(QUARANTINE_SCHEMA)),
            "rows_scored": summary.rows_scored,
            "rows_quarantined": summary.rows_quarantined,
            "rows_per_second": round(summary.rows_per_second, 1),
            "share_predicted_malignant": summary.share_predicted_malignant,
            "model_version": reference,
            "model_type": version.model_type,
            "threshold": scoring_threshold(version, checkpoint),
            "output_uri": dg.MetadataValue.path(summary.output_uri),
            **({"quarantine_uri": dg.MetadataValue.path(summary.quarantine_uri)} if summary.quarantine_uri else {}),
            "source_files": dg.MetadataValue.md(
                "\n".join(f"- {name} ({layout})" for name, layout in zip(summary.files, summary.layouts, strict=True))
            ),
            **summary_metadata(summary),
            **(
                {"ignored_landing_entries": dg.MetadataValue.json(strays)}
                if (strays := ignored_entries(context, root, team))
                else {}
            ),
        }
    )


@versioned
@prediction_side_asset(
    group_name="monitoring",
    kinds={"scipy"},
    io_manager_key="json_io_manager",
    description="PSI and Holm-corrected KS per feature between the week's scoring data (a bounded sample) and the "
    "serving champion's training reference, and the drift decision.",
)
def drift_report(
    context: dg.AssetExecutionContext, config: DriftConfig, landing_zone: LandingZone, registry: ModelRegistryResource
) -> Iterator[dg.Output[dict]]:
    team, week = team_and_week(context)
    store = registry.registry()
    version = serving_version(context, store, team)
    root, files = scoring_files(context, landing_zone, team, week)
    from turbine_dagster.core.serving.sampling import sample_clean_features

    current = sample_clean_features(files, root, config.max_rows, config.seed) if files else None
    if current is None or current.empty:
        _skipped_empty(context, root, team, week)
        return
    reference = store.load_reference(version)
    rule = drift.DriftRule(
        min_drifted_features=config.min_drifted_features, alpha=config.alpha, psi_threshold=config.psi_threshold
    )
    result = drift.detect_drift(reference, current, rule, max_rows=None, seed=config.seed)
    context.log.info(result.reason)
    top = result.features.iloc[0]
    yield dg.Output(
        {**result.to_dict(), "team": team, "week": week, "model_version": version.label},
        metadata={
            "drift_detected": result.drift_detected,
            "drifted_features": result.n_drifted,
            "reason": result.reason,
            "max_psi": float(top["psi"]),
            "most_drifted_feature": str(top["feature"]),
            "rows_compared": result.rows_current,
            "reference_version": version.label,
            "features": dg.MetadataValue.md(drift_table_markdown(result)),
            "distributions": dg.MetadataValue.md(drift_distributions_markdown(reference, current, result)),
        },
    )


@dg.asset_check(
    asset=drift_report,
    blocking=False,
    partitions_def=team_week_partitions,
    retry_policy=STORAGE_RETRY_POLICY,
    description="Warns when the week's scoring data drifted from the champion's training data.",
)
def no_data_drift(drift_report: dict) -> dg.AssetCheckResult:
    drifted = [row["feature"] for row in drift_report["features"] if row["drifted"]]
    return dg.AssetCheckResult(
        passed=not drift_report["drift_detected"],
        severity=dg.AssetCheckSeverity.WARN,
        description=drift_report["reason"],
        metadata={"drifted_features": dg.MetadataValue.json(drifted)},
    )


@versioned
@prediction_side_asset(
    group_name="prediction",
    kinds={"parquet"},
    io_manager_key="json_io_manager",
    description="Scores the week with the serving champion and a challenger version (default: the newest one not "
    "serving) and compares them: agreement, disagreements on malignant, score shift, and recall and "
    "precision of each where labels for those cases have landed.",
)
def challenger_comparison(
    context: dg.AssetExecutionContext,
    config: ChallengerComparisonConfig,
    landing_zone: LandingZone,
    registry: ModelRegistryResource,
    prediction_store: PartitionFolders,
) -> Iterator[dg.Output[dict]]:
    from turbine_dagster.core.serving.comparison import compare_prediction_files
    from turbine_dagster.core.serving.comparison_report import DISAGREEMENT_COLUMNS
    from turbine_dagster.presentation.comparison import comparison_markdown, p_malignant_plot_markdown

    team, week = team_and_week(context)
    store = registry.registry()
    champion = serving_version(context, store, team)
    if config.challenger_version is None and config.challenger_checkpoint is None:
        challenger = store.newest_not_serving(team)
        if challenger is None:
            context.log.warning(
                f"{team} has no registry version besides the serving {champion.label}: nothing to compare, skipped"
            )
            return
        challenger_checkpoint = None
    else:
        challenger, challenger_checkpoint = resolve_model(
            context, store, team, config.challenger_version, config.challenger_checkpoint
        )
    root, files = scoring_files(context, landing_zone, team, week)
    if not files:
        _skipped_empty(context, root, team, week)
        return
    folder = prediction_store.folder(team, week) / "comparison"
    for role, (version, checkpoint) in {
        "champion": (champion, None),
        "challenger": (challenger, challenger_checkpoint),
    }.items():
        score_with(context, store, version, checkpoint, files, root, folder, role, config.chunk_rows)
    # Labels are the team's labelled cases (training-sized); the predictions are joined bucket by bucket, so memory
    # does not grow with the week's scored rows.
    labels = data.landed_labels(landing_zone.path(), team)
    try:
        report = compare_prediction_files(
            folder / "champion.parquet", folder / "challenger.parquet", labels, config.sample_size
        )
    except ValueError as error:
        raise dg.Failure(
            description=f"challenger_comparison for {context.partition_key}: {error}", allow_retries=False
        ) from error
    labeled_cases = 0 if report.labeled is None else report.labeled["champion"].n_labeled
    context.log.info(
        f"agreement {report.agreement_rate:.4f} over {report.n_compared} cases; labels for {labeled_cases} of them"
    )
    value = report.to_dict()
    stored_sample = pd.DataFrame.from_records(
        value["disagreement_sample"],
        columns=[column for column in DISAGREEMENT_COLUMNS if column != "difference"],
    )
    yield dg.Output(
        value,
        metadata={
            # The table the report stores: its sample of the most different disagreements.
            **table_metadata(stored_sample),
            "champion": model_reference(champion),
            "challenger": model_reference(challenger, challenger_checkpoint),
            "cases_compared": report.n_compared,
            "agreement_rate": report.agreement_rate,
            "champion_only_malignant": report.champion_only_malignant,
            "challenger_only_malignant": report.challenger_only_malignant,
            "ks_statistic": report.shift["ks_statistic"],
            "mean_difference": report.shift["mean_difference"],
            "labeled_cases": labeled_cases,
            "comparison": dg.MetadataValue.md(comparison_markdown(report)),
            "p_malignant": dg.MetadataValue.md(p_malignant_plot_markdown(report)),
        },
    )


prediction_assets = [batch_predictions, drift_report, challenger_comparison]
prediction_checks = [no_data_drift]
