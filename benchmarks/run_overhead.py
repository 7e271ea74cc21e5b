"""Run overhead: a pipeline run's wall-clock through `make dev` against its critical-path compute.

Usage: python benchmarks/run_overhead.py [--repeats 3] [--team team_a] [--pipelines training,prediction]
                                         [--training-config defaults|small]

Setup (untimed). A temporary DAGSTER_HOME, landing zone and storage; demo landing data as `make dev` writes it
(`turbine-demo-data` at its defaults: 8 weeks of 150 labeled cases and 2,000 scoring cases per team); then
`make dev` itself (the project's dagster.yaml, `turbine-instance-setup`, `dagster dev` with the webserver, the
daemon and both code locations, the jobs' own executor). Its sensors and schedules are stopped through the API
first, so no run but the measured one is ever in progress.

Timed. Runs launched through the webserver's GraphQL API as the Launchpad does, for the team's current week, one
at a time: `--repeats` runs of `training_pipeline`, then `--repeats` of `prediction_pipeline` (from the champion
the training runs promoted). Read back from Dagster's own run and step statistics:
- wall: the run's duration as Dagster records it (run start to run end, what the UI shows);
- critical-path compute: the longest chain of dependent steps, each counted for its own duration (step start to
  step end, inputs loaded and outputs stored included); TF and CatBoost training run side by side, so their
  durations include the contention for the 2 cores;
- ratio wall / critical path and overhead wall - critical path: what process start-ups, code loading and the
  hand-over between steps add (target: ratio <= 1.15 for training_pipeline);
- queued: launch to run start (the daemon's dequeue and the run worker's start), outside the wall above.
Medians over the repeats; per-step durations and start gaps (a step's start after the end of the last step it
waits for) follow. This is not `benchmarks/train_partition.py`'s ratio, which compares the in-process Dagster
path with a plain script.

`--training-config defaults` (the default) runs the job's own defaults (5 folds, CatBoost's full grid, up to 200
epochs): about 1.5 minutes per run on 2 cores. `small` (3 folds, a small grid, at most 60 epochs) shows the same
fixed overhead against a third of the compute.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from turbine_dagster_tests.processes import stop_process_group

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMALL_TRAINING = {
    "ops": {
        "splits": {"config": {"folds": 3}},
        "tf_model": {"config": {"epochs": 60, "patience": 10}},
        "catboost_model": {
            "config": {"iterations": 300, "depth": [4, 6], "learning_rate": [0.1], "l2_leaf_reg": [3.0], "cv_folds": 2}
        },
    }
}
LAUNCH = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""
RUN = """
query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status creationTime startTime endTime
  stepStats { stepKey status startTime endTime }
  executionPlan { steps { key inputs { dependsOn { key } } } } } } }
"""
INSTIGATORS = """
query Instigators($repo: RepositorySelector!) {
  sensorsOrError(repositorySelector: $repo) { ... on Sensors { results { name sensorState { id status } } } }
  schedulesOrError(repositorySelector: $repo) { ... on Schedules { results { name scheduleState { id status } } } } }
"""
STOP_SENSOR = "mutation Stop($id: String!) { stopSensor(id: $id) { __typename } }"
STOP_SCHEDULE = "mutation Stop($id: String!) { stopRunningSchedule(id: $id) { __typename } }"
LOCATIONS = {
    "training": ("turbine-training", "training_pipeline"),
    "prediction": ("turbine-prediction", "prediction_pipeline"),
}


class Platform:
    """`make dev` in its own process group, with a GraphQL client."""

    def __init__(self, base: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = base / "dev.log"
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "dev", f"DAGSTER_HOME={base / 'dagster_home'}", f"PORT={port}"],
            cwd=REPO,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def graphql(self, query: str, **variables) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        if "errors" in body:
            raise RuntimeError(body["errors"])
        return body["data"]

    def wait_until_loaded(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"make dev exited:\n{self.log.read_text()[-3000:]}")
            try:
                entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
                if len(entries) == 2 and all(entry["loadStatus"] == "LOADED" for entry in entries):
                    return
            except (requests.RequestException, RuntimeError, KeyError, TypeError):
                pass
            time.sleep(2)
        raise TimeoutError(f"make dev did not load both code locations in {timeout} s")

    def stop_instigators(self) -> list[str]:
        stopped = []
        for location, _ in LOCATIONS.values():
            data = self.graphql(
                INSTIGATORS, repo={"repositoryLocationName": location, "repositoryName": "__repository__"}
            )
            for sensor in data["sensorsOrError"]["results"]:
                if sensor["sensorState"]["status"] == "RUNNING":
                    self.graphql(STOP_SENSOR, id=sensor["sensorState"]["id"])
                    stopped.append(sensor["name"])
            for schedule in data["schedulesOrError"]["results"]:
                if schedule["scheduleState"]["status"] == "RUNNING":
                    self.graphql(STOP_SCHEDULE, id=schedule["scheduleState"]["id"])
                    stopped.append(schedule["name"])
        return stopped

    def run(self, pipeline: str, partition: str, run_config: dict) -> dict:
        location, job = LOCATIONS[pipeline]
        params = {
            "selector": {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": job},
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
        }
        launched = self.graphql(LAUNCH, params=params)["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(launched)
        run_id = launched["run"]["runId"]
        while True:
            run = self.graphql(RUN, id=run_id)["runOrError"]
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                if run["status"] != "SUCCESS":
                    raise RuntimeError(f"{job} run {run_id} ended {run['status']}; see {self.log}")
                return run
            time.sleep(1)

    def stop(self) -> None:
        stop_process_group(self.process)


def critical_path(run: dict) -> tuple[float, list[str]]:
    """The longest chain of dependent steps, by the steps' own durations."""
    duration = {s["stepKey"]: s["endTime"] - s["startTime"] for s in run["stepStats"]}
    upstream = {
        step["key"]: {d["key"] for i in step["inputs"] for d in i["dependsOn"]}
        for step in run["executionPlan"]["steps"]
    }
    best: dict[str, tuple[float, list[str]]] = {}

    def longest(key: str) -> tuple[float, list[str]]:
        if key not in best:
            before = max((longest(u) for u in upstream.get(key, ()) if u in duration), default=(0.0, []))
            best[key] = (before[0] + duration[key], [*before[1], key])
        return best[key]

    return max(longest(key) for key in duration)


def start_gaps(run: dict) -> dict[str, float]:
    """Each step's start after the end of the last step it waits for (the run's start for the first ones)."""
    stats = {s["stepKey"]: s for s in run["stepStats"]}
    gaps = {}
    for step in run["executionPlan"]["steps"]:
        ready = max(
            (stats[d["key"]]["endTime"] for i in step["inputs"] for d in i["dependsOn"] if d["key"] in stats),
            default=run["startTime"],
        )
        if step["key"] in stats:
            gaps[step["key"]] = stats[step["key"]]["startTime"] - ready
    return gaps


def report(pipeline: str, runs: list[dict]) -> None:
    rows = []
    for run in runs:
        wall = run["endTime"] - run["startTime"]
        compute, path = critical_path(run)
        rows.append((wall, compute, wall / compute, wall - compute, run["startTime"] - run["creationTime"], path))
    print(f"\n## {LOCATIONS[pipeline][1]} ({len(runs)} runs, one at a time)")
    print("| run | wall (s) | critical-path compute (s) | wall / critical path | overhead (s) | queued (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for number, (wall, compute, ratio, overhead, queued, _) in enumerate(rows, 1):
        print(f"| {number} | {wall:.1f} | {compute:.1f} | {ratio:.3f} | {overhead:.1f} | {queued:.1f} |")
    medians = [statistics.median(row[i] for row in rows) for i in range(5)]
    print("| **median** | **{:.1f}** | **{:.1f}** | **{:.3f}** | **{:.1f}** | {:.1f} |".format(*medians))
    print(f"critical path: {' -> '.join(rows[len(rows) // 2][5])}")
    keys = [s["key"] for s in runs[0]["executionPlan"]["steps"]]
    print("| step | median duration (s) | median start gap (s) |")
    print("|---|---:|---:|")
    for key in keys:
        durations = [s["endTime"] - s["startTime"] for run in runs for s in run["stepStats"] if s["stepKey"] == key]
        gaps = [start_gaps(run).get(key) for run in runs]
        gaps = [gap for gap in gaps if gap is not None]
        if durations:
            print(f"| {key} | {statistics.median(durations):.1f} | {statistics.median(gaps):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--team", default="team_a")
    parser.add_argument("--pipelines", default="training,prediction")
    parser.add_argument("--training-config", choices=("defaults", "small"), default="defaults")
    args = parser.parse_args()
    pipelines = args.pipelines.split(",")

    base = Path(tempfile.mkdtemp(prefix="turbine-run-overhead-"))
    os.environ.update(TURBINE_LANDING_ROOT=str(base / "landing"), TURBINE_STORAGE_ROOT=str(base / "storage"))
    subprocess.run([BIN / "turbine-demo-data"], check=True, capture_output=True)
    from turbine_dagster.core.data.demo import recent_weeks

    partition = f"{args.team}|{recent_weeks(1)[0]}"  # the current week, as make dev's demo data
    platform = Platform(base)
    try:
        platform.wait_until_loaded()
        stopped = platform.stop_instigators()
        print(
            f"make dev on {platform.url}; stopped {len(stopped)} sensors and schedules; partition {partition}; "
            f"training config: {args.training_config}; load average {os.getloadavg()[0]:.1f}"
        )
        configs = {"training": SMALL_TRAINING if args.training_config == "small" else {}, "prediction": {}}
        results = {}
        for pipeline in pipelines:
            results[pipeline] = []
            for _ in range(args.repeats):
                results[pipeline].append(platform.run(pipeline, partition, configs[pipeline]))
                print(
                    f"  {pipeline} run {len(results[pipeline])} done; load average {os.getloadavg()[0]:.1f}", flush=True
                )
        for pipeline, runs in results.items():
            report(pipeline, runs)
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
