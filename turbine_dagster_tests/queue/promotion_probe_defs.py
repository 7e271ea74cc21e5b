"""A code location for the promotion test: the real promotion sensor on a prediction job of two instant assets
with the keys it re-runs, so that the daemon's runs cost seconds."""

import dagster as dg

from turbine_dagster.defs.jobs import team_week_job
from turbine_dagster.defs.partitions import team_week_partitions
from turbine_dagster.defs.prediction.sensors import promotion_rescoring_sensor_for


@dg.asset(partitions_def=team_week_partitions, group_name="prediction")
def batch_predictions() -> None:
    pass


@dg.asset(partitions_def=team_week_partitions, group_name="monitoring")
def drift_report() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"drift_detected": False})


prediction_job = team_week_job(
    "prediction_pipeline",
    dg.AssetSelection.groups("prediction", "monitoring"),
    "Instant stand-ins for the prediction assets.",
)

defs = dg.Definitions(
    assets=[batch_predictions, drift_report],
    jobs=[prediction_job],
    sensors=[promotion_rescoring_sensor_for(prediction_job, minimum_interval_seconds=2)],
    executor=dg.in_process_executor,
)
