"""Everything the training code location serves."""

import dagster as dg

from turbine_dagster.defs.environment import SETTINGS
from turbine_dagster.defs.jobs import team_week_job
from turbine_dagster.defs.resources import executor_for, resources_for
from turbine_dagster.defs.schedules import team_schedules
from turbine_dagster.defs.training.champion_assets import champion_assets
from turbine_dagster.defs.training.data_assets import data_assets
from turbine_dagster.defs.training.evaluation_assets import evaluation_assets
from turbine_dagster.defs.training.model_assets import model_assets
from turbine_dagster.defs.training.sensors import (
    drift_retraining_sensor_for,
    new_landing_data_sensor_for,
    recall_alarm_retraining_sensor_for,
)

TRAINING_GROUPS = ("data", "training", "evaluation", "champion")
# Imported once per run by the executor's fork server: every step process starts with them loaded.
PRELOAD_MODULES = (
    "turbine_dagster.locations.training",
    "tensorflow",
    "keras",
    "catboost",
    "turbine_dagster.core.models.tf_model",
    "turbine_dagster.core.models.catboost_model",
    "turbine_dagster.core.models.logistic_model",
    "turbine_dagster.core.registry.registry",
    "turbine_dagster.core.storage.model_files",
)

training_job = team_week_job(
    "training_pipeline",
    dg.AssetSelection.groups(*TRAINING_GROUPS),
    "Raw data → splits → the models → evaluations → champion → promotion gate, for one team and week.",
)


def build_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[*data_assets, *model_assets, *evaluation_assets, *champion_assets],
        jobs=[training_job],
        schedules=team_schedules(SETTINGS, training_job),
        sensors=[
            drift_retraining_sensor_for(training_job),
            recall_alarm_retraining_sensor_for(training_job),
            new_landing_data_sensor_for(training_job),
        ],
        resources=resources_for(SETTINGS),
        executor=executor_for(SETTINGS, PRELOAD_MODULES),
    )
