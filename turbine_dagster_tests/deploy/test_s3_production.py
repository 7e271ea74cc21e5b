"""The production resource set against a real S3-compatible server (moto's, on 127.0.0.1): the training
graph and batch predictions of one partition, every object under its expected key, and each reloads."""

import dataclasses

import pytest
from upath import UPath

from turbine_dagster.core.data.demo import write_demo_data
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.core.storage.model_files import load_model
from turbine_dagster.defs.prediction.assets import batch_predictions
from turbine_dagster.defs.resources import production_resources
from turbine_dagster.settings import Settings
from turbine_dagster_tests.conftest import TEAM, create_bucket
from turbine_dagster_tests.defs.helpers import current_predictions, failure_messages
from turbine_dagster_tests.defs.test_training_assets import FAST_TRAINING, TRAINING_GRAPH

LANDING, ARTIFACTS = "turbine-landing", "turbine-artifacts"


@pytest.fixture
def production_settings(s3_environment, week):
    create_bucket(LANDING)
    create_bucket(ARTIFACTS)
    write_demo_data(UPath(f"s3://{LANDING}/landing"), [TEAM], [week], labeled_rows=400, scoring_rows=700)
    return dataclasses.replace(
        Settings.from_env({}),
        environment="production",
        landing_root=f"s3://{LANDING}/landing",
        storage_root=f"s3://{ARTIFACTS}/storage",
    )


def keys(bucket: str) -> set[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def test_training_and_predictions_run_on_s3(production_settings, week):
    import dagster as dg

    resources = production_resources(production_settings)
    partition = f"{TEAM}|{week}"
    trained = dg.materialize(
        TRAINING_GRAPH,
        partition_key=partition,
        resources=resources,
        run_config={"ops": FAST_TRAINING},
        raise_on_error=False,
    )
    assert trained.success, failure_messages(trained)
    scored = dg.materialize([batch_predictions], partition_key=partition, resources=resources, raise_on_error=False)
    assert scored.success, failure_messages(scored)

    stored = keys(ARTIFACTS)
    for expected in (
        f"storage/assets/tf_model/{TEAM}/{week}.keras",
        f"storage/assets/catboost_model/{TEAM}/{week}.cbm",
        f"storage/assets/train_split/{TEAM}/{week}.parquet",
        f"storage/assets/champion_model/{TEAM}/{week}.json",
        f"storage/registry/{TEAM}/serving.json",
        f"storage/registry/{TEAM}/versions/v0001/entry.json",
        f"storage/registry/{TEAM}/versions/v0001/reference.parquet",
        f"storage/predictions/team={TEAM}/week={week}/predictions.json",
    ):
        assert expected in stored, expected
    assert not [key for key in stored if ".tmp-" in key]

    load_model(UPath(f"s3://{ARTIFACTS}/storage/assets/tf_model/{TEAM}/{week}.keras"))
    load_model(UPath(f"s3://{ARTIFACTS}/storage/assets/catboost_model/{TEAM}/{week}.cbm"))
    registry = ModelRegistry(f"s3://{ARTIFACTS}/storage/registry")
    serving = registry.serving(TEAM)
    assert serving.version == 1 and registry.load_model(serving) is not None
    predictions = current_predictions(f"s3://{ARTIFACTS}/storage", week)
    assert len(predictions) == 700 and set(predictions["model_version"]) == {"v0001"}
