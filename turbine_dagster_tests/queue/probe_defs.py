"""A code location for the queue test: one short GPU-pool asset on the real team × week job."""

import os
import time

import dagster as dg

from turbine_dagster.defs.jobs import team_week_job
from turbine_dagster.defs.partitions import team_week_partitions


@dg.asset(partitions_def=team_week_partitions, pool="gpu", group_name="probe")
def gpu_probe() -> None:
    time.sleep(float(os.environ.get("TURBINE_PROBE_SECONDS", "3")))


gpu_probe_job = team_week_job("gpu_probe_job", dg.AssetSelection.assets(gpu_probe), "Holds a GPU slot briefly.")

defs = dg.Definitions(assets=[gpu_probe], jobs=[gpu_probe_job])
