"""Team × week: every asset of the pipeline is materialized per team and per landing week."""

import dagster as dg

from turbine_dagster.defs.environment import SETTINGS
from turbine_dagster.defs.failures import final_failure

TEAM = "team"
WEEK = "week"

teams_partitions = dg.StaticPartitionsDefinition(list(SETTINGS.teams))
# end_offset=1 makes the week in progress a partition: teams train on the current week's data.
weeks_partitions = dg.WeeklyPartitionsDefinition(start_date=SETTINGS.first_week, end_offset=1)
team_week_partitions = dg.MultiPartitionsDefinition({TEAM: teams_partitions, WEEK: weeks_partitions})


def team_week_key(team: str, week: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TEAM: team, WEEK: week})


def parse_team_week(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """Team and week of a key, a plain ``team|week`` string included, as Dagster reads it; not checked against the
    partitions. Raises ValueError for a string with another number of dimensions."""
    text = str(key)
    if not team_week_partitions.is_valid_key_format(text):
        raise ValueError("expected a team|week key")
    dimensions = team_week_partitions.get_partition_key_from_str(text).keys_by_dimension
    return dimensions[TEAM], dimensions[WEEK]


def partition_team_week(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, str]:
    """The partition's team and week; a key that is not a partition (launches through the API are not
    checked by Dagster) fails here, before any path is built from it."""
    # A run launched with only the `dagster/partition` tag (GraphQL, some UI paths) hands over a plain string.
    key = str(context.partition_key)
    where = f"partition {key!r}"
    try:
        team, week = parse_team_week(key)
    except ValueError as error:
        raise final_failure(where, error) from error
    if team not in SETTINGS.teams:
        raise final_failure(where, f"team {team!r} is not one of {list(SETTINGS.teams)}")
    if not _is_week_key(week):
        raise final_failure(
            where,
            f"week {week!r} is not a weekly partition key (the Sunday starting a week, from {SETTINGS.first_week} "
            "to the current week)",
        )
    return team, week


def _is_week_key(week: str) -> bool:
    try:
        return weeks_partitions.has_partition_key(week)
    except ValueError:  # not a date at all
        return False
