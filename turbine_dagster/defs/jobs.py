"""Partitioned asset jobs shared by schedules and sensors."""

import dagster as dg

from turbine_dagster.defs.partitions import team_week_partitions
from turbine_dagster.defs.schedules import TRIGGER, team_tag_for_partition


def team_week_job(name: str, selection: dg.AssetSelection, description: str, run_tags: dict | None = None):
    """A team × week job whose runs carry the `team` tag however the job is launched (Launchpad, job backfill,
    schedule, sensor). Runs of the same assets launched from the asset graph are runs of ``__ASSET_JOB`` and carry
    no `team`: the per-team limit counts Dagster's ``dagster/partition/team``, which both carry."""

    @dg.partitioned_config(
        partitions_def=team_week_partitions,
        tags_for_partition_key_fn=lambda key: team_tag_for_partition(
            team_week_partitions.get_partition_key_from_str(key)
        ),
    )
    def no_extra_config(partition_key: str) -> dict:
        return {}

    # Schedules and sensors set their own trigger; a run launched from the UI or a backfill keeps this one.
    return dg.define_asset_job(
        name,
        selection=selection,
        config=no_extra_config,
        description=description,
        run_tags={TRIGGER: "manual", **(run_tags or {})},
    )
