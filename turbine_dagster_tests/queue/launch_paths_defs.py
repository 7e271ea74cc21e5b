"""A code location for the launch-path test: the GPU probe job with the real schedule and sensors around it.

The schedule and both sensors are built by the same functions the training location uses
(``team_week_schedule``, ``drift_retraining_sensor_for``, ``new_landing_data_sensor_for``) on the probe
job, which is built by ``team_week_job`` like ``training_pipeline``: runs are cheap, their tags are real.
"""

import os

import dagster as dg

from turbine_dagster.defs.resources import LandingZone
from turbine_dagster.defs.schedules import team_week_schedule
from turbine_dagster.defs.training.sensors import drift_retraining_sensor_for, new_landing_data_sensor_for
from turbine_dagster_tests.queue.probe_defs import gpu_probe, gpu_probe_job

SCHEDULED_TEAM = "team_a"
SCHEDULE = f"gpu_probe_job_{SCHEDULED_TEAM}"
LANDING_TEAMS = ("team_a",)

defs = dg.Definitions(
    assets=[gpu_probe],
    jobs=[gpu_probe_job],
    # Every minute, so that a tick falls inside the burst; the run asks for the daemon's current week.
    schedules=[team_week_schedule(SCHEDULE, gpu_probe_job, SCHEDULED_TEAM, "* * * * *")],
    sensors=[drift_retraining_sensor_for(gpu_probe_job), new_landing_data_sensor_for(gpu_probe_job, LANDING_TEAMS)],
    resources={"landing_zone": LandingZone(root=os.environ.get("TURBINE_PROBE_LANDING_ROOT", "landing"))},
    executor=dg.in_process_executor,  # one process per run: the queue is under test, not the executor
)
