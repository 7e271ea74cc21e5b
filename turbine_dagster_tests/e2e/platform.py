"""The platform started exactly as the README's run command does (`make dev`), in temporary folders,
and a small client for the webserver's GraphQL API."""

import datetime as dt
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from turbine_dagster_tests.processes import free_port, graphql, stop_process_group

REPO = Path(__file__).resolve().parents[2]
TERMINAL_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}

WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
ASSET_KEYS_QUERY = "{ assetNodes { assetKey { path } } }"
LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on InvalidSubsetError { message } } }
"""
RUN_QUERY = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"
MATERIALIZATION_QUERY = """
query Latest($key: AssetKeyInput!, $partition: String!) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(limit: 1, partitions: [$partition]) { partition runId metadataEntries { label __typename
    ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr } ... on IntMetadataEntry { intValue }
    ... on FloatMetadataEntry { floatValue } ... on BoolMetadataEntry { boolValue }
    ... on JsonMetadataEntry { jsonString }
    ... on TableSchemaMetadataEntry { schema { columns { name type } } } } } } } }
"""
ASSET_NODES_QUERY = """
query Nodes($partition: String!) { assetNodes { assetKey { path } opVersion staleStatus(partition: $partition) } }
"""
STEP_FAILURES_QUERY = """
query Events($id: ID!) { logsForRun(runId: $id, limit: 5000) { ... on EventConnection { events { __typename
  ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } }
  ... on MessageEvent { message } } } } }
"""


@dataclass
class Platform:
    url: str
    process: subprocess.Popen
    home: Path
    landing_root: Path
    storage_root: Path
    log: Path

    def graphql(self, query: str, **variables) -> dict:
        return graphql(self.url, query, variables, timeout=60)

    def locations(self) -> dict[str, dict]:
        entries = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        return {entry["name"]: entry for entry in entries}

    def launch(self, location: str, job: str, partition: str, run_config: dict | None = None) -> str:
        team = partition.split("|")[0]
        params = {
            "selector": {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": job},
            "runConfigData": run_config or {},
            "executionMetadata": {
                "tags": [
                    {"key": "dagster/partition", "value": partition},
                    {"key": "team", "value": team},
                    {"key": "trigger", "value": "manual"},
                ]
            },
        }
        result = self.graphql(LAUNCH_MUTATION, params=params)["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def wait_for_run(self, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.graphql(RUN_QUERY, id=run_id)["runOrError"]["status"]
            if status in TERMINAL_STATUSES:
                return status
            time.sleep(2)
        raise TimeoutError(f"run {run_id} did not finish within {timeout} s")

    def step_failures(self, run_id: str) -> list[str]:
        events = self.graphql(STEP_FAILURES_QUERY, id=run_id)["logsForRun"]["events"]
        return [
            f"{e['stepKey']}: {e['error']['message']} {(e['error']['cause'] or {}).get('message', '')}"
            for e in events
            if e["__typename"] == "ExecutionStepFailureEvent"
        ]

    def latest_metadata(self, asset: str, partition: str) -> dict:
        asset_data = self.graphql(MATERIALIZATION_QUERY, key={"path": [asset]}, partition=partition)["assetOrError"]
        materializations = asset_data.get("assetMaterializations") or []
        if not materializations:
            return {}
        values = {}
        for entry in materializations[0]["metadataEntries"]:
            values[entry["label"]] = next(
                (
                    entry[k]
                    for k in ("text", "mdStr", "intValue", "floatValue", "boolValue", "jsonString", "schema")
                    if k in entry
                ),
                None,
            )
        return values

    def asset_nodes(self, partition: str) -> dict[str, dict]:
        """Each asset's code version (``opVersion`` in the GraphQL schema) and stale status for ``partition``."""
        nodes = self.graphql(ASSET_NODES_QUERY, partition=partition)["assetNodes"]
        return {node["assetKey"]["path"][-1]: node for node in nodes}

    def stop(self) -> None:
        stop_process_group(self.process)


def start_platform(
    tmp: Path,
    as_of: dt.date,
    demo_args: str = "--weeks 2 --scoring-rows 3000",
    extra_env: dict | None = None,
    timeout: float = 240,
) -> Platform:
    """``make dev`` with a temporary DAGSTER_HOME, landing zone and storage, on a free port.

    Demo data is written for the weeks up to the one holding ``as_of`` (the tests' fixed today); the
    platform itself keeps the real clock, under which those past weeks are partitions.
    """
    port = free_port()
    home, landing_root, storage_root, log = tmp / "dagster_home", tmp / "landing", tmp / "storage", tmp / "dev.log"
    env = {
        **os.environ,
        "TURBINE_LANDING_ROOT": str(landing_root),
        "TURBINE_STORAGE_ROOT": str(storage_root),
        **(extra_env or {}),
    }
    subprocess.run(
        [str(REPO / ".venv/bin/turbine-demo-data"), *demo_args.split(), "--as-of", as_of.isoformat()],
        env=env,
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        ["make", "--no-print-directory", "dev", f"DAGSTER_HOME={home}", f"PORT={port}"],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    platform = Platform(f"http://127.0.0.1:{port}", process, home, landing_root, storage_root, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"make dev exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            entries = platform.locations()
            if len(entries) == 2 and all(e["loadStatus"] == "LOADED" for e in entries.values()):
                return platform
        except (requests.ConnectionError, requests.HTTPError, KeyError, TypeError):
            pass
        time.sleep(2)
    platform.stop()
    raise TimeoutError(f"the platform was not healthy within {timeout} s:\n{log.read_text()[-4000:]}")
