"""Sensors of the training location: retrain on drift or on the recall alarm, rerun on new labeled landing data.

Both keep their own cursor. A drift sensor built on ``asset_sensor`` would see only the latest
event when several partitions land between two ticks (dagster#32853), so it reads every new
``drift_report`` materialization since the storage id in its cursor.
"""

import hashlib
import json

import dagster as dg

from turbine_dagster.core.data import landing
from turbine_dagster.defs.environment import SETTINGS
from turbine_dagster.defs.partitions import parse_team_week, team_week_key, weeks_partitions
from turbine_dagster.defs.resources import LandingZone
from turbine_dagster.defs.schedules import run_tags

DRIFT_REPORT = dg.AssetKey("drift_report")
DRIFT_FLAG = "drift_detected"
REALISED_PERFORMANCE = dg.AssetKey("realised_performance")
RECALL_ALARM_FLAG = "recall_alarm_fired"
"""Both as the prediction location writes them (``defs/prediction/outcome_assets``); never imported from it."""
EVENTS_PER_TICK = 500


def drift_retraining_sensor_for(job, cooldown_hours: float = SETTINGS.drift_cooldown_hours) -> dg.SensorDefinition:
    return flagged_retraining_sensor_for(
        job,
        "drift_retraining_sensor",
        DRIFT_REPORT,
        DRIFT_FLAG,
        "drift",
        f"Retrains a team's partition when its drift_report says drift; at most one drift retraining per team every "
        f"{cooldown_hours:g} h.",
        cooldown_hours,
    )


def recall_alarm_retraining_sensor_for(
    job, cooldown_hours: float = SETTINGS.drift_cooldown_hours
) -> dg.SensorDefinition:
    return flagged_retraining_sensor_for(
        job,
        "recall_alarm_retraining_sensor",
        REALISED_PERFORMANCE,
        RECALL_ALARM_FLAG,
        "recall-alarm",
        "Retrains a team's partition when realised_performance says the recall alarm on its serving champion "
        f"fired (the run is tagged with the trigger); at most one per team every {cooldown_hours:g} h. Nothing is "
        "promoted or rolled back but through the gate.",
        cooldown_hours,
    )


def flagged_retraining_sensor_for(
    job, name: str, asset_key: dg.AssetKey, flag: str, trigger: str, description: str, cooldown_hours: float
) -> dg.SensorDefinition:
    """A sensor that requests one retraining run of a partition for each new materialization of ``asset_key``
    whose ``flag`` metadata is true, tagged with ``trigger``, at most once per team per ``cooldown_hours``."""

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def retraining_sensor(context: dg.SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {"after": 0, "last_retraining": {}}
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, after_storage_id=state["after"]),
            limit=EVENTS_PER_TICK,
            ascending=True,
        )
        requests, skipped = [], []
        for record in result.records:
            state["after"] = record.storage_id
            materialization = record.asset_materialization
            raised = materialization.metadata.get(flag)
            if raised is None or not raised.value:
                continue
            partition = materialization.partition
            team, _ = parse_team_week(partition)
            last = state["last_retraining"].get(team)
            if last is not None and record.timestamp - last < cooldown_hours * 3600:
                skipped.append(f"{partition} (team {team} retrained {(record.timestamp - last) / 3600:.1f} h ago)")
                continue
            state["last_retraining"][team] = record.timestamp
            requests.append(
                dg.RunRequest(
                    run_key=f"{trigger}-{record.storage_id}",  # one run per event, however often re-evaluated
                    partition_key=partition,
                    tags=run_tags(team, trigger),
                )
            )
        if skipped:
            context.log.info(f"cooldown: not retraining {', '.join(skipped)}")
        skip = None
        if not requests:
            seen = len(result.records)
            skip = (
                f"{seen} new {asset_key.to_user_string()} materialization(s), none to act on"
                + (f"; in cooldown: {', '.join(skipped)}" if skipped else "")
                if seen
                else f"no new {asset_key.to_user_string()} materializations"
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(state), skip_reason=skip)

    return retraining_sensor


def _fingerprint(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]


def _landing_state(cursor: str | None) -> dict | None:
    """The cursor as {"runnable": {partition: fingerprint}, "early": {...}, "strays": [...]}; None before the
    first tick. A cursor of the first format (a flat {partition: fingerprint}) reads as the runnable part."""
    if not cursor:
        return None
    state = json.loads(cursor)
    if "runnable" not in state:
        return {"runnable": state, "early": {}, "strays": []}
    return state


def new_landing_data_sensor_for(job, teams=SETTINGS.teams) -> dg.SensorDefinition:
    @dg.sensor(
        name="new_landing_data_sensor",
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reruns raw_data and everything downstream for a team's week when its labeled landing "
        "files are new or changed. The first tick records what is there without running. Files "
        "landed for a week that is not a partition yet run once the week begins.",
    )
    def new_landing_data_sensor(context: dg.SensorEvaluationContext, landing_zone: LandingZone):
        root = landing_zone.path()
        known = _landing_state(context.cursor)
        # Only runnable weeks are recorded as seen: files landed before their week is a partition stay new until
        # it is one, and then run.
        state: dict = {"runnable": {}, "early": {}, "strays": []}
        requests = []
        valid_weeks = set(weeks_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
        first_week = min(valid_weeks) if valid_weeks else None
        for team in teams:
            for week, files in landing.partition_signatures(root, landing.LABELED, team).items():
                key = team_week_key(team, week)
                partition = str(key)  # as in the cursor: team|week
                fingerprint = _fingerprint(files)
                if week not in valid_weeks:
                    state["early"][partition] = fingerprint
                    if known is None or known["early"].get(partition) != fingerprint:
                        when = (
                            "before the first weekly partition " + str(first_week) + ": it is never run"
                            if first_week and week < first_week
                            else "not a partition yet: it runs once the week begins"
                        )
                        context.log.warning(f"{partition}: labeled files landed for a week that is {when}")
                    continue
                state["runnable"][partition] = fingerprint
                if known is None or known["runnable"].get(partition) == fingerprint:
                    continue
                requests.append(
                    dg.RunRequest(
                        run_key=f"landing-{partition}-{fingerprint}",
                        partition_key=key,
                        tags=run_tags(team, "sensor"),
                    )
                )
            state["strays"] += landing.stray_entries(root, landing.LABELED, team)
        new_strays = [s for s in state["strays"] if known is None or s not in known["strays"]]
        if new_strays:
            context.log.warning(landing.stray_warning(new_strays))
        skip = None
        if known is None:
            skip = f"first tick: recorded {len(state['runnable'])} landed partition(s) as the baseline"
        elif not requests:
            skip = "no new or changed labeled landing files"
        if skip and state["strays"]:
            skip += "; " + landing.stray_warning(state["strays"])
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(state), skip_reason=skip)

    return new_landing_data_sensor
