"""The per-team limit holds however a run is launched: a burst of one team's runs over every launch path,
with the real webserver and dagster-daemon on a fresh instance, never has more than the team's limit in
progress, and the GPU pool never more than its limit.

The UI's launches are sent as the UI sends them (dagster-webserver 1.13's bundle): the Materialize dialog
for one partition fetches the partition's tags (``ConfigPartitionForAssetJobQuery``) and launches them,
for several partitions it launches a backfill (``launchPartitionBackfill``); the Launchpad fetches the
partition set's tags (``ConfigPartitionSelectionQuery``). Schedules and sensors are the real ones, on the
probe job, evaluated by the daemon.
"""

import json
import os
import time
from collections import defaultdict

import dagster as dg
import pytest

from turbine_dagster.cli.capacity import queue_limits_from_instance_yaml
from turbine_dagster.core.data.demo import DemoDataWriter, recent_weeks
from turbine_dagster_tests.queue import harness
from turbine_dagster_tests.queue.launch_paths_defs import SCHEDULE, SCHEDULED_TEAM

GPU_LIMIT, TEAM_LIMIT = 3, 2
TEAM = "team_a"  # the team whose burst goes through every path
ASSET = {"path": ["gpu_probe"]}
JOB = "gpu_probe_job"
ASSET_JOB = "__ASSET_JOB"
PARTITION_SET = f"{JOB}_partition_set"
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]

ASSET_JOB_PARTITION_TAGS = """
query ConfigPartitionForAssetJobQuery($repositoryName: String!, $repositoryLocationName: String!, $jobName: String!,
    $partitionName: String!, $assetKeys: [AssetKeyInput!]!) {
  pipelineOrError(params: {pipelineName: $jobName, repositoryName: $repositoryName,
                           repositoryLocationName: $repositoryLocationName}) {
    ... on Pipeline { partition(partitionName: $partitionName, selectedAssetKeys: $assetKeys) {
      tagsOrError { __typename ... on PartitionTags { results { key value } } } } } } }
"""
PARTITION_SET_TAGS = """
query ConfigPartitionSelectionQuery($repositorySelector: RepositorySelector!, $partitionSetName: String!,
    $partitionName: String!) {
  partitionSetOrError(repositorySelector: $repositorySelector, partitionSetName: $partitionSetName) {
    ... on PartitionSet { partition(partitionName: $partitionName) {
      tagsOrError { __typename ... on PartitionTags { results { key value } } } } } } }
"""
LAUNCH = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) { __typename
    ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
"""
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) { __typename
    ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
    ... on PartitionSetNotFoundError { message } ... on PartitionKeysNotFoundError { message } } }
"""
SCHEDULE_ID = """
query Schedule($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) { ... on Schedule { id } } }
"""
STOP_SCHEDULE = """
mutation Stop($id: String!) { stopRunningSchedule(id: $id) { __typename } }
"""
SET_SENSOR_CURSOR = """
mutation SetSensorCursor($sensorSelector: SensorSelector!, $cursor: String) {
  setSensorCursor(sensorSelector: $sensorSelector, cursor: $cursor) { __typename } }
"""
REPOSITORY = {"repositoryLocationName": harness.LOCATION, "repositoryName": harness.REPOSITORY}


class Launcher:
    """The launches a person makes in the UI or a script through the API, each remembered by path."""

    def __init__(self, server: harness.Webserver):
        self.server = server
        self.paths: dict[str, str] = {}  # run id -> launch path

    def _launch(self, path: str, job: str, tags: list[dict], assets: bool) -> None:
        selector = {
            **REPOSITORY,
            "pipelineName": job,
            **({"assetSelection": [ASSET], "assetCheckSelection": []} if assets else {}),
        }
        params = {"mode": "default", "runConfigData": "{}", "selector": selector, "executionMetadata": {"tags": tags}}
        result = self.server.graphql(LAUNCH, executionParams=params)["launchPipelineExecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        self.paths[result["run"]["runId"]] = path

    def materialize(self, path: str, job: str, partition: str) -> None:
        """The Materialize dialog with one partition: the partition's tags, fetched from the host, launched."""
        tags = self.server.graphql(
            ASSET_JOB_PARTITION_TAGS, **REPOSITORY, jobName=job, partitionName=partition, assetKeys=[ASSET]
        )["pipelineOrError"]["partition"]["tagsOrError"]["results"]
        self._launch(path, job, tags, assets=True)

    def launchpad(self, partition: str) -> None:
        """The job's Launchpad with a partition chosen: the partition set's tags, launched with the job."""
        partition_set = self.server.graphql(
            PARTITION_SET_TAGS, repositorySelector=REPOSITORY, partitionSetName=PARTITION_SET, partitionName=partition
        )
        tags = partition_set["partitionSetOrError"]["partition"]["tagsOrError"]["results"]
        self._launch("Launchpad (job)", JOB, tags, assets=False)

    def api_with_partition_only(self, job: str, partition: str) -> None:
        tags = [{"key": "dagster/partition", "value": partition}]
        self._launch(
            f"GraphQL launchRun, only dagster/partition ({'asset job' if job == ASSET_JOB else 'job'})",
            job,
            tags,
            assets=job == ASSET_JOB,
        )

    def backfill(self, partitions: list[str], job: bool) -> None:
        params = {"partitionNames": partitions, "fromFailure": False, "tags": []}
        if job:  # the job's partitions page
            params["selector"] = {"partitionSetName": PARTITION_SET, "repositorySelector": REPOSITORY}
        else:  # the asset graph's Materialize dialog with several partitions
            params["assetSelection"] = [ASSET]
        result = self.server.graphql(LAUNCH_BACKFILL, backfillParams=params)["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result

    def stop_schedule(self, name: str) -> None:
        schedule = self.server.graphql(SCHEDULE_ID, selector={**REPOSITORY, "scheduleName": name})["scheduleOrError"]
        self.server.graphql(STOP_SCHEDULE, id=schedule["id"])

    def path_of(self, run: dg.DagsterRun) -> str:
        if run.run_id in self.paths:
            return self.paths[run.run_id]
        if "dagster/schedule_name" in run.tags:
            return "schedule"
        if "dagster/sensor_name" in run.tags:
            return f"sensor {run.tags['dagster/sensor_name']}"
        if "dagster/backfill" in run.tags:
            return (
                "asset backfill (UI Materialize, several partitions)"
                if run.job_name == ASSET_JOB
                else "job backfill (UI, job's partitions)"
            )
        return "unknown"


def team_of(run: dg.DagsterRun) -> str:
    """The team the run works for, read from its partition (not from the tag the limit counts)."""
    return run.tags["dagster/partition"].split("|")[0]


def tag_table(rows: dict[str, list[dg.DagsterRun]], limit_keys: list[str]) -> str:
    lines = [
        "| launch path | runs | tags written | " + " | ".join(f"`{k}`" for k in limit_keys) + " |",
        "|---|---|---|" + "---|" * len(limit_keys),
    ]
    for path, runs in sorted(rows.items()):
        keys = sorted({key for run in runs for key in run.tags if not key.startswith(".")})  # not Dagster's hidden
        marks = ["yes" if all(key in run.tags for run in runs) else "no" for key in limit_keys]
        lines.append(f"| {path} | {len(runs)} | {', '.join(keys)} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


@pytest.mark.slow
def test_team_limit_holds_on_every_launch_path(tmp_path, today):
    home, landing = tmp_path / "dagster_home", tmp_path / "landing"
    config = harness.lowered_instance(home, GPU_LIMIT, TEAM_LIMIT)
    limit_keys = [rule["key"] for rule in harness.per_team_rules(config)]
    workspace = harness.write_workspace(tmp_path / "workspace.yaml", "turbine_dagster_tests.queue.launch_paths_defs")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TURBINE_PROBE_SECONDS": "2",
        "TURBINE_PROBE_LANDING_ROOT": str(landing),
    }
    harness.setup_instance(env)

    weeks = recent_weeks(4, today=today)  # past weeks: partitions for the daemon, which keeps the real clock
    for week in weeks[:2]:  # new labeled files: one landing-sensor run each
        DemoDataWriter().write_labeled(landing, TEAM, week, 20)
    instance = dg.DagsterInstance.from_config(str(home))
    for team in (TEAM, "team_b"):  # drift reports: one drift retraining each (the team cooldown allows one)
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key="drift_report", partition=f"{team}|{weeks[3]}", metadata={"drift_detected": True}
            )
        )

    server = harness.start_webserver(workspace, env, tmp_path / "webserver.log")
    daemon = None
    sampled_all, scheduled = 0, False
    sampled_team: dict[str, int] = defaultdict(int)
    try:
        launcher = Launcher(server)
        # The landing sensor's first tick would only record a baseline: start it from an empty one.
        server.graphql(
            SET_SENSOR_CURSOR,
            sensorSelector={**REPOSITORY, "sensorName": "new_landing_data_sensor"},
            cursor=json.dumps({"runnable": {}, "early": {}, "strays": []}),
        )
        # Queued while no daemon runs, so that the burst starts at once.
        launcher.materialize("UI Materialize, one partition (asset graph)", ASSET_JOB, f"{TEAM}|{weeks[0]}")
        launcher.materialize("UI Materialize, one partition (job page)", JOB, f"{TEAM}|{weeks[1]}")
        launcher.launchpad(f"{TEAM}|{weeks[2]}")
        launcher.api_with_partition_only(JOB, f"{TEAM}|{weeks[3]}")
        launcher.api_with_partition_only(ASSET_JOB, f"{TEAM}|{weeks[3]}")
        launcher.backfill([f"{TEAM}|{weeks[1]}", f"{TEAM}|{weeks[2]}", *(f"team_b|{w}" for w in weeks[:2])], job=False)
        launcher.backfill([f"{TEAM}|{weeks[2]}", f"{TEAM}|{weeks[3]}", *(f"team_c|{w}" for w in weeks[:2])], job=True)
        direct = len(launcher.paths)
        expected_at_least = direct + 4 + 4 + 2 + 2 + 1  # backfills, drift, landing, schedule

        daemon = harness.start_daemon(workspace, env, tmp_path / "daemon.log")
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            running = instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS))
            sampled_all = max(sampled_all, len(running))
            for team in {team_of(r) for r in running}:
                sampled_team[team] = max(sampled_team[team], sum(team_of(r) == team for r in running))
            runs = instance.get_runs()
            if not scheduled and any("dagster/schedule_name" in r.tags for r in runs):
                launcher.stop_schedule(SCHEDULE)  # one minute's tick is enough
                scheduled = True
            if scheduled and len(runs) >= expected_at_least and all(r.status in FINISHED for r in runs):
                break
            time.sleep(0.2)
    finally:
        if daemon is not None:
            harness.stop(daemon)
        harness.stop(server.process)

    records = instance.get_run_records()
    runs = [r.dagster_run for r in records]
    by_path: dict[str, list[dg.DagsterRun]] = defaultdict(list)
    for run in runs:
        by_path[launcher.path_of(run)].append(run)
    intervals = [(r.start_time, r.end_time) for r in records if r.start_time and r.end_time]
    team_peaks = {
        team: harness.max_overlap(
            [
                (r.start_time, r.end_time)
                for r in records
                if team_of(r.dagster_run) == team and r.start_time and r.end_time
            ]
        )
        for team in sorted({team_of(run) for run in runs})
    }
    print(f"\nlimit keys: {limit_keys}; limits: gpu {GPU_LIMIT}, per team {TEAM_LIMIT}")
    print(tag_table(by_path, limit_keys))
    print(
        f"peak in progress, all runs: {harness.max_overlap(intervals)} (sampled {sampled_all}); per team: "
        f"{team_peaks} (sampled {dict(sampled_team)}); runs per team: "
        f"{ {t: sum(team_of(r) == t for r in runs) for t in team_peaks} }"
    )

    assert len(runs) >= expected_at_least, f"only {len(runs)} of {expected_at_least} runs were created"
    assert set(by_path) >= {
        "schedule",
        "sensor drift_retraining_sensor",
        "sensor new_landing_data_sensor",
        "asset backfill (UI Materialize, several partitions)",
        "job backfill (UI, job's partitions)",
    }, sorted(by_path)
    assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * len(runs)
    assert all(run.tags.get("dagster/schedule_name") is None or team_of(run) == SCHEDULED_TEAM for run in runs)
    # The limit counts a tag every run carries, with the run's own team as its value.
    for run in runs:
        assert any(run.tags.get(key) == team_of(run) for key in limit_keys), (launcher.path_of(run), run.tags)
    assert max(team_peaks.values()) <= TEAM_LIMIT and max(sampled_team.values()) <= TEAM_LIMIT
    assert team_peaks[TEAM] == TEAM_LIMIT  # the burst reached the limit: it was tested, not idle
    assert harness.max_overlap(intervals) <= GPU_LIMIT and sampled_all <= GPU_LIMIT
    assert queue_limits_from_instance_yaml(home / "dagster.yaml").per_team_runs == TEAM_LIMIT
