"""What the promise delivered once diagnoses land: realised performance of a scored week, per model version, and
the sequential alarm on the serving champion's recall across the team's weeks.

``realised_performance`` re-materializes for every scored week an outcome file can concern when one lands
(``outcomes_sensor``), old weeks included; its check ``serving_champion_keeps_recall_promise`` fails when the
alarm fires, and the training location's ``recall_alarm_retraining_sensor`` then asks for a retraining run.
"""

import datetime as dt
import hashlib
import json

import dagster as dg
import pandas as pd
from upath import UPath

from turbine_dagster.core.data import landing
from turbine_dagster.core.monitoring.estimation import CALIBRATION_RECORD, estimate_from_record
from turbine_dagster.core.monitoring.outcomes import landed_outcomes, realised_by_version, unmatched_outcomes
from turbine_dagster.core.monitoring.promise_alarm import AlarmRule, WeeklyOutcomes, run_alarm
from turbine_dagster.core.schema import CASE_ID, P_MALIGNANT
from turbine_dagster.core.serving import published
from turbine_dagster.core.serving.columns import MODEL_VERSION, PREDICTED_LABEL, SCORED_AT, THRESHOLD
from turbine_dagster.defs.code_versions import versioned
from turbine_dagster.defs.environment import SETTINGS
from turbine_dagster.defs.failures import asset_failure
from turbine_dagster.defs.partitions import partition_team_week, team_week_key, team_week_partitions
from turbine_dagster.defs.resources import LandingZone, ModelRegistryResource, PartitionFolders
from turbine_dagster.defs.retries import STORAGE_RETRY_POLICY
from turbine_dagster.defs.schedules import run_tags

REALISED_PERFORMANCE = "realised_performance"
PROMISE_CHECK = "serving_champion_keeps_recall_promise"
ALARM_FLAG = "recall_alarm_fired"
FOLLOW_UP_WEEKS = 26
"""Weeks after scoring within which a diagnosis is joined to a week's predictions and its realised figures
recomputed when it lands."""


def scored_weeks(store: PartitionFolders, team: str) -> list[str]:
    """Weeks of ``team`` with a predictions folder, ascending."""
    team_folder = store.team_folder(team)
    if not team_folder.exists():
        return []
    weeks = [child.name.removeprefix("week=") for child in team_folder.iterdir() if child.name.startswith("week=")]
    return sorted(week for week in weeks if _is_week(week))


def _is_week(name: str) -> bool:
    try:
        return landing.validate_week(name) == name
    except landing.LandingError:
        return False


def week_predictions(folder: UPath) -> pd.DataFrame | None:
    """``case_id``, ``p_malignant``, ``predicted_label``, ``model_version``, ``threshold`` of what every model version
    predicted for the week (every scoring run is kept: ``core.serving.published``), a version's latest run winning
    where it scored the week more than once; None when the week was never scored."""
    columns = [CASE_ID, P_MALIGNANT, PREDICTED_LABEL, MODEL_VERSION, THRESHOLD, SCORED_AT]
    parts = []
    for path in published.every_run_file(folder):
        with path.open("rb") as handle:
            parts.append(pd.read_parquet(handle, columns=columns))
    if not parts:
        return None
    every = pd.concat(parts, ignore_index=True).sort_values(SCORED_AT, kind="stable")
    return every.drop_duplicates([CASE_ID, MODEL_VERSION], keep="last").drop(columns=[SCORED_AT]).reset_index(drop=True)


def _weeks_between(first: str, last: str) -> int:
    return (dt.date.fromisoformat(last) - dt.date.fromisoformat(first)).days // 7


def _figure(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _with_interval(value: float | None, interval: tuple[float, float] | None) -> str:
    return "—" if value is None else f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _versions_table(results: list) -> str:
    rows = [
        "| version | scored | called malignant | diagnosed (called malignant / benign) | caught | missed "
        "| false alarms | recall [95 % CI] | precision [95 % CI] |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        recall = _with_interval(r.malignant_recall, r.malignant_recall_ci)
        precision = _with_interval(r.malignant_precision, r.malignant_precision_ci)
        diagnosed = f"{r.diagnosed} ({r.diagnosed_of_called_malignant} / {r.diagnosed_of_called_benign})"
        rows.append(
            f"| {r.model_version} | {r.scored} | {r.scored_malignant} | {diagnosed} | {r.caught} | {r.missed} "
            f"| {r.false_alarms} | {recall} | {precision} |"
        )
    return "\n".join(rows)


def estimate_before_labels(registry: ModelRegistryResource, team: str, predictions: pd.DataFrame, reference: str):
    """The week's expected recall and precision for the version ``reference`` (``v0003``; a checkpoint's
    predictions use the version's calibration too) from its scores alone, as the registry entry's calibration
    allows."""
    scored = predictions.loc[predictions[MODEL_VERSION] == reference]
    number = int(reference.split("/")[0].removeprefix("v"))
    record = registry.registry().get(team, number).metrics.get(CALIBRATION_RECORD)
    return estimate_from_record(scored[P_MALIGNANT].to_numpy(), float(scored[THRESHOLD].iloc[0]), record)


def estimate_markdown(estimate) -> str:
    if estimate.estimated_recall is None:
        return f"**{estimate.method}**: {estimate.reason}"
    recall = _with_interval(estimate.estimated_recall, estimate.recall_interval)
    precision = _with_interval(estimate.estimated_precision, estimate.precision_interval)
    return (
        f"Expected from the scores alone ({estimate.method}; calibration error {estimate.calibration_error:.3f}): "
        f"malignant recall {recall}, precision {precision} ({estimate.interval_level:.0%} intervals of the outcomes' "
        f"chance only, not of the calibration behind them); {estimate.expected_missed_cancers:.1f} expected missed "
        f"of {estimate.expected_cancers:.1f} expected cancers among {estimate.cases} scored cases."
    )


@versioned
@dg.asset(
    name=REALISED_PERFORMANCE,
    partitions_def=team_week_partitions,
    group_name="outcomes",
    kinds={"scipy"},
    owners=["team:ml-platform"],
    deps=[dg.AssetKey("batch_predictions")],
    io_manager_key="json_io_manager",
    retry_policy=STORAGE_RETRY_POLICY,
    description="The week's scored cases against the diagnoses landed for them (outcomes/ in the landing zone), per "
    "model version that scored them: confusion counts, malignant recall and precision with Clopper-Pearson "
    "intervals, and how complete the diagnoses are among cases called malignant and benign.",
    check_specs=[
        dg.AssetCheckSpec(
            PROMISE_CHECK,
            asset=REALISED_PERFORMANCE,
            partitions_def=team_week_partitions,
            description="Fails when the sequential alarm (a Bernoulli CUSUM on missed cancers among the serving "
            "champion's diagnosed malignant cases, across its weeks) says its recall fell below the promise.",
        )
    ],
)
def realised_performance(
    context: dg.AssetExecutionContext,
    landing_zone: LandingZone,
    prediction_store: PartitionFolders,
    registry: ModelRegistryResource,
):  # a MaterializeResult with its value and its check (an annotation would type the value as Nothing)
    team, week = partition_team_week(context)
    predictions = week_predictions(prediction_store.folder(team, week))
    if predictions is None:
        raise asset_failure(context, f"no predictions of {team} for {week}: score the week first")
    landed = landed_outcomes(landing_zone.path(), team)
    results = realised_by_version(predictions, landed.outcomes)
    serving = registry.registry().serving(team)
    serving_label = serving.label if serving else None

    # The alarm reads the serving version's diagnosed cancers week by week up to this one; a diagnosis no scored
    # week of the team holds is counted as unmatched.
    by_week, scored_ids = [], []
    for scored_week in scored_weeks(prediction_store, team):
        scored = predictions if scored_week == week else week_predictions(prediction_store.folder(team, scored_week))
        if scored is None:
            continue
        scored_ids.append(scored[CASE_ID])
        if scored_week > week:
            continue
        served = [r for r in realised_by_version(scored, landed.outcomes) if r.model_version == serving_label]
        if served:
            by_week.append(WeeklyOutcomes(scored_week, served[0].caught + served[0].missed, served[0].missed))
    rule = AlarmRule()
    alarm = run_alarm(by_week, rule)
    unmatched = unmatched_outcomes(landed.outcomes, pd.concat(scored_ids, ignore_index=True))
    current = next((r for r in results if r.model_version == serving_label), results[0])
    estimate = estimate_before_labels(registry, team, predictions, current.model_version)
    value = {
        "team": team,
        "week": week,
        "serving_version": serving_label,
        "versions": [r.to_dict() for r in results],
        "outcome_files": landed.files,
        "diagnoses_landed": len(landed.outcomes),
        "rediagnosed_cases": landed.rediagnosed,
        "changed_diagnoses": landed.changed_diagnosis,
        "outcomes_matching_no_scored_case": unmatched,
        "estimate": estimate.to_dict(),
        "alarm": alarm.to_dict(),
        "alarm_rule": {
            "promised_recall": rule.promised_recall,
            "tolerance": rule.tolerance,
            "alarm_recall": rule.alarm_recall,
            "decision_limit": rule.decision_limit,
        },
    }
    biased = current.recall_is_biased
    check = dg.AssetCheckResult(
        check_name=PROMISE_CHECK,
        passed=not alarm.fired,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"{serving_label}: the recall alarm fired in week {alarm.fired_week} (CUSUM {alarm.statistic:.2f} ≥ "
            f"{alarm.decision_limit:g}): {alarm.excursion_missed} missed of {alarm.excursion_malignant_outcomes} "
            f"diagnosed cancers since {alarm.excursion_start_week}; a retraining run is requested"
            if alarm.fired
            else f"{serving_label or 'no serving champion'}: no evidence that recall fell below "
            f"{rule.null_recall:g} (CUSUM {alarm.statistic:.2f} of {alarm.decision_limit:g}, over {len(by_week)} "
            "scored week(s))"
        ),
        metadata={
            "statistic": alarm.statistic,
            "decision_limit": alarm.decision_limit,
            "missed_since_rise": alarm.excursion_missed,
            "diagnosed_cancers_since_rise": alarm.excursion_malignant_outcomes,
            "rising_since_week": alarm.excursion_start_week or "—",
            "fired_week": alarm.fired_week or "—",
            "weeks_counted": len(by_week),
        },
    )
    return dg.MaterializeResult(
        value=value,
        check_results=[check],
        metadata={
            "serving_version": serving_label or "none",
            "realised_malignant_recall": _figure(current.malignant_recall),
            "realised_malignant_recall_ci_low": _figure(current.malignant_recall_ci and current.malignant_recall_ci[0]),
            "realised_malignant_precision": _figure(current.malignant_precision),
            "estimated_malignant_recall": _figure(estimate.estimated_recall),
            "estimated_malignant_precision": _figure(estimate.estimated_precision),
            "estimate": dg.MetadataValue.md(estimate_markdown(estimate)),
            "diagnosed_cases": current.diagnosed,
            "missed_cancers": current.missed,
            "completeness_called_malignant": _figure(current.completeness_called_malignant),
            "completeness_called_benign": _figure(current.completeness_called_benign),
            "recall_may_read_high": dg.MetadataValue.bool(biased),
            "versions": dg.MetadataValue.md(
                _versions_table(results)
                + (
                    "\n\nCases called benign are less completely diagnosed than cases called malignant: a missed "
                    "cancer surfaces only through follow-up, so recall here may read high."
                    if biased
                    else ""
                )
            ),
            "outcomes_matching_no_scored_case": unmatched,
            "rediagnosed_cases": landed.rediagnosed,
            "changed_diagnoses": landed.changed_diagnosis,
            ALARM_FLAG: dg.MetadataValue.bool(alarm.fired),
            "alarm_statistic": alarm.statistic,
        },
    )


realised_performance_job = dg.define_asset_job(
    "realised_performance_job",
    selection=dg.AssetSelection.assets(REALISED_PERFORMANCE),
    partitions_def=team_week_partitions,
    description="Realised performance of one team's scored week, from the diagnoses landed so far.",
)


def outcomes_sensor_for(job, teams=SETTINGS.teams) -> dg.SensorDefinition:
    @dg.sensor(
        name="outcomes_sensor",
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="When a team's outcome files are new or changed, recomputes realised_performance for every "
        f"week it scored within {FOLLOW_UP_WEEKS} weeks before them, old weeks included.",
    )
    def outcomes_sensor(
        context: dg.SensorEvaluationContext, landing_zone: LandingZone, prediction_store: PartitionFolders
    ):
        known = json.loads(context.cursor) if context.cursor else {}
        state, requests = {}, []
        root = landing_zone.path()
        for team in teams:
            signatures = landing.partition_signatures(root, landing.OUTCOMES, team)
            state[team] = signatures
            changed = [week for week, files in signatures.items() if known.get(team, {}).get(week) != files]
            if not changed:
                continue
            fingerprint = hashlib.sha256(json.dumps(signatures, sort_keys=True).encode()).hexdigest()[:16]
            for scored_week in scored_weeks(prediction_store, team):
                if any(0 <= _weeks_between(scored_week, landed) < FOLLOW_UP_WEEKS for landed in changed):
                    requests.append(
                        dg.RunRequest(
                            run_key=f"outcomes-{team}-{scored_week}-{fingerprint}",
                            partition_key=team_week_key(team, scored_week),
                            tags=run_tags(team, "outcomes"),
                        )
                    )
        skip = None if requests else "no new or changed outcome files for a scored week"
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(state), skip_reason=skip)

    return outcomes_sensor


outcome_assets = [realised_performance]
