"""Per-team schedules on the team × week partitions.

Dagster's ``build_schedule_from_partitioned_job`` requests the latest week for every team at once;
each team has its own days and a staggered start, so each team gets its own schedule.
"""

import datetime as dt

import dagster as dg

from turbine_dagster.defs.partitions import TEAM, team_week_key, weeks_partitions
from turbine_dagster.settings import Settings

TRIGGER = "trigger"


def week_of(moment: dt.datetime) -> str:
    """The weekly partition key (the Sunday starting the week) of the week holding ``moment``; naive means UTC."""
    return weeks_partitions.get_partition_key_for_timestamp(moment.replace(tzinfo=moment.tzinfo or dt.UTC).timestamp())


def team_cron(settings: Settings, team_index: int, delay_hours: int = 0) -> str:
    offset = team_index * settings.team_stagger_minutes
    hour = (settings.training_hour + delay_hours + offset // 60) % 24
    return f"{offset % 60} {hour} * * {','.join(settings.training_days)}"


def run_tags(team: str, trigger: str) -> dict[str, str]:
    return {TEAM: team, TRIGGER: trigger}


def team_week_schedule(name: str, job, team: str, cron: str) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Runs {job.name} for {team}'s current week ({cron}, UTC).",
    )
    def schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        key = team_week_key(team, week_of(context.scheduled_execution_time))
        return dg.RunRequest(
            run_key=f"{key}|{context.scheduled_execution_time.isoformat()}",
            partition_key=key,
            tags=run_tags(team, "schedule"),
        )

    return schedule


def team_schedules(settings: Settings, job, delay_hours: int = 0) -> list:
    return [
        team_week_schedule(f"{job.name}_{team}", job, team, team_cron(settings, index, delay_hours))
        for index, team in enumerate(settings.teams)
    ]


def team_tag_for_partition(partition_key: dg.MultiPartitionKey) -> dict[str, str]:
    """The `team` tag of a run of one of our jobs, for people filtering runs by team. The per-team queue limit
    counts ``dagster/partition/team`` instead, which Dagster writes on asset-graph launches too (dagster.yaml)."""
    return {TEAM: partition_key.keys_by_dimension[TEAM]}
