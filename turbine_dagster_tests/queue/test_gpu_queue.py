"""The GPU run queue with the real dagster-daemon: limits hold, every run finishes, and the measured
makespan is compared with the capacity planner's prediction for the same limits."""

import json
import os
import subprocess
import time

import dagster as dg
import pytest

from turbine_dagster.cli.capacity import queue_limits_from_instance_yaml
from turbine_dagster.core.data.demo import recent_weeks
from turbine_dagster.core.planning.capacity import predicted_makespan
from turbine_dagster_tests.queue.harness import (
    BIN,
    REPO,
    lowered_instance,
    max_overlap,
    setup_instance,
    start_daemon,
    stop,
    write_workspace,
)

TEAM_TAG = "dagster/partition/team"  # the tag the per-team limit counts
GPU_LIMIT, TEAM_LIMIT = 2, 1
TEAMS = ("team_a", "team_b", "team_c", "team_d")
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@pytest.mark.slow
def test_gpu_queue_holds_the_pool_and_team_limits(tmp_path, today):
    home = tmp_path / "dagster_home"
    config = lowered_instance(home, GPU_LIMIT, TEAM_LIMIT)
    assert [rule["key"] for rule in config["concurrency"]["runs"]["tag_concurrency_limits"]] == [TEAM_TAG]
    workspace = write_workspace(tmp_path / "workspace.yaml", "turbine_dagster_tests.queue.probe_defs")
    env = {**os.environ, "DAGSTER_HOME": str(home), "TURBINE_PROBE_SECONDS": "2"}
    setup_instance(env)

    weeks = recent_weeks(2, today=today)  # past weeks: partitions for the daemon, which keeps the real clock
    partitions = [f"{team}|{week}" for team in TEAMS for week in weeks]  # team-major: the team limit must skip
    subprocess.run(
        [
            BIN / "dagster",
            "job",
            "backfill",
            "-w",
            workspace,
            "-j",
            "gpu_probe_job",
            "--noprompt",
            "--partitions",
            ",".join(partitions),
        ],
        env=env,
        check=True,
        capture_output=True,
        cwd=REPO,
    )

    instance = dg.DagsterInstance.from_config(str(home))
    runs = instance.get_runs()
    assert len(runs) == len(partitions)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.QUEUED}
    assert sorted(r.tags[TEAM_TAG] for r in runs) == sorted(t for t in TEAMS for _ in weeks)

    daemon = start_daemon(workspace, env, tmp_path / "daemon.log")
    sampled_peak, sampled_team_peak = 0, 0
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            running = instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS))
            sampled_peak = max(sampled_peak, len(running))
            teams = [r.tags[TEAM_TAG] for r in running]
            sampled_team_peak = max([sampled_team_peak, *(teams.count(t) for t in teams)])
            if len(instance.get_runs(filters=dg.RunsFilter(statuses=FINISHED))) == len(partitions):
                break
            time.sleep(0.2)
    finally:
        stop(daemon)

    records = instance.get_run_records()
    assert [r.dagster_run.status for r in records] == [dg.DagsterRunStatus.SUCCESS] * len(partitions)
    intervals = [(r.start_time, r.end_time) for r in records]
    assert sampled_peak <= GPU_LIMIT and sampled_team_peak <= TEAM_LIMIT
    assert max_overlap(intervals) == GPU_LIMIT  # the limit is reached, never passed
    for team in TEAMS:
        team_runs = [(r.start_time, r.end_time) for r in records if r.dagster_run.tags[TEAM_TAG] == team]
        assert max_overlap(team_runs) <= TEAM_LIMIT

    limits = queue_limits_from_instance_yaml(home / "dagster.yaml")
    assert (limits.gpu_runs, limits.per_team_runs) == (GPU_LIMIT, TEAM_LIMIT)
    mean_run = sum(end - start for start, end in intervals) / len(intervals)
    measured = max(end for _, end in intervals) - min(start for start, _ in intervals)
    predicted = predicted_makespan(len(partitions), mean_run, limits.gpu_runs, limits.per_team_runs, teams=len(TEAMS))
    report = {
        "runs": len(partitions),
        "mean_run_s": round(mean_run, 2),
        "measured_makespan_s": round(measured, 2),
        "predicted_makespan_s": round(predicted, 2),
        "measured_over_predicted": round(measured / predicted, 3),
    }
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "gpu_queue_makespan.json").write_text(json.dumps(report, indent=1))
    print(f"\nGPU queue makespan: {report}")
