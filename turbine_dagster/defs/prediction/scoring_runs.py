"""What the prediction assets share: the model asked for, the week's scoring files, and a scoring run of them,
each failing the asset with what is wrong and what to do."""

import dagster as dg
from upath import UPath

from turbine_dagster.core.data import landing
from turbine_dagster.core.models.checkpoints import Checkpoint
from turbine_dagster.core.models.params import PREDICT_BATCH_ROWS
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.core.registry.versions import (
    ModelVersion,
    RegistryLookupError,
    model_reference,
    scoring_threshold,
)
from turbine_dagster.defs.failures import asset_and_partition, asset_failure, failing_on
from turbine_dagster.defs.resources import LandingZone


def resolve_model(
    context: dg.AssetExecutionContext, store: ModelRegistry, team: str, version: str | None, checkpoint: str | None
) -> tuple[ModelVersion, Checkpoint | None]:
    """The version and checkpoint asked for; without a version, the team's serving champion."""
    if version is None and checkpoint is None:
        return serving_version(context, store, team), None
    with failing_on(context, RegistryLookupError):
        return store.resolve(team, version, checkpoint)


def serving_version(context: dg.AssetExecutionContext, store: ModelRegistry, team: str) -> ModelVersion:
    version = store.serving(team)
    if version is None:
        raise asset_failure(
            context,
            f"team {team} has no serving champion in the model registry ({store.root}). Train one first: run the "
            f"training_pipeline job of the turbine-training location for a {team} partition, and let its promotion "
            "gate promote it.",
        )
    return version


def scoring_files(
    context: dg.AssetExecutionContext, landing_zone: LandingZone, team: str, week: str
) -> tuple[UPath, list[UPath]]:
    """The landing root and the week's scoring files; a warning names what lies beside them unread."""
    root = landing_zone.path()
    folder = landing.partition_dir(root, landing.SCORING, team, week)
    strays = ignored_entries(root, team)
    if strays:
        context.log.warning(f"{asset_and_partition(context)}: {landing.stray_warning(strays)}")
    with failing_on(context, landing.LandingError):
        return root, landing.data_files(folder, root)


def ignored_entries(root: UPath, team: str) -> list[str]:
    """What lies in the team's scoring folder but is never read (a mistyped week folder); one listing per run."""
    return landing.stray_entries(root, landing.SCORING, team)


def skipped_empty(context: dg.AssetExecutionContext, root: UPath, team: str, week: str) -> None:
    folder = landing.relative_name(landing.partition_dir(root, landing.SCORING, team, week), root)
    context.log.warning(f"{context.partition_key}: no scoring cases under {folder}; nothing to do, skipped")


def score_with(
    context: dg.AssetExecutionContext,
    store: ModelRegistry,
    version: ModelVersion,
    checkpoint: Checkpoint | None,
    files: list[UPath],
    root: UPath,
    folder: UPath,
    name: str,
    chunk_rows: int,
    batch_size: int = PREDICT_BATCH_ROWS,
):
    """Scores ``files`` with the version (or its checkpoint) into this run's own files under ``folder`` and makes
    them the week's current ``name`` (``core.serving.published``): no earlier run's predictions are overwritten."""
    from turbine_dagster.core.serving import published, scoring  # TensorFlow loads in runs, not in the code server

    reference = model_reference(version, checkpoint)
    threshold = scoring_threshold(version, checkpoint)
    context.log.info(
        f"scoring {len(files)} file(s) with {reference} ({version.model_type}) at threshold {threshold:.4f}"
    )
    output, quarantine = published.run_files(folder, name, context.run.run_id)
    with failing_on(context, landing.LandingError, scoring.ModelOutputError):
        summary = scoring.score_partition(
            files,
            root,
            store.load_model(version, checkpoint),
            threshold=threshold,
            model_version=reference,
            output=output,
            quarantine=quarantine,
            chunk_rows=chunk_rows,
            batch_size=batch_size,
            on_progress=lambda progress: context.log.info(progress.message()),
        )
    if not summary.empty:
        published.publish(
            folder,
            name,
            published.PublishedRun(
                file=f"{published.RUNS}/{output.name}",
                quarantine=f"{published.RUNS}/{quarantine.name}" if summary.quarantine_uri else None,
                model_version=reference,
                run_id=context.run.run_id,
                rows_scored=summary.rows_scored,
            ),
        )
    return summary
