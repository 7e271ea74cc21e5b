"""Batch predictions and drift monitoring of one team's week, from the team's serving champion.

This side reads only the model registry and the scoring landing data. Both assets declare the
training location's ``serving_champion`` as their upstream (same asset key), so the UI draws one
graph from raw data to predictions across the two code locations.
"""

from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from turbine_dagster.core import drift, landing
from turbine_dagster.core.registry import ModelRegistry, ModelVersion
from turbine_dagster.defs.partitions import team_and_week, team_week_partitions
from turbine_dagster.defs.resources import LandingZone, ModelRegistryResource, PredictionStore

SERVING_CHAMPION = dg.AssetKey("serving_champion")
OWNERS = ["team:ml-platform"]


class BatchPredictionConfig(dg.Config):
    chunk_rows: int = Field(100_000, ge=1, description="Rows read, validated and scored at a time: bounds memory.")
    batch_size: int = Field(8192, ge=1, description="Rows per Keras predict batch.")


class DriftConfig(dg.Config):
    min_drifted_features: int = Field(1, ge=1, description="The week drifts when at least this many features drift.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance of the Holm-corrected KS test per feature.")
    psi_threshold: float = Field(0.2, ge=0, description="A drifted feature also needs at least this PSI.")
    max_rows: int = Field(20_000, ge=100, description="Scoring rows sampled for the comparison.")
    seed: int = Field(0)


def serving_version(context: dg.AssetExecutionContext, store: ModelRegistry, team: str) -> ModelVersion:
    version = store.serving(team)
    if version is None:
        raise dg.Failure(
            description=f"{context.asset_key.to_user_string()} for {context.partition_key}: team {team} has no serving "
                        f"champion in the model registry ({store.root}). Train one first: run the training_pipeline job "
                        f"of the turbine-training location for a {team} partition, and let its promotion gate promote it.",
            allow_retries=False)
    return version


def scoring_files(context: dg.AssetExecutionContext, landing_zone: LandingZone, team: str, week: str):
    root = landing_zone.path()
    folder = landing.partition_dir(root, landing.SCORING, team, week)
    try:
        return root, landing.data_files(folder, root)
    except landing.LandingError as error:
        raise dg.Failure(description=f"{context.asset_key.to_user_string()} for {context.partition_key}: {error}",
                         allow_retries=False) from error


def _skipped_empty(context: dg.AssetExecutionContext, root, team: str, week: str) -> None:
    folder = landing.relative_name(landing.partition_dir(root, landing.SCORING, team, week), root)
    context.log.warning(f"{context.partition_key}: no scoring cases under {folder}; nothing to do, skipped")


@dg.asset(
    partitions_def=team_week_partitions,
    group_name="prediction",
    kinds={"parquet"},
    owners=OWNERS,
    deps=[SERVING_CHAMPION],
    output_required=False,
    description="Scores the team's scoring cases of the week in chunks with the serving champion at its operating "
                "threshold; rows that break the data rules are quarantined with their reason.",
)
def batch_predictions(context: dg.AssetExecutionContext, config: BatchPredictionConfig, landing_zone: LandingZone,
                      registry: ModelRegistryResource, prediction_store: PredictionStore) -> Iterator[dg.MaterializeResult]:
    team, week = team_and_week(context)
    store = registry.registry()
    version = serving_version(context, store, team)
    root, files = scoring_files(context, landing_zone, team, week)
    if not files:
        _skipped_empty(context, root, team, week)
        return
    from turbine_dagster.core import scoring  # TensorFlow loads in runs, not in the code server

    folder = prediction_store.folder(team, week)
    context.log.info(f"scoring {len(files)} file(s) with {team} {version.label} ({version.model_type}) "
                     f"at threshold {version.threshold:.4f}")
    try:
        summary = scoring.score_partition(
            files, root, store.load_model(version), threshold=version.threshold, model_version=version.label,
            output=folder / "predictions.parquet", quarantine=folder / "quarantine.parquet",
            chunk_rows=config.chunk_rows, batch_size=config.batch_size,
            on_progress=lambda progress: context.log.info(progress.message()))
    except landing.LandingError as error:
        raise dg.Failure(description=f"batch_predictions for {context.partition_key}: {error}",
                         allow_retries=False) from error
    if summary.empty:
        _skipped_empty(context, root, team, week)
        return
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": summary.rows_scored,
        "rows_scored": summary.rows_scored,
        "rows_quarantined": summary.rows_quarantined,
        "rows_per_second": round(summary.rows_per_second, 1),
        "share_predicted_malignant": summary.share_predicted_malignant,
        "model_version": version.label,
        "model_type": version.model_type,
        "threshold": version.threshold,
        "output_uri": dg.MetadataValue.path(summary.output_uri),
        **({"quarantine_uri": dg.MetadataValue.path(summary.quarantine_uri)} if summary.quarantine_uri else {}),
        "source_files": dg.MetadataValue.md("\n".join(f"- {name}" for name in summary.files)),
    })


@dg.asset(
    partitions_def=team_week_partitions,
    group_name="monitoring",
    kinds={"scipy"},
    owners=OWNERS,
    deps=[SERVING_CHAMPION],
    output_required=False,
    io_manager_key="json_io_manager",
    description="PSI and Holm-corrected KS per feature between the week's scoring data (a bounded sample) and the "
                "serving champion's training reference, and the drift decision.",
)
def drift_report(context: dg.AssetExecutionContext, config: DriftConfig, landing_zone: LandingZone,
                 registry: ModelRegistryResource) -> Iterator[dg.Output[dict]]:
    team, week = team_and_week(context)
    store = registry.registry()
    version = serving_version(context, store, team)
    root, files = scoring_files(context, landing_zone, team, week)
    from turbine_dagster.core import scoring

    current = scoring.sample_clean_features(files, root, config.max_rows, config.seed) if files else None
    if current is None or current.empty:
        _skipped_empty(context, root, team, week)
        return
    reference = store.load_reference(version)
    rule = drift.DriftRule(min_drifted_features=config.min_drifted_features, alpha=config.alpha,
                           psi_threshold=config.psi_threshold)
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
            "features": dg.MetadataValue.md(drift.drift_table_markdown(result)),
            "distributions": dg.MetadataValue.md(drift.drift_distributions_markdown(reference, current, result)),
        },
    )


@dg.asset_check(asset=drift_report, blocking=False, partitions_def=team_week_partitions,
                description="Warns when the week's scoring data drifted from the champion's training data.")
def no_data_drift(drift_report: dict) -> dg.AssetCheckResult:
    drifted = [row["feature"] for row in drift_report["features"] if row["drifted"]]
    return dg.AssetCheckResult(
        passed=not drift_report["drift_detected"],
        severity=dg.AssetCheckSeverity.WARN,
        description=drift_report["reason"],
        metadata={"drifted_features": dg.MetadataValue.json(drifted)},
    )


prediction_assets = [batch_predictions, drift_report]
prediction_checks = [no_data_drift]
