"""Helpers of the reliability drills: broken landing data, a seeded serving champion, the run log read
through GraphQL, killing a run's processes, snapshots of the storage root, and the drift sensor's
stored ticks and cursor."""

import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import psutil
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

from turbine_dagster.core.data import landing
from turbine_dagster.core.data.demo import DemoDataWriter
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, TARGET
from turbine_dagster_tests.e2e.platform import LAUNCH_MUTATION, TERMINAL_STATUSES, Platform

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
"""Run config for the executor that runs every step inside the run worker: one process per run."""

RUN_EVENTS_QUERY = """
query Events($id: ID!) { logsForRun(runId: $id, limit: 10000) { __typename
  ... on EventConnection { events { __typename
    ... on MessageEvent { message stepKey }
    ... on EngineEvent { metadataEntries { label ... on TextMetadataEntry { text } } }
    ... on ExecutionStepFailureEvent { error { message cause { message } } }
    ... on MaterializationEvent { assetKey { path } partition }
    ... on AssetCheckEvaluationEvent { evaluation { checkName success description } } } } } }
"""
RUNS_QUERY = """
query Runs($ids: [String!]) { runsOrError(filter: {runIds: $ids}) { ... on Runs { results { runId status } } } }
"""


# -- the run log ---------------------------------------------------------------------------------


@dataclass
class RunLog:
    events: list[dict]

    def messages(self) -> list[str]:
        return [e.get("message") or "" for e in self.events]

    def step_failures(self) -> dict[str, str]:
        """Step key -> the error and its cause, as the UI shows them."""
        return {
            e["stepKey"]: f"{e['error']['message']} {(e['error']['cause'] or {}).get('message', '')}"
            for e in self.events
            if e["__typename"] == "ExecutionStepFailureEvent"
        }

    def started_steps(self) -> set[str]:
        return {e["stepKey"] for e in self.events if e["__typename"] == "ExecutionStepStartEvent"}

    def materialized(self) -> list[tuple[str, str]]:
        """(asset, partition) of every materialization the run reported."""
        return [
            ("/".join(e["assetKey"]["path"]), e["partition"])
            for e in self.events
            if e["__typename"] == "MaterializationEvent"
        ]

    def check_evaluations(self) -> dict[str, dict]:
        return {
            e["evaluation"]["checkName"]: e["evaluation"]
            for e in self.events
            if e["__typename"] == "AssetCheckEvaluationEvent"
        }

    def run_worker_pid(self) -> int:
        """The pid in the run's "Started process for run (pid: N)." engine event."""
        for event in self.events:
            message = event.get("message") or ""
            if event["__typename"] == "EngineEvent" and message.startswith("Started process for run"):
                return int(next(m["text"] for m in event["metadataEntries"] if m["label"] == "pid"))
        raise LookupError("the run has not reported its process yet")


def run_log(platform: Platform, run_id: str) -> RunLog:
    return RunLog(platform.graphql(RUN_EVENTS_QUERY, id=run_id)["logsForRun"]["events"])


def launch_raw(
    platform: Platform,
    location: str,
    job: str,
    partition: str,
    run_config: dict | None = None,
    asset_selection: list[str] | None = None,
) -> dict:
    """launchRun as the UI sends it, for any partition key; the mutation's answer, whatever it is."""
    selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": job}
    if asset_selection:
        selector["assetSelection"] = [{"path": [asset]} for asset in asset_selection]
    params = {
        "selector": selector,
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }
    return platform.graphql(LAUNCH_MUTATION, params=params)["launchRun"]


def wait_for_runs(platform: Platform, run_ids: list[str], timeout: float = 600) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        runs = platform.graphql(RUNS_QUERY, ids=run_ids)["runsOrError"]["results"]
        statuses = {run["runId"]: run["status"] for run in runs}
        if len(statuses) == len(run_ids) and set(statuses.values()) <= TERMINAL_STATUSES:
            return statuses
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs still going after {timeout} s: {statuses}")
        time.sleep(2)


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


# -- processes -----------------------------------------------------------------------------------


def kill_process_tree(pid: int) -> list[int]:
    """SIGKILL a process and every descendant, all frozen first so none reacts to another's death."""
    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    for process in tree:
        process.send_signal(signal.SIGSTOP)
    for process in tree:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=10)
    return [process.pid for process in tree]


def crash(platform: Platform) -> None:
    """kill -9 of the whole platform (make, dagster dev, webserver, daemon, code servers, run workers)."""
    try:
        os.killpg(platform.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    platform.process.wait(30)


# -- files ---------------------------------------------------------------------------------------


def snapshot(root: Path, keep: Callable[[str], bool] = lambda relative: True) -> dict[str, str]:
    """Relative path -> SHA-256 of the bytes, for every file under ``root`` that ``keep`` accepts."""
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if keep(relative):
            files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def team_registry(team: str) -> Callable[[str], bool]:
    """The registry files of one team: its folder and its lock file."""
    return lambda relative: relative.startswith((f"registry/{team}/", f"registry/{team}.lock"))


def artifact_problems(root: Path) -> list[str]:
    """What a reader of the storage root would trip on: temporary or partial files, and models, tables and
    reports that do not load."""
    from turbine_dagster.core.storage import model_files

    problems = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if ".tmp-" in path.name:
            problems.append(f"{name}: a temporary file left behind")
            continue
        try:
            if path.suffix in (".keras", ".cbm"):
                model_files.load_model(str(path))
            elif path.suffix == ".parquet":
                pd.read_parquet(path)
            elif path.suffix == ".json":
                json.loads(path.read_bytes())
        except Exception as error:  # noqa: BLE001 - every unreadable artifact is reported
            problems.append(f"{name}: {type(error).__name__}: {error}")
    return problems


def asset_file(storage_root: Path, asset: str, partition: str) -> Path:
    """Where the IO managers keep one partition of an asset (any of the native suffixes)."""
    team, week = partition.split("|")
    matches = list((storage_root / "assets" / asset / team).glob(f"{week}.*"))
    return matches[0] if matches else storage_root / "assets" / asset / team / f"{week}.<missing>"


def files_of_materializations(storage_root: Path, materialized: list[tuple[str, str]]) -> set[str]:
    """Files (relative to the storage root) that reported materializations account for: each asset's stored
    value, and the model files a stored list of checkpoints refers to."""
    files = set()
    for asset, partition in materialized:
        path = asset_file(storage_root, asset, partition)
        files.add(path.relative_to(storage_root).as_posix())
        if path.suffix == ".json" and path.exists():
            value = json.loads(path.read_bytes())
            if isinstance(value, list):
                files |= {
                    Path(item["artifact_uri"]).relative_to(storage_root).as_posix()
                    for item in value
                    if isinstance(item, dict) and item.get("artifact_uri")
                }
    return files


# -- a serving champion without a training run -----------------------------------------------------


def seed_serving_champion(registry_root: Path, team: str, week: str) -> int:
    """Register and promote a small CatBoost model for ``team`` through the registry's own API.

    The drills only need a champion that serves and that the gate can score against; training one
    through the pipeline would cost a minute of CPU per team.
    """
    import catboost
    from sklearn.metrics import recall_score, roc_auc_score

    from turbine_dagster.core.evaluation.selection import GateDecision
    from turbine_dagster.core.registry.registry import ModelRegistry

    cases = DemoDataWriter().cases(team, week, 400, "SEED")
    train, test = cases.iloc[:300], cases.iloc[300:]
    model = catboost.CatBoostClassifier(iterations=40, depth=4, random_seed=0, thread_count=1, verbose=False)
    model.fit(train.loc[:, list(FEATURE_COLUMNS)], train[TARGET])
    p_malignant = model.predict_proba(test.loc[:, list(FEATURE_COLUMNS)])[:, list(model.classes_).index(0)]
    metrics = {
        "malignant_recall": float(recall_score(test[TARGET], (p_malignant >= 0.5).astype(int), pos_label=0)),
        "roc_auc": float(roc_auc_score(test[TARGET] == 0, p_malignant)),
    }
    registry = ModelRegistry(registry_root)
    version = registry.register(
        team,
        model,
        threshold=0.5,
        metrics=metrics,
        partition=f"{team}|{week}",
        run_id=None,
        data_version=None,
        reference=train,
    )
    registry.promote_if(team, version.version, lambda serving: GateDecision(True, "seeded for the reliability drills"))
    return version.version


# -- broken landing data -------------------------------------------------------------------------


@dataclass(frozen=True)
class BadInput:
    """One way a team can land broken labeled data, and where the platform must say so."""

    name: str
    team: str
    week: str
    file: str
    """The landed file the error must name (relative to the landing root)."""
    failing_check: str | None
    """The blocking raw_data check that must fail, or None when raw_data itself must fail."""
    needles: tuple[str, ...]
    """Fragments the error must contain: the column or the problem, and the file."""
    write: Callable[[Path], None] = field(repr=False)

    @property
    def partition(self) -> str:
        return f"{self.team}|{self.week}"


def _cases(team: str, week: str, rows: int = 60) -> pd.DataFrame:
    return DemoDataWriter().cases(team, week, rows, "BAD")


def _csv(frame: pd.DataFrame, name: str = "cases.csv") -> Callable[[Path], None]:
    return lambda folder: frame.to_csv(folder / name, index=False)


def _with_cell(frame: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    frame = frame.copy()
    if isinstance(value, str) and column != CASE_ID:
        frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


def _csv_and_stray_file(team: str, week: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        _csv(_cases(team, week))(folder)
        (folder / "notes.txt").write_text("not data\n")

    return write


# Every bad input of the spine issue: name, landed file, the blocking raw_data check that must fail (None:
# raw_data itself fails), fragments the error must contain, and how to build the writer for a team and week.
_BAD_INPUT_KINDS = (
    (
        "missing column",
        "cases.csv",
        None,
        ("column 'mean radius' missing in {file}",),
        lambda t, w: _csv(_cases(t, w).drop(columns=["mean radius"])),
    ),
    (
        "text in a numeric column",
        "cases.csv",
        "feature_columns_numeric",
        ("column 'mean radius' is not numeric: 1 row(s) in {file}",),
        lambda t, w: _csv(_with_cell(_cases(t, w), 5, "mean radius", "twelve")),
    ),
    (
        "NaN",
        "cases.parquet",
        "no_missing_or_infinite_values",
        ("column 'mean texture' is NaN: 1 row(s) in {file}",),
        lambda t, w: (
            lambda folder: _with_cell(_cases(t, w), 3, "mean texture", np.nan).to_parquet(
                folder / "cases.parquet", index=False
            )
        ),
    ),
    (
        "inf",
        "cases.csv",
        "no_missing_or_infinite_values",
        ("column 'mean area' is infinite: 1 row(s) in {file}",),
        lambda t, w: _csv(_with_cell(_cases(t, w), 4, "mean area", np.inf)),
    ),
    (
        "unknown label",
        "cases.csv",
        "labels_valid",
        ("column 'target' holds a label other than 0 (malignant) or 1 (benign): 1 row(s) in {file}",),
        lambda t, w: _csv(_with_cell(_cases(t, w), 2, TARGET, 2)),
    ),
    (
        "duplicate case_id",
        "cases.csv",
        "case_ids_unique",
        ("column 'case_id' repeats a case id: 2 row(s) in {file}",),
        lambda t, w: (lambda frame: _csv(_with_cell(frame, 7, CASE_ID, frame.loc[6, CASE_ID])))(_cases(t, w)),
    ),
    (
        "empty partition",
        "cases.csv",
        None,
        ("no labeled cases for {team} up to week {week}",),
        lambda t, w: _csv(_cases(t, w).iloc[0:0]),
    ),
    (
        "file that is not CSV or Parquet",
        "notes.txt",
        None,
        ("{file} is not a CSV or Parquet file",),
        _csv_and_stray_file,
    ),
)
BAD_INPUT_NAMES = tuple(kind[0] for kind in _BAD_INPUT_KINDS)


def bad_inputs(teams: tuple[str, ...], weeks: list[str]) -> dict[str, BadInput]:
    """Every bad input, by name, one partition each: the teams over the weeks (weeks without demo data)."""
    slots = iter([(team, week) for week in weeks for team in teams])
    made = {}
    for name, file, failing_check, needles, build in _BAD_INPUT_KINDS:
        team, week = next(slots)
        folder = f"labeled/team={team}/week={week}"
        made[name] = BadInput(
            name,
            team,
            week,
            f"{folder}/{file}",
            failing_check,
            tuple(n.format(file=f"{folder}/{file}", team=team, week=week) for n in needles),
            build(team, week),
        )
    return made


def land(landing_root: Path, bad: BadInput) -> None:
    folder = Path(landing.partition_dir(landing.root_path(str(landing_root)), landing.LABELED, bad.team, bad.week).path)
    folder.mkdir(parents=True, exist_ok=True)
    bad.write(folder)


# -- the drift sensor's stored state ---------------------------------------------------------------

DRIFT_SENSOR = "drift_retraining_sensor"


def report_drift(instance: dg.DagsterInstance, partition: str) -> int:
    """A drift_report materialization saying drift, as the prediction side records it; its storage id."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "drift_report",
            partition=partition,
            metadata={"drift_detected": True},
            description="reported by the reliability drill",
        )
    )
    return instance.fetch_materializations(dg.AssetKey("drift_report"), limit=1, ascending=False).records[0].storage_id


def sensor_state(instance: dg.DagsterInstance, name: str = DRIFT_SENSOR):
    return next(
        (s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.name == name), None
    )


def sensor_ticks(instance: dg.DagsterInstance, name: str = DRIFT_SENSOR) -> list:
    """Finished ticks, newest first."""
    state = sensor_state(instance, name)
    if state is None:
        return []
    return [
        t
        for t in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=50)
        if t.status != TickStatus.STARTED
    ]


def set_sensor_cursor(instance: dg.DagsterInstance, cursor: str | None, name: str = DRIFT_SENSOR) -> None:
    state = sensor_state(instance, name)
    instance.update_instigator_state(state.with_data(state.instigator_data._replace(cursor=cursor)))
