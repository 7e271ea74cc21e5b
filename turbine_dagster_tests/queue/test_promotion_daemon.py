"""With the real dagster-daemon: a promotion re-runs the team's predictions once, a refusal nothing."""

import os
import time

import dagster as dg
import pytest

from turbine_dagster.core.data.demo import recent_weeks
from turbine_dagster_tests.queue import harness

SENSOR = "promotion_rescoring_sensor"
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def _sensor_state(instance):
    return next((s for s in instance.all_instigator_state() if s.name == SENSOR), None)


def _ticks(instance, state) -> int:
    return len(instance.get_ticks(state.instigator_origin_id, state.selector_id))


def _wait(condition, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"{what} within {timeout} s")


def _decision(instance, partition: str, promoted: bool, version: int) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="serving_champion",
            partition=partition,
            metadata={
                "promoted": promoted,
                "serving_version": version if promoted else version - 1,
                "challenger_version": version,
            },
        )
    )


@pytest.mark.slow
def test_a_promotion_reruns_the_teams_predictions_once_with_the_daemon(tmp_path, today):
    home = tmp_path / "dagster_home"
    harness.lowered_instance(home, gpu_limit=2, team_limit=2)
    workspace = harness.write_workspace(tmp_path / "workspace.yaml", "turbine_dagster_tests.queue.promotion_probe_defs")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    harness.setup_instance(env)
    weeks = recent_weeks(3, today=today)
    instance = dg.DagsterInstance.from_config(str(home))
    instance.report_runless_asset_event(
        dg.AssetMaterialization(  # a later week already scored
            asset_key="batch_predictions", partition=f"team_a|{weeks[2]}"
        )
    )

    daemon = harness.start_daemon(workspace, env, tmp_path / "daemon.log")
    try:
        state = _wait(
            lambda: (s := _sensor_state(instance)) and s.instigator_data and s.instigator_data.cursor and s,
            "the sensor's first tick",
        )
        _decision(instance, f"team_a|{weeks[1]}", promoted=True, version=2)
        _decision(instance, f"team_b|{weeks[1]}", promoted=False, version=2)
        _wait(
            lambda: len(runs := instance.get_runs()) >= 2 and all(r.status in FINISHED for r in runs),
            "two finished runs",
        )
        ticks = _ticks(instance, state)
        _wait(lambda: _ticks(instance, state) >= ticks + 3, "three more sensor ticks")
    finally:
        harness.stop(daemon)

    runs = sorted(instance.get_runs(), key=lambda r: r.tags["dagster/partition"])
    assert [r.tags["dagster/partition"] for r in runs] == [f"team_a|{weeks[1]}", f"team_a|{weeks[2]}"]
    for run in runs:
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert (run.job_name, run.tags["trigger"], run.tags["promoted_version"]) == (
            "prediction_pipeline",
            "promotion",
            "2",
        )
        assert run.asset_selection == {dg.AssetKey("batch_predictions"), dg.AssetKey("drift_report")}
        assert run.tags["dagster/partition/team"] == "team_a"
