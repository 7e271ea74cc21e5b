"""Everything the prediction code location serves. It never imports the training definitions."""

import dagster as dg

from turbine_dagster.defs.environment import SETTINGS
from turbine_dagster.defs.jobs import team_week_job
from turbine_dagster.defs.prediction.assets import prediction_assets
from turbine_dagster.defs.prediction.checks import prediction_checks
from turbine_dagster.defs.prediction.outcome_assets import outcome_assets, outcomes_sensor_for, realised_performance_job
from turbine_dagster.defs.prediction.sensors import promotion_rescoring_sensor_for
from turbine_dagster.defs.resources import executor_for, resources_for
from turbine_dagster.defs.schedules import team_schedules

# Imported once per run by the executor's fork server: every step process starts with them loaded.
PRELOAD_MODULES = (
    "turbine_dagster.locations.prediction",
    "tensorflow",
    "keras",
    "catboost",
    "turbine_dagster.core.serving.scoring",
    "turbine_dagster.core.storage.model_files",
    "turbine_dagster.core.monitoring.drift",
    "turbine_dagster.core.serving.comparison",
)

prediction_job = team_week_job(
    "prediction_pipeline",
    dg.AssetSelection.groups("prediction", "monitoring"),
    "Batch predictions and the drift report of one team's week, from the team's serving champion.",
)


def build_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[*prediction_assets, *outcome_assets],
        asset_checks=prediction_checks,
        jobs=[prediction_job, realised_performance_job],
        schedules=team_schedules(SETTINGS, prediction_job, delay_hours=SETTINGS.prediction_delay_hours),
        sensors=[promotion_rescoring_sensor_for(prediction_job), outcomes_sensor_for(realised_performance_job)],
        resources=resources_for(SETTINGS),
        executor=executor_for(SETTINGS, PRELOAD_MODULES),
    )
