"""Outcomes landing for scored weeks: the sensor reaches the weeks they concern, realised performance per week and
version, and the recall alarm's check red on synthetic misses and green again after a promotion."""

import dataclasses
import json

import dagster as dg
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from upath import UPath

from turbine_dagster.core.data import landing
from turbine_dagster.core.data.demo import DemoDataWriter, recent_weeks
from turbine_dagster.core.evaluation.selection import GateDecision
from turbine_dagster.core.models.logistic_model import train_logistic_model
from turbine_dagster.core.models.params import LogisticParams
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, MALIGNANT, TARGET
from turbine_dagster.defs.prediction.assets import batch_predictions
from turbine_dagster.defs.prediction.outcome_assets import PROMISE_CHECK, outcomes_sensor_for, realised_performance
from turbine_dagster.defs.resources import local_resources
from turbine_dagster.settings import Settings
from turbine_dagster_tests.conftest import TEAM
from turbine_dagster_tests.defs.helpers import current_predictions, failure_messages, materialize

ASSETS = [batch_predictions, realised_performance]


@pytest.fixture
def site(tmp_path, today):
    """Two scored weeks of TEAM by one serving logistic model; the true diagnoses of every scored case kept aside."""
    weeks = recent_weeks(2, today=today)
    root = UPath(tmp_path / "landing")
    writer = DemoDataWriter(seed=3)
    truth = {}
    for week in weeks:
        cases = writer.cases(TEAM, week, 120, f"S{week[-2:]}")
        folder = landing.partition_dir(root, landing.SCORING, TEAM, week)
        folder.mkdir(parents=True)
        cases.drop(columns=[TARGET]).to_csv(folder / "cases.csv", index=False)
        truth[week] = cases.loc[:, [CASE_ID, TARGET]]
    settings = dataclasses.replace(
        Settings.from_env({}), landing_root=str(root), storage_root=str(tmp_path / "storage")
    )
    labeled = writer.cases(TEAM, weeks[0], 400, "L")
    train, validation = train_test_split(labeled, test_size=0.25, stratify=labeled[TARGET], random_state=0)
    registry = ModelRegistry(f"{settings.storage_root}/registry")
    model = train_logistic_model(train, validation, LogisticParams()).model
    serve(registry, model, train, "v1")
    for week in weeks:
        scored = materialize([batch_predictions], settings, f"{TEAM}|{week}")
        assert scored.success, failure_messages(scored)
    return settings, root, weeks, truth, registry, model, train


def serve(registry, model, reference, why) -> int:
    version = registry.register(
        TEAM,
        model,
        threshold=0.2,
        metrics={"malignant_recall": 0.99},
        partition=None,
        run_id=None,
        data_version=None,
        reference=reference.loc[:, list(FEATURE_COLUMNS)],
    )
    registry.promote_if(TEAM, version.version, lambda serving: GateDecision(True, why))
    return version.version


def land_outcomes(root: UPath, week: str, name: str, frame: pd.DataFrame) -> None:
    folder = landing.partition_dir(root, landing.OUTCOMES, TEAM, week)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)


def tick(settings, cursor=None):
    from turbine_dagster.locations.prediction import defs

    sensor = outcomes_sensor_for(defs.resolve_job_def("realised_performance_job"), teams=(TEAM,))
    resources = local_resources(settings)
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            repository_def=defs.get_repository_def(),
            resources={"landing_zone": resources["landing_zone"], "prediction_store": resources["prediction_store"]},
        ) as context,
    ):
        return sensor.evaluate_tick(context)


def realised(settings, week):
    result = materialize(ASSETS, settings, f"{TEAM}|{week}", selection=[realised_performance])
    assert result.success, failure_messages(result)
    metadata = result.asset_materializations_for_node("realised_performance")[0].metadata
    (check,) = result.get_asset_check_evaluations()
    value = json.loads(
        (UPath(settings.storage_root) / "assets" / "realised_performance" / TEAM / f"{week}.json").read_text()
    )
    return metadata, check, value


def test_outcomes_for_two_scored_weeks_on_time_late_repeated_and_unknown(site):
    settings, root, (first, second), truth, *_ = site
    assert tick(settings).run_requests == []  # nothing landed yet

    # On time: half of the first week's diagnoses land that week; one id no scored week holds.
    on_time = truth[first].iloc[:60]
    land_outcomes(root, first, "diagnoses.csv", pd.concat([on_time, pd.DataFrame({CASE_ID: ["nobody"], TARGET: [1]})]))
    landed = tick(settings)
    assert {request.partition_key for request in landed.run_requests} == {f"{TEAM}|{first}"}

    # Late: the rest of the first week lands a week later, with the second week's diagnoses; one case twice.
    late = pd.concat([truth[first].iloc[60:], truth[second], truth[second].iloc[:1]])
    land_outcomes(root, second, "diagnoses.csv", late.rename(columns={CASE_ID: "id"}))
    later = tick(settings, cursor=landed.cursor)
    assert {request.partition_key for request in later.run_requests} == {f"{TEAM}|{first}", f"{TEAM}|{second}"}
    assert tick(settings, cursor=later.cursor).run_requests == []  # nothing new

    metadata, check, value = realised(settings, first)
    (version,) = value["versions"]
    scored = truth[first]
    assert version["model_version"] == "v0001" and version["scored"] == 120 and version["diagnosed"] == 120
    assert version["caught"] + version["missed"] == int((scored[TARGET] == MALIGNANT).sum())
    assert version["completeness_called_malignant"] == version["completeness_called_benign"] == 1.0
    assert value["outcomes_matching_no_scored_case"] == 1 and value["rediagnosed_cases"] == 1
    assert metadata["realised_malignant_recall"].value == version["malignant_recall"]
    assert "| v0001 | 120 |" in metadata["versions"].value
    assert check.check_name == PROMISE_CHECK and check.passed


def test_recall_measured_while_benign_calls_are_less_diagnosed_says_it_may_read_high(site):
    settings, root, (first, _), truth, *_ = site
    predictions = current_predictions(settings.storage_root, first)
    called_malignant = predictions.loc[predictions["predicted_label"] == MALIGNANT, CASE_ID]
    land_outcomes(root, first, "followed_up.csv", truth[first].loc[truth[first][CASE_ID].isin(called_malignant)])

    metadata, _, value = realised(settings, first)
    assert value["versions"][0]["completeness_called_benign"] == 0.0
    assert metadata["recall_may_read_high"].value is True
    assert "recall here may read high" in metadata["versions"].value


def test_the_recall_alarm_fires_on_synthetic_misses_and_clears_after_a_promotion(site):
    settings, root, (first, second), truth, registry, model, train = site
    # Synthetic misses: every case the serving model called benign turns out malignant, in both weeks.
    for week in (first, second):
        predictions = current_predictions(settings.storage_root, week)
        diagnoses = predictions.loc[:, [CASE_ID]].assign(**{TARGET: MALIGNANT})
        land_outcomes(root, week, "diagnoses.csv", diagnoses)

    metadata, check, value = realised(settings, second)
    assert not check.passed
    assert "the recall alarm fired" in check.description and "a retraining run is requested" in check.description
    assert check.metadata["missed_since_rise"].value > 0 and check.metadata["statistic"].value >= 2.5
    assert metadata["recall_alarm_fired"].value is True and value["alarm"]["fired"] is True

    # A promotion resets it: the new serving version has no diagnosed weeks yet.
    serve(registry, model, train, "retrained after the recall alarm")
    _, check, _ = realised(settings, second)
    assert check.passed


def test_the_week_gets_an_estimate_before_its_labels_and_beside_them_after(site):
    from turbine_dagster.core.models.interface import predict_malignant_proba
    from turbine_dagster.core.monitoring.estimation import CALIBRATION_RECORD, calibration_record

    settings, root, (first, _), truth, registry, model, train = site
    # Without a calibration check in its registry entry, a version gets no number, and the reason says why.
    metadata, _, value = realised(settings, first)
    assert value["estimate"]["method"] == "not estimable"
    assert "registered without a calibration check" in metadata["estimate"].value

    labeled = DemoDataWriter(seed=11).cases(TEAM, first, 600, "C")
    record = calibration_record(labeled[TARGET].to_numpy(), predict_malignant_proba(model, labeled))
    version = registry.register(
        TEAM,
        model,
        threshold=0.2,
        metrics={"malignant_recall": 0.99, CALIBRATION_RECORD: record},
        partition=None,
        run_id=None,
        data_version=None,
        reference=train.loc[:, list(FEATURE_COLUMNS)],
    )
    registry.promote_if(TEAM, version.version, lambda serving: GateDecision(True, "calibrated"))
    scored = materialize([batch_predictions], settings, f"{TEAM}|{first}")
    assert scored.success, failure_messages(scored)
    before = scored.asset_materializations_for_node("batch_predictions")[0].metadata
    assert 0 < before["estimated_malignant_recall"].value <= 1
    assert "Expected from the scores alone" in before["estimate"].value

    land_outcomes(root, first, "diagnoses.csv", truth[first])
    metadata, _, value = realised(settings, first)
    assert metadata["estimated_malignant_recall"].value == before["estimated_malignant_recall"].value
    realised_recall = metadata["realised_malignant_recall"].value
    low, high = value["estimate"]["recall_interval"]
    assert abs(realised_recall - metadata["estimated_malignant_recall"].value) < 0.15, (realised_recall, low, high)


def test_a_rescore_keeps_the_earlier_predictions_and_each_version_keeps_its_realised_figures(site):
    from turbine_dagster.core.serving import published

    settings, root, (first, _), truth, registry, model, train = site
    folder = UPath(settings.storage_root) / "predictions" / f"team={TEAM}" / f"week={first}"
    before = published.current(folder)
    serve(registry, model, train, "a new champion")  # v0002 serves; the promotion re-scores the week
    rescored = materialize([batch_predictions], settings, f"{TEAM}|{first}")
    assert rescored.success, failure_messages(rescored)

    after = published.current(folder)
    assert (before.model_version, after.model_version) == ("v0001", "v0002") and after.file != before.file
    assert (folder / before.file).exists()  # what v0001 sent out is still there
    land_outcomes(root, first, "diagnoses.csv", truth[first])
    _, _, value = realised(settings, first)
    assert [version["model_version"] for version in value["versions"]] == ["v0001", "v0002"]
    assert all(version["diagnosed"] == 120 for version in value["versions"])
