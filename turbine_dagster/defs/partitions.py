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
    """The partition's team and week; a key that is not a partition (launches through the API are not
    checked by Dagster) fails here, before any path is built from it."""
    key = str(context.partition_key)
    if not team_week_partitions.has_partition_key(key):
        raise dg.Failure(description=f"{key!r} is not a partition: expected <team>|<week> with a team of "
                                     f"{list(SETTINGS.teams)} and a weekly key from {SETTINGS.first_week} on",
                         allow_retries=False)
    # A run launched with only the `dagster/partition` tag (GraphQL, some UI paths) hands over a plain string.
    keys = team_week_partitions.get_partition_key_from_str(key).keys_by_dimension
    return keys[TEAM], keys[WEEK]


def team_week_key(team: str, week: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TEAM: team, WEEK: week})
