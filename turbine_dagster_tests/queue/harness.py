"""What the queue tests share: a fresh instance with lowered limits, the real webserver and daemon on a probe
code location, a small GraphQL client, and the peak overlap of run intervals."""

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from turbine_dagster_tests.processes import free_port, graphql, stop_process_group

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "probe"
REPOSITORY = "__repository__"


def per_team_rules(config: dict) -> list[dict]:
    """The ``tag_concurrency_limits`` entries that limit runs per unique tag value (the per-team limit)."""
    return [
        rule
        for rule in config["concurrency"]["runs"].get("tag_concurrency_limits") or []
        if rule.get("value") == {"applyLimitPerUniqueValue": True}
    ]


def lowered_instance(home: Path, gpu_limit: int, team_limit: int) -> dict:
    """The project's dagster.yaml with the limits lowered so a test runs in seconds; returns the config."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["concurrency"]["pools"]["default_limit"] = gpu_limit
    rules = per_team_rules(config)
    assert rules, "dagster.yaml has no per-team tag_concurrency_limits rule"
    for rule in rules:
        rule["limit"] = team_limit
    config["run_coordinator"]["config"] = {"dequeue_interval_seconds": 1}
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return config


def write_workspace(path: Path, module: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": module,
                            "location_name": LOCATION,
                            "working_directory": str(REPO),
                        }
                    }
                ]
            }
        )
    )
    return path


def setup_instance(env: dict) -> None:
    """``turbine-instance-setup``: the gpu pool's limit row exists before the first run (the fresh-instance fix)."""
    subprocess.run([BIN / "turbine-instance-setup"], env=env, check=True, capture_output=True)


def start(command: list, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(part) for part in command],
        env=env,
        cwd=REPO,
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen) -> None:
    stop_process_group(process, grace_seconds=20)


def start_daemon(workspace: Path, env: dict, log: Path) -> subprocess.Popen:
    return start([BIN / "dagster-daemon", "run", "-w", workspace], env, log)


@dataclass
class Webserver:
    url: str
    process: subprocess.Popen
    log: Path

    def graphql(self, query: str, **variables) -> dict:
        return graphql(self.url, query, variables, timeout=120)


WORKSPACE_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def start_webserver(workspace: Path, env: dict, log: Path, timeout: float = 240) -> Webserver:
    port = free_port()
    process = start([BIN / "dagster-webserver", "-w", workspace, "-h", "127.0.0.1", "-p", port], env, log)
    server = Webserver(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            entries = server.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                return server
        except (requests.ConnectionError, requests.HTTPError, KeyError, TypeError):
            pass
        time.sleep(1)
    stop(process)
    raise TimeoutError(f"dagster-webserver was not ready within {timeout} s:\n{log.read_text()[-4000:]}")


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:  # at equal times the end (-1) sorts first: a slot handed over is no overlap
        running += change
        peak = max(peak, running)
    return peak
