"""Checks of the prediction assets."""

import dagster as dg

from turbine_dagster.defs.partitions import team_week_partitions
from turbine_dagster.defs.prediction.assets import drift_report
from turbine_dagster.defs.retries import STORAGE_RETRY_POLICY


@dg.asset_check(
    asset=drift_report,
    blocking=False,
    partitions_def=team_week_partitions,
    retry_policy=STORAGE_RETRY_POLICY,
    description="Warns when the week's scoring data drifted from the champion's training data.",
)
def no_data_drift(drift_report: dict) -> dg.AssetCheckResult:
    drifted = [row["feature"] for row in drift_report["features"] if row["drifted"]]
    return dg.AssetCheckResult(
        passed=not drift_report["drift_detected"],
        severity=dg.AssetCheckSeverity.WARN,
        description=drift_report["reason"],
        metadata={"drifted_features": dg.MetadataValue.json(drifted)},
    )


prediction_checks = [no_data_drift]
