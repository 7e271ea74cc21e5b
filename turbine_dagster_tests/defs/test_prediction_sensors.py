"""The promotion sensor of the prediction location: a promotion re-scores its weeks once, a refusal nothing, and
drift → retrain → promote → re-scored drift report does not loop."""

import json

import dagster as dg

from turbine_dagster.core.data.demo import recent_weeks
from turbine_dagster.defs.prediction.definitions import prediction_job
from turbine_dagster.defs.prediction.sensors import promotion_rescoring_sensor_for

SENSOR = promotion_rescoring_sensor_for(prediction_job)
RESCORED = [dg.AssetKey("batch_predictions"), dg.AssetKey("drift_report")]


def _decision(instance, partition: str, promoted: bool, version: int = 2) -> None:
    """A serving_champion materialization as the promotion gate writes it (the training location)."""
    serving = version if promoted else version - 1
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="serving_champion",
            partition=partition,
            metadata={"promoted": promoted, "serving_version": serving, "challenger_version": version},
        )
    )


def _scored(instance, asset: str, partition: str, drifted: bool = False) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=asset,
            partition=partition,
            metadata={"drift_detected": drifted} if asset == "drift_report" else {},
        )
    )


def _tick(instance, cursor=None, sensor=SENSOR):
    from turbine_dagster.locations.prediction import defs

    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=defs.get_repository_def())
    return sensor.evaluate_tick(context)


def test_the_prediction_location_serves_the_promotion_sensor():
    from turbine_dagster.locations.prediction import defs

    sensor = defs.get_sensor_def("promotion_rescoring_sensor")
    assert sensor.job_name == "prediction_pipeline"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_first_tick_records_where_to_start_and_requests_nothing(week):
    with dg.instance_for_test() as instance:
        _decision(instance, f"team_a|{week}", promoted=True)
        first = _tick(instance)
    assert first.run_requests == [] and "first tick" in first.skip_message
    assert json.loads(first.cursor)["after"] > 0  # the promotion before the sensor existed is not acted on


def test_a_promotion_rescores_its_week_and_the_later_weeks_already_scored(today):
    weeks = recent_weeks(4, today=today)
    with dg.instance_for_test() as instance:
        baseline = _tick(instance)
        _scored(instance, "batch_predictions", f"team_a|{weeks[0]}")  # earlier than the champion's week: kept
        _scored(instance, "batch_predictions", f"team_a|{weeks[2]}")
        _scored(instance, "drift_report", f"team_a|{weeks[3]}")
        _scored(instance, "batch_predictions", f"team_b|{weeks[3]}")  # another team: kept
        _decision(instance, f"team_a|{weeks[1]}", promoted=True, version=5)
        result = _tick(instance, baseline.cursor)
    assert [str(r.partition_key) for r in result.run_requests] == [f"team_a|{w}" for w in weeks[1:]]
    for request in result.run_requests:
        assert sorted(request.asset_selection) == sorted(RESCORED)
        assert (request.tags["team"], request.tags["trigger"], request.tags["promoted_version"]) == (
            "team_a",
            "promotion",
            "5",
        )


def test_a_refusal_triggers_nothing(week):
    with dg.instance_for_test() as instance:
        baseline = _tick(instance)
        _scored(instance, "batch_predictions", f"team_a|{week}")
        _decision(instance, f"team_a|{week}", promoted=False)
        result = _tick(instance, baseline.cursor)
    assert result.run_requests == [] and f"refused: team_a|{week}" in result.skip_message
    assert json.loads(result.cursor)["after"] > json.loads(baseline.cursor)["after"]


def test_each_promotion_rescores_once(week):
    with dg.instance_for_test() as instance:
        baseline = _tick(instance)
        _decision(instance, f"team_a|{week}", promoted=True)
        first = _tick(instance, baseline.cursor)
        again = _tick(instance, first.cursor)
        # Re-evaluated from the old cursor (a daemon restart before the cursor was saved): the same run keys, which
        # Dagster runs once.
        replay = _tick(instance, baseline.cursor)
    assert len(first.run_requests) == 1
    assert again.run_requests == [] and "no new serving_champion" in again.skip_message
    assert [r.run_key for r in replay.run_requests] == [r.run_key for r in first.run_requests]


def test_several_promotions_of_a_team_in_one_tick_rescore_each_week_once(today):
    weeks = recent_weeks(3, today=today)
    with dg.instance_for_test() as instance:
        baseline = _tick(instance)
        _scored(instance, "batch_predictions", f"team_a|{weeks[2]}")
        # A training backfill promoting twice between two ticks: each week once, the trained ones among them.
        _decision(instance, f"team_a|{weeks[1]}", promoted=True, version=3)
        _decision(instance, f"team_a|{weeks[0]}", promoted=True, version=4)
        result = _tick(instance, baseline.cursor)
    assert [str(r.partition_key) for r in result.run_requests] == [f"team_a|{w}" for w in weeks]
    assert {r.tags["promoted_version"] for r in result.run_requests} == {"4"}


def test_drift_retrain_promote_rescore_does_not_loop(week):
    """The re-scored drift report of a promoted week reaches the drift sensor inside the team's cooldown."""
    from turbine_dagster.defs.training.definitions import training_job
    from turbine_dagster.defs.training.sensors import drift_retraining_sensor_for
    from turbine_dagster.locations.training import defs as training

    drift_sensor = drift_retraining_sensor_for(training_job, cooldown_hours=24)

    def drift_tick(instance, cursor=None):
        return drift_sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=training.get_repository_def())
        )

    partition = f"team_a|{week}"
    with dg.instance_for_test() as instance:
        promotion_cursor = _tick(instance).cursor
        _scored(instance, "drift_report", partition, drifted=True)
        retrain = drift_tick(instance)
        assert [str(r.partition_key) for r in retrain.run_requests] == [partition]
        _decision(instance, partition, promoted=True)  # the retraining promoted its champion
        rescore = _tick(instance, promotion_cursor)
        assert [str(r.partition_key) for r in rescore.run_requests] == [partition]
        # The re-scored report still drifts (worst case): no second retraining, so no second promotion.
        _scored(instance, "drift_report", partition, drifted=True)
        after = drift_tick(instance, retrain.cursor)
        assert after.run_requests == [] and "cooldown" in after.skip_message
        assert _tick(instance, rescore.cursor).run_requests == []
