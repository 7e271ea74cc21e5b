"""Predictions follow a promotion: when a team's promotion gate promotes a new serving champion, its weeks
already scored (and the week it was trained for) are scored again, once, from the new champion. Reads
``serving_champion`` events, never the training definitions."""

import json

import dagster as dg

from turbine_dagster.defs.partitions import parse_team_week, team_week_key
from turbine_dagster.defs.prediction.assets import SERVING_CHAMPION
from turbine_dagster.defs.schedules import run_tags

BATCH_PREDICTIONS = dg.AssetKey("batch_predictions")
DRIFT_REPORT = dg.AssetKey("drift_report")
RESCORED = (BATCH_PREDICTIONS, DRIFT_REPORT)
TRIGGER = "promotion"
PROMOTED_VERSION_TAG = "promoted_version"
EVENTS_PER_TICK = 500


def _latest_storage_id(instance: dg.DagsterInstance) -> int:
    result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=SERVING_CHAMPION), limit=1)
    return result.records[0].storage_id if result.records else 0


def _scored_weeks(instance: dg.DagsterInstance, team: str) -> set[str]:
    """Weeks of ``team`` with a batch_predictions or drift_report materialization."""
    weeks = set()
    for key in RESCORED:
        for partition in instance.get_materialized_partitions(key):
            scored_team, week = parse_team_week(partition)
            if scored_team == team:
                weeks.add(week)
    return weeks


def promotion_rescoring_sensor_for(job, minimum_interval_seconds: int = 60) -> dg.SensorDefinition:
    @dg.sensor(
        name="promotion_rescoring_sensor",
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When serving_champion promotes a new version, re-runs batch_predictions and drift_report "
        "of the week it was trained for and of the team's later weeks already scored, once, from "
        "the new champion. Refusals trigger nothing. The first tick records where to start.",
    )
    def promotion_rescoring_sensor(context: dg.SensorEvaluationContext):
        if not context.cursor:
            after = _latest_storage_id(context.instance)
            return dg.SensorResult(
                cursor=json.dumps({"after": after}),
                skip_reason=f"first tick: acting on serving_champion events after storage id {after}",
            )
        state = json.loads(context.cursor)
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=SERVING_CHAMPION, after_storage_id=state["after"]),
            limit=EVENTS_PER_TICK,
            ascending=True,
        )
        # Per team, the promotions of this tick: several (a training backfill) re-score each week once.
        promotions: dict[str, dict] = {}
        refused = []
        for record in result.records:
            state["after"] = record.storage_id
            materialization = record.asset_materialization
            if materialization.partition is None:
                context.log.warning(f"serving_champion event {record.storage_id} has no partition: ignored")
                continue
            team, week = parse_team_week(materialization.partition)
            promoted = materialization.metadata.get("promoted")
            if promoted is None or not promoted.value:
                refused.append(materialization.partition)
                continue
            version = materialization.metadata.get("serving_version")
            promotion = promotions.setdefault(team, {"weeks": set()})
            promotion.update(version=version.value if version is not None else "unknown", storage_id=record.storage_id)
            promotion["weeks"].add(week)
        requests = []
        for team, promotion in sorted(promotions.items()):
            first = min(promotion["weeks"])
            weeks = promotion["weeks"] | {w for w in _scored_weeks(context.instance, team) if w > first}
            context.log.info(
                f"{team}: version {promotion['version']} promoted (trained on "
                f"{', '.join(sorted(promotion['weeks']))}); re-scoring {', '.join(sorted(weeks))}"
            )
            requests += [
                dg.RunRequest(
                    run_key=f"promotion-{promotion['storage_id']}-{team}-{week}",  # once per promotion and week
                    partition_key=team_week_key(team, week),
                    asset_selection=list(RESCORED),
                    tags={**run_tags(team, TRIGGER), PROMOTED_VERSION_TAG: str(promotion["version"])},
                )
                for week in sorted(weeks)
            ]
        skip = None
        if not requests:
            skip = (
                f"{len(result.records)} new serving_champion decision(s), none a promotion"
                + (f" (refused: {', '.join(refused)})" if refused else "")
                if result.records
                else "no new serving_champion materializations"
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(state), skip_reason=skip)

    return promotion_rescoring_sensor
