import datetime as dt
import json

import dagster as dg
import pytest

from turbine_dagster.core.data.demo import DemoDataWriter, recent_weeks
from turbine_dagster.defs.resources import LandingZone
from turbine_dagster.defs.schedules import team_cron, week_of
from turbine_dagster.defs.training.definitions import training_job
from turbine_dagster.defs.training.sensors import drift_retraining_sensor_for, new_landing_data_sensor_for
from turbine_dagster.settings import Settings

SETTINGS = Settings.from_env({})


def test_week_of_is_the_sunday_that_starts_the_week():
    assert week_of(dt.datetime(2026, 11, 26, 2, 0)) == "2026-11-22"
    assert week_of(dt.datetime(2026, 11, 22, 0, 0)) == "2026-11-22"


def test_team_crons_are_staggered_twice_a_week():
    assert [team_cron(SETTINGS, i) for i in range(4)] == [
        "0 2 * * mon,thu",
        "30 2 * * mon,thu",
        "0 3 * * mon,thu",
        "30 3 * * mon,thu",
    ]


@pytest.mark.parametrize("index, team", list(enumerate(SETTINGS.teams)))
def test_each_team_schedule_requests_its_current_week_only(index, team):
    from turbine_dagster.locations.training import defs

    schedule = defs.get_schedule_def(f"training_pipeline_{team}")
    when = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
        )
        result = schedule.evaluate_tick(context)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.partition_key == dg.MultiPartitionKey({"team": team, "week": "2026-11-22"})
    assert (request.tags["team"], request.tags["trigger"]) == (team, "schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def sensor_context(instance, cursor=None, resources=None):
    from turbine_dagster.locations.training import defs

    return dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources, repository_def=defs.get_repository_def()
    )


def _drift_event(instance, partition, drifted=True):
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="drift_report", partition=partition, metadata={"drift_detected": drifted})
    )


def test_drift_sensor_requests_every_drifted_partition_once(today):
    weeks = recent_weeks(2, today=today)
    sensor = drift_retraining_sensor_for(training_job, cooldown_hours=24)
    with dg.instance_for_test() as instance:
        _drift_event(instance, f"team_a|{weeks[1]}")
        _drift_event(instance, f"team_b|{weeks[1]}")
        _drift_event(instance, f"team_c|{weeks[1]}", drifted=False)
        first = sensor.evaluate_tick(sensor_context(instance))
        assert sorted(str(r.partition_key) for r in first.run_requests) == [f"team_a|{weeks[1]}", f"team_b|{weeks[1]}"]
        assert all(r.tags["trigger"] == "drift" for r in first.run_requests)
        again = sensor.evaluate_tick(sensor_context(instance, first.cursor))
        assert again.run_requests == [] and "no new drift_report" in again.skip_message
        # Re-evaluating from the old cursor (a daemon restart before the cursor was saved) repeats the
        # same run keys, which Dagster deduplicates: no second run for one drift event.
        replay = sensor.evaluate_tick(sensor_context(instance))
        assert [r.run_key for r in replay.run_requests] == [r.run_key for r in first.run_requests]


def test_drift_sensor_respects_the_team_cooldown(today):
    weeks = recent_weeks(2, today=today)
    sensor = drift_retraining_sensor_for(training_job, cooldown_hours=24)
    with dg.instance_for_test() as instance:
        _drift_event(instance, f"team_a|{weeks[0]}")
        first = sensor.evaluate_tick(sensor_context(instance))
        _drift_event(instance, f"team_a|{weeks[1]}")
        second = sensor.evaluate_tick(sensor_context(instance, first.cursor))
    assert len(first.run_requests) == 1 and second.run_requests == []
    assert "cooldown" in second.skip_message


def test_drift_sensor_without_drift_gives_a_skip_reason(week):
    sensor = drift_retraining_sensor_for(training_job)
    with dg.instance_for_test() as instance:
        _drift_event(instance, f"team_a|{week}", drifted=False)
        result = sensor.evaluate_tick(sensor_context(instance))
    assert result.run_requests == [] and "none to act on" in result.skip_message
    assert json.loads(result.cursor)["after"] > 0


def test_landing_sensor_requests_new_and_changed_partitions_only(landing_root, today, week):
    sensor = new_landing_data_sensor_for(training_job, teams=("team_a",))
    resources = {"landing_zone": LandingZone(root=str(landing_root))}
    with dg.instance_for_test() as instance:

        def tick(cursor):
            with sensor_context(instance, cursor, resources) as context:  # resources open in its scope
                return sensor.evaluate_tick(context)

        baseline = tick(None)
        assert baseline.run_requests == [] and "baseline" in baseline.skip_message
        assert tick(baseline.cursor).run_requests == []

        previous = recent_weeks(2, today=today)[0]
        DemoDataWriter().write_labeled(landing_root, "team_a", previous, 30)
        new_file = tick(baseline.cursor)
        assert [str(r.partition_key) for r in new_file.run_requests] == [f"team_a|{previous}"]
        assert (new_file.run_requests[0].tags["team"], new_file.run_requests[0].tags["trigger"]) == ("team_a", "sensor")
        assert tick(new_file.cursor).run_requests == []

        DemoDataWriter(seed=9).write_labeled(landing_root, "team_a", week, 40)
        changed = tick(new_file.cursor)
        assert [str(r.partition_key) for r in changed.run_requests] == [f"team_a|{week}"]


LANDING_NOW = dt.datetime(2026, 11, 11, 12, 0, tzinfo=dt.UTC)  # a Wednesday; its week is 2026-11-08


def _landing_tick(sensor, instance, resources, cursor, now: dt.datetime):
    """One tick of ``sensor`` as if evaluated at ``now``: the weekly partitions are those of that moment."""
    with dg.partition_loading_context(effective_dt=now):
        with sensor_context(instance, cursor, resources) as context:
            return sensor.evaluate_tick(context)


def test_landing_sensor_runs_files_landed_before_their_week_once_it_begins(tmp_path):
    from upath import UPath

    root = UPath(tmp_path / "landing")
    now, this_week, next_week = LANDING_NOW, "2026-11-08", "2026-11-15"
    DemoDataWriter().write_labeled(root, "team_a", this_week, 30)
    sensor = new_landing_data_sensor_for(training_job, teams=("team_a",))
    resources = {"landing_zone": LandingZone(root=str(root))}
    with dg.instance_for_test() as instance:
        baseline = _landing_tick(sensor, instance, resources, None, now)
        DemoDataWriter().write_labeled(root, "team_a", next_week, 30)  # a week early: not a partition yet
        early = _landing_tick(sensor, instance, resources, baseline.cursor, now)
        assert early.run_requests == []
        still_early = _landing_tick(sensor, instance, resources, early.cursor, now + dt.timedelta(days=1))
        assert still_early.run_requests == []

        begun = _landing_tick(sensor, instance, resources, still_early.cursor, now + dt.timedelta(weeks=1))
        assert [str(r.partition_key) for r in begun.run_requests] == [f"team_a|{next_week}"]
        assert _landing_tick(sensor, instance, resources, begun.cursor, now + dt.timedelta(weeks=1)).run_requests == []


def test_landing_sensor_names_a_mistyped_week_folder(tmp_path, capfd):
    from upath import UPath

    root = UPath(tmp_path / "landing")
    now = LANDING_NOW
    DemoDataWriter().write_labeled(root, "team_a", "2026-11-08", 30)
    typo = root / "labeled" / "team=team_a" / "week=2026-11-3"
    typo.mkdir(parents=True)
    (typo / "cases.csv").write_text("case_id\n")
    sensor = new_landing_data_sensor_for(training_job, teams=("team_a",))
    resources = {"landing_zone": LandingZone(root=str(root))}
    with dg.instance_for_test() as instance:
        result = _landing_tick(sensor, instance, resources, None, now)
    warned = [line for line in capfd.readouterr().err.splitlines() if "WARNING" in line]  # the sensor's console log
    assert any("labeled/team=team_a/week=2026-11-3" in line for line in warned), warned
    assert "labeled/team=team_a/week=2026-11-3" in result.skip_message


def test_the_recall_alarm_requests_a_retraining_run_tagged_with_its_trigger(today):
    from turbine_dagster.defs.training.sensors import recall_alarm_retraining_sensor_for

    weeks = recent_weeks(2, today=today)
    sensor = recall_alarm_retraining_sensor_for(training_job, cooldown_hours=24)
    with dg.instance_for_test() as instance:
        for team, fired in (("team_a", True), ("team_b", False)):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key="realised_performance",
                    partition=f"{team}|{weeks[1]}",
                    metadata={"recall_alarm_fired": fired},
                )
            )
        first = sensor.evaluate_tick(sensor_context(instance))
        again = sensor.evaluate_tick(sensor_context(instance, first.cursor))
    assert [str(r.partition_key) for r in first.run_requests] == [f"team_a|{weeks[1]}"]
    assert first.run_requests[0].tags["trigger"] == "recall-alarm"
    assert again.run_requests == [] and "no new realised_performance" in again.skip_message
