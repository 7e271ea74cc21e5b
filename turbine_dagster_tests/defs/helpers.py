"""Helpers for Dagster-layer tests: materialize with the local resources against temporary folders."""

import dataclasses
from pathlib import Path

import dagster as dg
from upath import UPath

from turbine_dagster.core.data.demo import write_demo_data
from turbine_dagster.defs.resources import local_resources
from turbine_dagster.settings import Settings
from turbine_dagster_tests.conftest import TEAM


def settings_with_demo_data(root: Path, week: str, scoring_rows: int) -> Settings:
    """Settings for ``root``: demo data of TEAM (400 labeled cases: enough for a champion to clear the clinical
    bars, which no test loosens) landed for ``week`` in landing/, storage in storage/."""
    write_demo_data(UPath(root / "landing"), [TEAM], [week], labeled_rows=400, scoring_rows=scoring_rows)
    return dataclasses.replace(
        Settings.from_env({}), landing_root=str(root / "landing"), storage_root=str(root / "storage")
    )


def current_predictions(storage_root: str, week: str, name: str = "predictions", quarantine: bool = False):
    """The week's current ``name`` predictions (or that run's quarantine) of TEAM, through the week's pointer."""
    import pandas as pd

    from turbine_dagster.core.serving import published

    folder = UPath(storage_root) / "predictions" / f"team={TEAM}" / f"week={week}"
    run = published.current(folder, name)
    assert run is not None, f"no current {name} under {folder}"
    with (folder / (run.quarantine if quarantine else run.file)).open("rb") as handle:
        return pd.read_parquet(handle)


def materialize(
    assets, settings: Settings, partition_key: str, instance=None, run_config=None, selection=None, resources=None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        partition_key=partition_key,
        resources={**local_resources(settings), **(resources or {})},
        instance=instance,
        run_config=run_config,
        selection=selection,
        raise_on_error=False,
    )


def materialized_keys(result: dg.ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        event.event_specific_data.check_name: event.event_specific_data
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        f"{event.step_key}: {event.event_specific_data.error.message}"
        for event in result.all_events
        if event.event_type_value == "STEP_FAILURE"
    )


def column_types(metadata) -> dict[str, str]:
    """A materialization's ``dagster/column_schema`` as {column: type}."""
    return {column.name: column.type for column in metadata["dagster/column_schema"].value.columns}


def asset_metadata(result: dg.ExecuteInProcessResult, asset: str):
    """The metadata of the (first) materialization of ``asset`` in the run, whichever op computed it."""
    return next(
        event.materialization.metadata
        for event in result.get_asset_materialization_events()
        if event.asset_key.to_user_string() == asset
    )
