"""Team × week: every asset of the pipeline is materialized per team and per landing week."""

import dagster as dg

from turbine_dagster.defs.environment import SETTINGS

TEAM = "team"
WEEK = "week"

teams_partitions = dg.StaticPartitionsDefinition(list(SETTINGS.teams))
# end_offset=1 makes the week in progress a partition: teams train on the current week's data.
weeks_partitions = dg.WeeklyPartitionsDefinition(start_date=SETTINGS.first_week, end_offset=1)
team_week_partitions = dg.MultiPartitionsDefinition({TEAM: teams_partitions, WEEK: weeks_partitions})


def team_and_week(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, str]:
    # A run launched with only the `dagster/partition` tag (GraphQL, some UI paths) hands over a plain string.
    keys = team_week_partitions.get_partition_key_from_str(str(context.partition_key)).keys_by_dimension
    return keys[TEAM], keys[WEEK]


def team_week_key(team: str, week: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TEAM: team, WEEK: week})
