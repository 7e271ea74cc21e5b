"""The GPU run queue with the real dagster-daemon: limits hold, every run finishes, and the measured
makespan is compared with the capacity planner's prediction for the same limits."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from turbine_dagster.core.capacity import predicted_makespan, queue_limits_from_instance_yaml
from turbine_dagster.core.demo_data import recent_weeks

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GPU_LIMIT, TEAM_LIMIT = 2, 1
TEAMS = ("team_a", "team_b", "team_c", "team_d")
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def lowered_instance_config(home: Path) -> None:
    """The project's dagster.yaml with the limits lowered so the test runs in seconds."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["concurrency"]["pools"]["default_limit"] = GPU_LIMIT
    for rule in config["concurrency"]["runs"]["tag_concurrency_limits"]:
        if rule["key"] == "team":
            rule["limit"] = TEAM_LIMIT
    config["run_coordinator"]["config"] = {"dequeue_interval_seconds": 1}
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:  # at equal times the end (-1) sorts first: a slot handed over is no overlap
        running += change
        peak = max(peak, running)
    return peak


@pytest.mark.slow
def test_gpu_queue_holds_the_pool_and_team_limits(tmp_path, today):
    home = tmp_path / "dagster_home"
    lowered_instance_config(home)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": {
        "module_name": "turbine_dagster_tests.queue.probe_defs", "working_directory": str(REPO)}}]}))
    env = {**os.environ, "DAGSTER_HOME": str(home), "TURBINE_PROBE_SECONDS": "2"}
    subprocess.run([BIN / "turbine-instance-setup"], env=env, check=True, capture_output=True)

    weeks = recent_weeks(2, today=today)  # past weeks: partitions for the daemon, which keeps the real clock
    partitions = [f"{team}|{week}" for team in TEAMS for week in weeks]  # team-major: the team limit must skip
    subprocess.run([BIN / "dagster", "job", "backfill", "-w", workspace, "-j", "gpu_probe_job", "--noprompt",
                    "--partitions", ",".join(partitions)], env=env, check=True, capture_output=True, cwd=REPO)

    instance = dg.DagsterInstance.from_config(str(home))
    runs = instance.get_runs()
    assert len(runs) == len(partitions)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.QUEUED}
    assert sorted(r.tags["team"] for r in runs) == sorted(t for t in TEAMS for _ in weeks)

    daemon = subprocess.Popen([BIN / "dagster-daemon", "run", "-w", workspace], env=env, cwd=REPO,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sampled_peak, sampled_team_peak = 0, 0
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            running = instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS))
            sampled_peak = max(sampled_peak, len(running))
            teams = [r.tags["team"] for r in running]
            sampled_team_peak = max([sampled_team_peak, *(teams.count(t) for t in teams)])
            if len(instance.get_runs(filters=dg.RunsFilter(statuses=FINISHED))) == len(partitions):
                break
            time.sleep(0.2)
    finally:
        os.killpg(daemon.pid, signal.SIGINT)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)

    records = instance.get_run_records()
    assert [r.dagster_run.status for r in records] == [dg.DagsterRunStatus.SUCCESS] * len(partitions)
    intervals = [(r.start_time, r.end_time) for r in records]
    assert sampled_peak <= GPU_LIMIT and sampled_team_peak <= TEAM_LIMIT
    assert max_overlap(intervals) == GPU_LIMIT  # the limit is reached, never passed
    for team in TEAMS:
        assert max_overlap([(r.start_time, r.end_time) for r in records if r.dagster_run.tags["team"] == team]) <= TEAM_LIMIT

    limits = queue_limits_from_instance_yaml(home / "dagster.yaml")
    assert (limits.gpu_runs, limits.per_team_runs) == (GPU_LIMIT, TEAM_LIMIT)
    mean_run = sum(end - start for start, end in intervals) / len(intervals)
    measured = max(end for _, end in intervals) - min(start for start, _ in intervals)
    predicted = predicted_makespan(len(partitions), mean_run, limits.gpu_runs, limits.per_team_runs, teams=len(TEAMS))
    report = {"runs": len(partitions), "mean_run_s": round(mean_run, 2), "measured_makespan_s": round(measured, 2),
              "predicted_makespan_s": round(predicted, 2), "measured_over_predicted": round(measured / predicted, 3)}
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "gpu_queue_makespan.json").write_text(json.dumps(report, indent=1))
    print(f"\nGPU queue makespan: {report}")
