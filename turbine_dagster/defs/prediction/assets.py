"""Batch predictions, drift monitoring and challenger comparisons of one team's week, from the team's serving
champion.

This side reads only the model registry and the scoring landing data. Every asset declares the training
location's ``serving_champion`` as its upstream (same asset key), so the UI draws one graph from raw data to
predictions across the two code locations.
"""

import functools
from collections.abc import Iterator

import dagster as dg

from turbine_dagster.core.data.cases import landed_labels
from turbine_dagster.core.monitoring import drift
from turbine_dagster.core.registry.versions import model_reference
from turbine_dagster.core.serving.published import current_file
from turbine_dagster.defs.code_versions import versioned
from turbine_dagster.defs.failures import failing_on
from turbine_dagster.defs.partitions import partition_team_week, team_week_partitions
from turbine_dagster.defs.prediction.config import BatchPredictionConfig, ChallengerComparisonConfig, DriftConfig
from turbine_dagster.defs.prediction.metadata import (
    batch_predictions_metadata,
    comparison_metadata,
    drift_metadata,
    labeled_cases,
)
from turbine_dagster.defs.prediction.scoring_runs import (
    ignored_entries,
    resolve_model,
    score_with,
    scoring_files,
    serving_version,
    skipped_empty,
)
from turbine_dagster.defs.resources import LandingZone, ModelRegistryResource, PartitionFolders
from turbine_dagster.defs.retries import STORAGE_RETRY_POLICY

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
    team, week = partition_team_week(context)
    store = registry.registry()
    version, checkpoint = resolve_model(context, store, team, config.model_version, config.checkpoint)
    root, files = scoring_files(context, landing_zone, team, week)
    if not files:
        skipped_empty(context, root, team, week)
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
        skipped_empty(context, root, team, week)
        return
    from turbine_dagster.defs.prediction.outcome_assets import (
        estimate_before_labels,
        estimate_markdown,
        week_predictions,
    )

    estimate = estimate_before_labels(registry, team, week_predictions(prediction_store.folder(team, week)), reference)
    yield dg.MaterializeResult(
        metadata={
            **batch_predictions_metadata(summary, version, checkpoint, ignored_entries(root, team)),
            "estimated_malignant_recall": float("nan")
            if estimate.estimated_recall is None
            else estimate.estimated_recall,
            "estimated_malignant_precision": (
                float("nan") if estimate.estimated_precision is None else estimate.estimated_precision
            ),
            "estimate": dg.MetadataValue.md(estimate_markdown(estimate)),
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
    team, week = partition_team_week(context)
    store = registry.registry()
    version = serving_version(context, store, team)
    root, files = scoring_files(context, landing_zone, team, week)
    from turbine_dagster.core.serving.sampling import sample_clean_features

    current = sample_clean_features(files, root, config.max_rows, config.seed) if files else None
    if current is None or current.empty:
        skipped_empty(context, root, team, week)
        return
    reference = store.load_reference(version)
    result = drift.detect_drift(reference, current, config.rule(), max_rows=None, seed=config.seed)
    context.log.info(result.reason)
    yield dg.Output(
        {**result.to_dict(), "team": team, "week": week, "model_version": version.label},
        metadata=drift_metadata(result, reference, current, version),
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

    team, week = partition_team_week(context)
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
        skipped_empty(context, root, team, week)
        return
    folder = prediction_store.folder(team, week) / "comparison"
    for role, (version, checkpoint) in {
        "champion": (champion, None),
        "challenger": (challenger, challenger_checkpoint),
    }.items():
        score_with(context, store, version, checkpoint, files, root, folder, role, config.chunk_rows)
    # Only the labels (case_id and target) of the team's labeled cases, from the parse cache where it holds them;
    # the join with the predictions, bucket by bucket, keeps the compared cases, so memory grows with the labeled
    # cases and not with the week's scored rows (a filter by the scored ids would hold them all).
    labels = landed_labels(landing_zone.path(), team, cache=landing_zone.parse_cache())
    with failing_on(context, ValueError):
        report = compare_prediction_files(
            current_file(folder, "champion"), current_file(folder, "challenger"), labels, config.sample_size
        )
    context.log.info(
        f"agreement {report.agreement_rate:.4f} over {report.n_compared} cases; labels for {labeled_cases(report)} "
        "of them"
    )
    value = report.to_dict()
    yield dg.Output(value, metadata=comparison_metadata(report, value, champion, challenger, challenger_checkpoint))


prediction_assets = [batch_predictions, drift_report, challenger_comparison]
