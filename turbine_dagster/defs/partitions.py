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
    # A run launched with only the `dagster/partition` tag (GraphQL, some UI paths) hands over a plain string;
    # its dimensions are joined in sorted name order: team|week.
    key = str(context.partition_key)
    team, _, week = key.partition("|")
    if team not in SETTINGS.teams:
        raise dg.Failure(
            description=f"partition {key!r}: team {team!r} is not one of {list(SETTINGS.teams)}", allow_retries=False
        )
    if not _is_week_key(week):
        raise dg.Failure(
            description=f"partition {key!r}: week {week!r} is not a weekly partition key (the Sunday "
            f"starting a week, from {SETTINGS.first_week} to the current week)",
            allow_retries=False,
        )
    return team, week


def _is_week_key(week: str) -> bool:
    try:
        return weeks_partitions.has_partition_key(week)
    except ValueError:  # not a date at all
        return False


def team_week_key(team: str, week: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TEAM: team, WEEK: week})
