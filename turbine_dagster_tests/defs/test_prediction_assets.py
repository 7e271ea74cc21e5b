import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from upath import UPath

from turbine_dagster.core.data import landing
from turbine_dagster.core.data.demo import DemoDataWriter, DriftInjection, recent_weeks, write_demo_data
from turbine_dagster.core.evaluation.selection import GateDecision
from turbine_dagster.core.models.catboost_model import train_catboost_model
from turbine_dagster.core.models.interface import predict_malignant_proba
from turbine_dagster.core.models.logistic_model import train_logistic_model
from turbine_dagster.core.models.params import CatBoostSearchParams, LogisticParams, TFTrainingParams
from turbine_dagster.core.models.tf_model import train_tf_model
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.core.registry.versions import ModelVersion
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, MALIGNANT
from turbine_dagster.defs.prediction.assets import batch_predictions, drift_report
from turbine_dagster.defs.prediction.checks import no_data_drift
from turbine_dagster_tests.conftest import TEAM
from turbine_dagster_tests.defs.helpers import (
    column_types,
    current_predictions,
    failure_messages,
    materialize,
    materialized_keys,
)

PREDICTION = [batch_predictions]


@pytest.fixture(scope="module")
def team_models():
    cases = DemoDataWriter().cases(TEAM, "2026-01-04", 400, "L")
    train, validation = train_test_split(cases, test_size=0.25, stratify=cases["target"], random_state=0)
    tf = train_tf_model(train, validation, TFTrainingParams(epochs=3, patience=1)).model
    catboost = train_catboost_model(
        train, validation, CatBoostSearchParams(param_grid={"depth": [3]}, iterations=30, cv_folds=2)
    ).model
    logistic = train_logistic_model(train, validation, LogisticParams()).model
    return {"tensorflow": tf, "catboost": catboost, "logistic": logistic}, train


def register(registry, model, reference, threshold=0.5, malignant_recall=0.9, checkpoints=()) -> ModelVersion:
    """``model`` as TEAM's next version, with ``reference``'s features as its reference data; not serving."""
    return registry.register(
        TEAM,
        model,
        threshold=threshold,
        metrics={"malignant_recall": malignant_recall},
        partition=None,
        run_id=None,
        data_version=None,
        reference=reference.loc[:, list(FEATURE_COLUMNS)],
        checkpoints=checkpoints,
    )


def serve(settings, model, reference, threshold=0.5) -> ModelRegistry:
    registry = ModelRegistry(f"{settings.storage_root}/registry")
    version = register(registry, model, reference, threshold=threshold, malignant_recall=0.99)
    registry.promote_if(TEAM, version.version, lambda current: GateDecision(True, "test"))
    return registry


def scoring_frame(landing_root, week) -> pd.DataFrame:
    folder = landing.partition_dir(landing_root, landing.SCORING, TEAM, week)
    return pd.concat([pd.read_parquet(path.path) for path in landing.data_files(folder, landing_root)])


def read_predictions(settings, week) -> pd.DataFrame:
    return current_predictions(settings.storage_root, week)


@pytest.mark.parametrize("kind", ["tensorflow", "catboost", "logistic"])
def test_asset_predictions_equal_direct_model_predictions(
    settings, landing_root, week, partition_key, team_models, kind
):
    models, train = team_models
    serve(settings, models[kind], train, threshold=0.4)
    result = materialize(
        PREDICTION, settings, partition_key, run_config={"ops": {"batch_predictions": {"config": {"chunk_rows": 128}}}}
    )
    assert result.success, failure_messages(result)
    predictions = read_predictions(settings, week).set_index(CASE_ID)
    cases = scoring_frame(landing_root, week).set_index(CASE_ID)
    assert len(predictions) == len(cases) == 500  # 500 is no multiple of the 128-row chunks
    expected = predict_malignant_proba(models[kind], cases.loc[predictions.index])
    np.testing.assert_allclose(predictions["p_malignant"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert ((predictions["predicted_label"] == MALIGNANT) == (predictions["p_malignant"] >= 0.4)).all()
    assert set(predictions["model_version"]) == {"v0001"} and set(predictions["threshold"]) == {0.4}
    metadata = result.asset_materializations_for_node("batch_predictions")[0].metadata
    assert metadata["rows_scored"].value == 500 and metadata["rows_quarantined"].value == 0
    assert metadata["model_version"].value == "v0001"


def test_bad_rows_are_quarantined_with_reasons(settings, landing_root, week, partition_key, team_models):
    models, train = team_models
    serve(settings, models["catboost"], train)
    folder = landing.partition_dir(landing_root, landing.SCORING, TEAM, week)
    extra = DemoDataWriter(seed=5).cases(TEAM, week, 20, "X").drop(columns=["target"])
    extra[FEATURE_COLUMNS[0]] = extra[FEATURE_COLUMNS[0]].astype(object)
    extra.loc[0, FEATURE_COLUMNS[0]] = "abc"
    extra.loc[1, FEATURE_COLUMNS[1]] = np.nan
    extra.loc[2, FEATURE_COLUMNS[2]] = np.inf
    extra.to_csv((folder / "late_cases.csv").path, index=False)
    result = materialize(PREDICTION, settings, partition_key)
    assert result.success, failure_messages(result)
    metadata = result.asset_materializations_for_node("batch_predictions")[0].metadata
    assert (metadata["rows_scored"].value, metadata["rows_quarantined"].value) == (517, 3)
    quarantine = current_predictions(settings.storage_root, week, quarantine=True)
    reasons = dict(zip(quarantine[CASE_ID], quarantine["reason"], strict=True))
    assert "is not numeric" in reasons[extra.loc[0, CASE_ID]] and "is NaN" in reasons[extra.loc[1, CASE_ID]]
    assert "is infinite" in reasons[extra.loc[2, CASE_ID]]


def test_batch_predictions_carry_the_columns_of_predictions_and_quarantine(settings, partition_key, team_models):
    models, train = team_models
    serve(settings, models["catboost"], train)
    result = materialize(PREDICTION, settings, partition_key)
    assert result.success, failure_messages(result)
    metadata = result.asset_materializations_for_node("batch_predictions")[0].metadata
    assert column_types(metadata) == {
        CASE_ID: "string",
        "p_malignant": "double",
        "predicted_label": "int8",
        "model_version": "string",
        "threshold": "double",
        "scored_at": "timestamp[us, tz=UTC]",
    }
    assert metadata["dagster/row_count"].value == 500
    quarantine = {column.name: column.type for column in metadata["quarantine_column_schema"].value.columns}
    assert list(quarantine)[:4] == [CASE_ID, "source_file", "source_row", "reason"] and len(quarantine) == 34


def test_missing_champion_names_the_team_and_how_to_train(settings, partition_key):
    result = materialize(PREDICTION, settings, partition_key)
    message = failure_messages(result)
    assert not result.success
    assert f"team {TEAM} has no serving champion" in message and "training_pipeline" in message


def test_empty_scoring_partition_is_skipped_with_a_message(settings, partition_key, team_models, today):
    models, train = team_models
    serve(settings, models["catboost"], train)
    week = recent_weeks(3, today=today)[0]  # no demo data landed for that week
    result = materialize(PREDICTION, settings, f"{TEAM}|{week}")
    assert result.success and materialized_keys(result) == set()


def test_scoring_file_without_a_feature_column_fails_naming_it(
    settings, landing_root, week, partition_key, team_models
):
    models, train = team_models
    serve(settings, models["catboost"], train)
    folder = landing.partition_dir(landing_root, landing.SCORING, TEAM, week)
    DemoDataWriter().cases(TEAM, week, 5, "Y").drop(columns=["target", "worst symmetry"]).to_csv(
        (folder / "partial.csv").path, index=False
    )
    result = materialize(PREDICTION, settings, partition_key)
    assert not result.success
    message = failure_messages(result)
    assert "partial.csv" in message and "worst symmetry" in message


def test_drifted_week_is_flagged_and_the_sensor_requests_exactly_it(tmp_path, team_models, today):
    import dataclasses

    from turbine_dagster.defs.training.definitions import training_job
    from turbine_dagster.defs.training.sensors import drift_retraining_sensor_for
    from turbine_dagster.locations.training import defs as training_defs
    from turbine_dagster.settings import Settings

    models, train = team_models
    calm, drifted = recent_weeks(2, today=today)
    root = UPath(tmp_path / "landing")
    shift = DriftInjection(TEAM, drifted, tuple(FEATURE_COLUMNS[:5]), 1.0)
    write_demo_data(root, [TEAM], [calm, drifted], labeled_rows=50, scoring_rows=1500, drift=[shift])
    settings = dataclasses.replace(
        Settings.from_env({}), landing_root=str(root), storage_root=str(tmp_path / "storage")
    )
    serve(settings, models["catboost"], DemoDataWriter().cases(TEAM, "2026-01-04", 2000, "R"))

    with dg.instance_for_test() as instance:
        flags = {}
        for week in (calm, drifted):
            result = materialize([drift_report, no_data_drift], settings, f"{TEAM}|{week}", instance=instance)
            assert result.success, failure_messages(result)
            flags[week] = result.asset_materializations_for_node("drift_report")[0].metadata["drift_detected"].value
            check = next(e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION")
            assert check.event_specific_data.passed is (not flags[week])
        assert flags == {calm: False, drifted: True}
        sensor = drift_retraining_sensor_for(training_job)
        tick = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, repository_def=training_defs.get_repository_def())
        )
    assert [str(r.partition_key) for r in tick.run_requests] == [f"{TEAM}|{drifted}"]


def test_explicit_version_and_checkpoint_score_with_exactly_that_artifact(
    settings, landing_root, week, partition_key, team_models
):
    from turbine_dagster.core.models.checkpoints import take_checkpoint

    models, train = team_models
    registry = serve(settings, models["catboost"], train)  # v0001 serves
    validation = train.iloc[:60]
    is_malignant = (validation["target"] == MALIGNANT).to_numpy()
    tf_checkpoint = take_checkpoint(
        "epoch", 2, models["tensorflow"], is_malignant, predict_malignant_proba(models["tensorflow"], validation), 0.3
    )
    register(registry, models["tensorflow"], train, checkpoints=[tf_checkpoint])  # v0002, not serving
    run_config = {"ops": {"batch_predictions": {"config": {"model_version": "v0002", "checkpoint": "epoch-0002"}}}}
    result = materialize(PREDICTION, settings, partition_key, run_config=run_config)
    assert result.success, failure_messages(result)
    predictions = current_predictions(settings.storage_root, week, "predictions-v0002-epoch-0002")
    cases = scoring_frame(landing_root, week).set_index(CASE_ID).loc[predictions[CASE_ID]]
    np.testing.assert_allclose(
        predictions["p_malignant"], predict_malignant_proba(models["tensorflow"], cases), rtol=1e-5, atol=1e-6
    )
    assert set(predictions["model_version"]) == {"v0002/epoch-0002"}
    assert set(predictions["threshold"]) == {tf_checkpoint.threshold}


def test_unknown_version_or_checkpoint_lists_the_available_ones(settings, partition_key, team_models):
    models, train = team_models
    serve(settings, models["catboost"], train)
    for config, expected in (
        ({"model_version": "v0009"}, "available: v0001"),
        ({"model_version": "v0001", "checkpoint": "epoch-0042"}, "v0001"),
    ):
        result = materialize(
            PREDICTION, settings, partition_key, run_config={"ops": {"batch_predictions": {"config": config}}}
        )
        assert not result.success
        message = failure_messages(result)
        assert expected in message and ("v0009" in message or "epoch-0042" in message), message


@pytest.mark.parametrize("challenger_kind", ["tensorflow", "logistic"])
def test_challenger_comparison_reports_agreement_and_disagreements(
    settings, partition_key, team_models, challenger_kind
):
    from turbine_dagster.defs.prediction.assets import challenger_comparison

    models, train = team_models
    registry = serve(settings, models["catboost"], train)
    register(registry, models[challenger_kind], train)
    result = materialize([challenger_comparison], settings, partition_key)
    assert result.success, failure_messages(result)
    metadata = result.asset_materializations_for_node("challenger_comparison")[0].metadata
    assert (metadata["champion"].value, metadata["challenger"].value) == ("v0001", "v0002")
    assert metadata["cases_compared"].value == 500
    disagreements = metadata["champion_only_malignant"].value + metadata["challenger_only_malignant"].value
    assert metadata["agreement_rate"].value == pytest.approx(1 - disagreements / 500)
    assert "data:image/png;base64," in metadata["p_malignant"].value
    assert set(column_types(metadata)) == {
        CASE_ID,
        "champion_p_malignant",
        "challenger_p_malignant",
        "champion_label",
        "challenger_label",
    }  # the disagreements the report keeps
    assert metadata["dagster/row_count"].value == min(disagreements, 20)


def test_a_model_output_that_is_no_probability_fails_the_run_and_publishes_nothing(
    settings, partition_key, week, team_models, monkeypatch
):
    from turbine_dagster.core.serving import scoring

    models, train = team_models
    serve(settings, models["catboost"], train)

    def faulty(model, features, batch_size=8192):
        p = np.full(len(features), 0.3)
        p[3] = np.nan  # compared with the threshold, NaN would have read as benign
        return p

    monkeypatch.setattr(scoring, "predict_malignant_proba", faulty)
    result = materialize(PREDICTION, settings, partition_key)
    assert not result.success and materialized_keys(result) == set()
    message = failure_messages(result)
    assert f"batch_predictions for {partition_key}" in message and "model v0001" in message and "nan" in message
    assert not list((UPath(settings.storage_root) / "predictions").rglob("*.parquet"))


def test_batch_predictions_record_layouts_and_unusually_large_values(
    settings, landing_root, week, partition_key, team_models
):
    from sklearn.datasets import load_breast_cancer

    from turbine_dagster.core.data.cases import UNUSUALLY_LARGE

    models, train = team_models
    serve(settings, models["catboost"], train)
    folder = landing.partition_dir(landing_root, landing.SCORING, TEAM, week)
    wdbc = load_breast_cancer(as_frame=True).frame.drop(columns="target").head(30)
    wdbc.loc[0, "worst area"] = UNUSUALLY_LARGE["worst area"] * 2
    wdbc.to_csv((folder / "sklearn_export.csv").path, index=False)
    stray = folder.parent / "week=2026-11-3"
    stray.mkdir()
    result = materialize(PREDICTION, settings, partition_key)
    assert result.success, failure_messages(result)
    metadata = result.asset_materializations_for_node("batch_predictions")[0].metadata
    assert metadata["layouts"].value == {"internal": 1, "sklearn_frame": 1}
    assert metadata["rows_scored"].value == 530
    assert metadata["rows_with_unusually_large_values"].value == 1
    assert "| worst area" in metadata["unusually_large_values"].value
    assert metadata["ignored_landing_entries"].value == [f"scoring/team={TEAM}/week=2026-11-3"]
