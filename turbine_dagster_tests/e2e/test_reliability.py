"""Reliability drills: faults and bad input cost nothing.

The platform drills share one `make dev` platform (temporary DAGSTER_HOME, landing zone and storage),
started once for the module; the last drill restarts it. Every team starts with a serving champion
seeded through the registry's own API, so "the serving champion is unchanged" is asserted against a
real pointer and real versions.

Runs the drills launch themselves use the in-process executor (run config, as the Launchpad offers
it): every step runs inside the run worker, one process per run instead of one per step. On two
cores that turns a minute of process start-ups per run into seconds; what the drills assert (failed
steps, blocking checks, atomic writes, crash handling) does not depend on the executor.
"""

import dataclasses
import json
import os
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster._core.scheduler.instigation import TickStatus
from upath import UPath

from turbine_dagster.core.data import cases, landing
from turbine_dagster.core.data.demo import recent_weeks
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.defs.resources import LandingZone, PartitionFolders
from turbine_dagster.settings import Settings
from turbine_dagster_tests.conftest import WEEKS_UP_TO_TODAY
from turbine_dagster_tests.e2e import drills
from turbine_dagster_tests.e2e.platform import Platform, start_platform

slow = pytest.mark.slow

TEAMS = ("team_a", "team_b", "team_c", "team_d")
DEMO_ARGS = "--weeks 2 --scoring-rows 0"  # labeled data for the two latest weeks; nothing here scores

SMALL_TRAINING = {
    "splits": {"config": {"folds": 3}},
    "tf_model": {"config": {"epochs": 15, "patience": 5}},
    "catboost_model": {
        "config": {"iterations": 60, "depth": [4], "learning_rate": [0.1], "l2_leaf_reg": [3.0], "cv_folds": 2}
    },
    "tf_evaluation": {"config": {"n_bootstrap": 100}},
    "catboost_evaluation": {"config": {"n_bootstrap": 100}},
    "logistic_evaluation": {"config": {"n_bootstrap": 100}},
    "champion_model": {"config": {"n_bootstrap": 100}},
}
# Hundreds of epochs at batch size 8: tf_model trains for minutes, long enough to be killed mid-epoch.
LONG_TRAINING = {**SMALL_TRAINING, "tf_model": {"config": {"epochs": 400, "patience": 400, "batch_size": 8}}}
ONE_WEEK_OF_DATA = {"raw_data": {"config": {"window_weeks": 1}}}

# A marker name in partition keys that try to leave the roots makes anything a traversal created findable.
ESCAPE = "escaped-by-drill"


@pytest.fixture(scope="module")
def weeks(today) -> list[str]:
    """The weeks the drills use, up to today's (the tests' fixed date); demo data lands for the last two."""
    return recent_weeks(WEEKS_UP_TO_TODAY, today=today)


@pytest.fixture(scope="module")
def current_week(weeks) -> str:
    return weeks[-1]


@pytest.fixture(scope="module")
def bad_inputs(weeks) -> dict[str, drills.BadInput]:
    return drills.bad_inputs(("team_b", "team_c", "team_d"), weeks[3:6])  # weeks older than the demo data


@pytest.fixture(scope="module")
def drift_partition(weeks) -> str:
    return f"team_d|{weeks[0]}"  # no labeled data up to that week: its retraining run fails at once


@pytest.fixture(scope="module")
def killed_partition(current_week) -> str:
    return f"team_a|{current_week}"


@pytest.fixture(scope="module")
def traversal_keys(current_week) -> dict[str, tuple[str, str]]:
    """Partition keys that try to leave the landing root or the storage root, each with the part the
    refusal must name."""
    return {
        "relative team": (f"../{ESCAPE}|{current_week}", f"'../{ESCAPE}'"),
        "absolute team": (f"/tmp/{ESCAPE}|{current_week}", f"'/tmp/{ESCAPE}'"),
        "relative week": (f"team_b|../../../../{ESCAPE}", f"'../../../../{ESCAPE}'"),
        "absolute week": (f"team_b|/tmp/{ESCAPE}", f"'/tmp/{ESCAPE}'"),
    }


@dataclasses.dataclass
class Site:
    """The shared platform, its folders, and what the module launched on it."""

    tmp: Path
    platform: Platform
    seeded: dict[str, str]
    bad_runs: dict[str, str] = dataclasses.field(default_factory=dict)
    traversal_runs: dict[str, dict] = dataclasses.field(default_factory=dict)
    drift_storage_id: int | None = None

    def launched_traversal_runs(self) -> list[str]:
        return [r["run"]["runId"] for r in self.traversal_runs.values() if r["__typename"] == "LaunchRunSuccess"]

    @property
    def storage(self) -> Path:
        return self.platform.storage_root

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.storage / "registry")


@pytest.fixture(scope="module")
def site(tmp_path_factory, today, weeks, bad_inputs, drift_partition, traversal_keys):
    """Landing zone with every bad input, a serving champion per team, then `make dev`; everything the
    module checks is launched at once so the queue runs it concurrently while the drills proceed."""
    tmp = tmp_path_factory.mktemp("reliability")
    for bad in bad_inputs.values():
        drills.land(tmp / "landing", bad)  # before start-up: the landing sensor takes them as its baseline
    for team in TEAMS:
        drills.seed_serving_champion(tmp / "storage" / "registry", team, weeks[-2])
    seeded = drills.snapshot(tmp / "storage", lambda relative: relative.startswith("registry/"))
    site = Site(tmp, start_platform(tmp, as_of=today, demo_args=DEMO_ARGS), seeded)
    platform = site.platform  # the last drill replaces site.platform; teardown stops whichever runs
    try:
        with dg.DagsterInstance.from_config(str(platform.home)) as instance:
            site.drift_storage_id = drills.report_drift(instance, drift_partition)
        one_week = {**drills.IN_PROCESS, "ops": ONE_WEEK_OF_DATA}
        for bad in bad_inputs.values():
            site.bad_runs[bad.name] = platform.launch("turbine-training", "training_pipeline", bad.partition, one_week)
        for name, (key, _) in traversal_keys.items():
            site.traversal_runs[name] = drills.launch_raw(
                platform, "turbine-training", "training_pipeline", key, drills.IN_PROCESS
            )
        site.traversal_runs["prediction, relative team"] = drills.launch_raw(
            platform, "turbine-prediction", "prediction_pipeline", traversal_keys["relative team"][0], drills.IN_PROCESS
        )
        yield site
    finally:
        drills.crash(site.platform)


def seeded_registry_of(site: Site, team: str) -> dict[str, str]:
    return {path: digest for path, digest in site.seeded.items() if drills.team_registry(team)(path)}


# -- 3. bad input through the UI path ------------------------------------------------------------------


@slow
@pytest.mark.parametrize("bad_name", drills.BAD_INPUT_NAMES)
def test_bad_landing_data_fails_the_run_with_a_named_error_and_nothing_downstream(site, bad_inputs, bad_name):
    bad = bad_inputs[bad_name]
    run_id = site.bad_runs[bad.name]
    assert site.platform.wait_for_run(run_id, timeout=480) == "FAILURE"
    log = drills.run_log(site.platform, run_id)

    if bad.failing_check is None:  # raw_data cannot build a table: the step fails and says why
        failures = log.step_failures()
        assert set(failures) == {"raw_data"}, failures
        for needle in bad.needles:
            assert needle in failures["raw_data"], failures["raw_data"]
        assert f"raw_data for {bad.partition}" in failures["raw_data"]
        assert log.materialized() == []
    else:  # raw_data is stored as landed; exactly one blocking check (in raw_data's step) fails, naming column and file
        evaluations = log.check_evaluations()
        failed = {name: e["description"] for name, e in evaluations.items() if not e["success"]}
        assert set(failed) == {bad.failing_check}, evaluations
        for needle in bad.needles:
            assert needle in failed[bad.failing_check]
        assert set(log.step_failures()) == {"raw_data"}
        assert log.materialized() == [("raw_data", bad.partition)]

    # Nothing downstream ran, nothing downstream was written.
    assert log.started_steps() == {"raw_data"}
    for asset in (
        "train_split",
        "test_split",
        "tf_model",
        "catboost_model",
        "logistic_model",
        "tf_evaluation",
        "catboost_evaluation",
        "logistic_evaluation",
        "champion_model",
        "serving_champion",
    ):
        assert not drills.asset_file(site.storage, asset, bad.partition).exists(), asset
    # The team's serving champion and every registry entry are exactly as seeded.
    assert drills.snapshot(site.storage, drills.team_registry(bad.team)) == seeded_registry_of(site, bad.team)
    assert site.registry().serving(bad.team).version == 1


# -- 4. keys and paths that try to leave the roots ------------------------------------------------------


@slow
def test_partition_keys_that_leave_the_roots_are_refused_through_graphql(site, traversal_keys):
    """Dagster accepts a launch with any `dagster/partition` tag; the platform must refuse to follow it."""
    launched = {}
    for name, result in site.traversal_runs.items():
        # Refused at launch would do too; if Dagster lets the run start, the run must fail.
        if result["__typename"] == "LaunchRunSuccess":
            launched[name] = result["run"]["runId"]
        else:
            assert "partition" in json.dumps(result).lower(), result
    statuses = drills.wait_for_runs(site.platform, list(launched.values()), timeout=480)
    for name, run_id in launched.items():
        assert statuses[run_id] == "FAILURE", name
        log = drills.run_log(site.platform, run_id)
        _, offending = traversal_keys["relative team" if name.startswith("prediction") else name]
        failures = log.step_failures()
        assert failures, name
        for step, error in failures.items():
            assert offending in error, f"{name}: {step} does not name {offending}: {error}"
        assert log.materialized() == [], name
    team_failure = drills.run_log(site.platform, launched["relative team"]).step_failures()["raw_data"]
    assert f"team '../{ESCAPE}' is not one of" in team_failure

    # Nothing was created where a followed path would have led, nor anywhere under the test's folders.
    assert not list(site.tmp.rglob(f"*{ESCAPE}*"))
    assert not list(site.tmp.parent.glob(f"*{ESCAPE}*")) and not os.path.exists(f"/tmp/{ESCAPE}")


@slow
def test_an_asset_subset_cannot_read_or_write_outside_the_storage_root(site, current_week):
    """Materializing only the splits (the UI's "Materialize selected") for a key that climbs out of the
    storage root: a raw_data table planted where the climbing path leads must be neither read nor
    overwritten."""
    planted_dir = site.tmp / "planted-by-drill"
    planted_dir.mkdir()
    planted = planted_dir / f"{current_week}.parquet"
    cases.load_labeled_cases(UPath(site.platform.landing_root), "team_a", current_week).to_parquet(planted, index=False)
    before = planted.read_bytes()
    # <storage>/assets/raw_data/<team>/<week>.parquet with this team is the planted file.
    key = f"../../../planted-by-drill|{current_week}"
    assert (site.storage / "assets" / "raw_data" / key.split("|")[0] / f"{current_week}.parquet").resolve() == planted

    result = drills.launch_raw(
        site.platform,
        "turbine-training",
        "training_pipeline",
        key,
        drills.IN_PROCESS,
        asset_selection=["train_split", "test_split"],
    )
    if result["__typename"] == "LaunchRunSuccess":
        run_id = result["run"]["runId"]
        assert site.platform.wait_for_run(run_id, timeout=300) == "FAILURE"
        log = drills.run_log(site.platform, run_id)
        assert log.materialized() == []
        assert "planted" in log.step_failures()["splits"]  # the refusal names the key
    else:
        assert "partition" in json.dumps(result).lower(), result
    assert planted.read_bytes() == before
    assert sorted(p.name for p in planted_dir.iterdir()) == [planted.name]


def test_team_names_and_weeks_that_leave_the_landing_root_are_rejected_at_the_core(tmp_path, current_week):
    root = UPath(tmp_path / "landing")
    zone = LandingZone(root=str(root))
    predictions = PartitionFolders(root=str(tmp_path / "predictions"))
    for team in ("../x", "/etc", "..", "team_a/../../x", "team_a/..", "\\..\\x"):
        for kind in (landing.LABELED, landing.SCORING):
            with pytest.raises(landing.LandingError, match="invalid team name"):
                landing.partition_dir(root, kind, team, current_week)
        with pytest.raises(landing.LandingError, match="invalid team name"):
            landing.landed_weeks(zone.path(), landing.LABELED, team)
        with pytest.raises(landing.LandingError, match="invalid team name"):
            cases.load_labeled_cases(zone.path(), team, current_week)
        with pytest.raises(landing.LandingError, match="invalid team name"):
            predictions.folder(team, current_week)
    for week in ("../2026-11-22", "/etc", "2026-11-22/../../x", "2026-11-22/..", "../../../etc/passwd"):
        with pytest.raises(landing.LandingError, match="invalid week"):
            landing.partition_dir(root, landing.LABELED, "team_a", week)
        with pytest.raises(landing.LandingError, match="invalid week"):
            predictions.folder("team_a", week)
    with pytest.raises(landing.LandingError, match="unknown landing kind"):
        landing.partition_dir(root, "../labeled", "team_a", current_week)
    assert not (tmp_path / "x").exists() and not (tmp_path / "predictions").exists()


def test_a_week_that_leaves_the_landing_root_gets_the_landing_zone_error_from_the_loader(tmp_path):
    with pytest.raises(landing.LandingError, match="invalid week"):
        cases.load_labeled_cases(UPath(tmp_path), "team_a", "../../etc")


def test_registry_team_names_that_leave_the_registry_root_are_rejected(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    for team in ("../x", "/etc", "..", ".hidden", "team_a/../../x", "team_a/.."):
        for read in (registry.versions, registry.serving, registry.events):
            with pytest.raises(ValueError, match="invalid team name"):
                read(team)
        with pytest.raises(ValueError, match="invalid team name"):
            registry.get(team, 1)
    assert not any(tmp_path.rglob("*"))


def test_settings_refuse_team_names_that_would_become_paths():
    for teams in ("../x", "team_a,/etc", "team_a,.."):
        with pytest.raises(ValueError, match="TURBINE_TEAMS: invalid team names"):
            Settings.from_env({"TURBINE_TEAMS": teams})


# -- 1. kill -9 of a training run mid-epoch --------------------------------------------------------------


@slow
def test_kill_9_mid_epoch_leaves_registry_and_artifacts_intact_and_the_partition_reruns(site, killed_partition):
    """A training run is killed with SIGKILL (the run worker, where the in-process executor trains, and
    any child process) while tf_model is between epochs, as an OOM kill or a lost node would.

    The code server notices the dead run worker and marks the run failed (Dagster's DefaultRunLauncher
    has no run-worker health check; the gRPC server's orphan check does it). Then: the serving pointer
    and every registry file of the team are byte-identical, no temporary or half-written file is
    visible, every stored model/table/report loads, the only new files are the outputs the run reported
    complete, and a rerun of the partition succeeds and registers the next version.
    """
    platform, storage = site.platform, site.storage
    team = killed_partition.split("|")[0]
    drills.wait_for_runs(platform, [*site.bad_runs.values(), *site.launched_traversal_runs()], timeout=480)
    before = drills.snapshot(storage)  # nothing else writes from here on

    run_id = platform.launch(
        "turbine-training", "training_pipeline", killed_partition, {**drills.IN_PROCESS, "ops": LONG_TRAINING}
    )

    def epoch_lines() -> list[str]:
        return [m for m in drills.run_log(platform, run_id).messages() if m.startswith("fold ") and " epoch " in m]

    drills.wait_for(lambda: len(epoch_lines()) >= 2, timeout=400, what="tf_model epoch lines in the run log")
    killed = drills.kill_process_tree(drills.run_log(platform, run_id).run_worker_pid())
    epochs_before_kill = len(epoch_lines())

    assert platform.wait_for_run(run_id, timeout=60) == "FAILURE"
    log = drills.run_log(platform, run_id)
    assert any("terminated by signal 9 (SIGKILL)" in m for m in log.messages()), log.messages()[-5:]
    assert not any(alive(pid) for pid in killed)
    assert 2 <= epochs_before_kill < 400
    assert "tf_model" not in {asset for asset, _ in log.materialized()}

    # The registry: byte-identical, the seeded champion still serves.
    assert drills.snapshot(storage, drills.team_registry(team)) == seeded_registry_of(site, team)
    assert site.registry().serving(team).version == 1
    assert [v.version for v in site.registry().versions(team)] == [1]
    # Storage: nothing changed or vanished; the only new files are outputs the run reported complete, and the
    # parse cache's entries of the team's landed files (raw_data parsed them; they load, as checked below).
    after = drills.snapshot(storage)
    assert set(before) <= set(after) and all(after[path] == digest for path, digest in before.items())
    new_files = set(after) - set(before)
    cached = {path for path in new_files if path.startswith("assets/parse-cache/")}
    assert new_files - cached == drills.files_of_materializations(storage, log.materialized())
    assert all(path.startswith(f"assets/parse-cache/labeled/team={team}/") for path in cached), cached
    assert not drills.asset_file(storage, "tf_model", killed_partition).exists()
    assert drills.artifact_problems(storage) == []

    rerun_id = platform.launch(
        "turbine-training", "training_pipeline", killed_partition, {**drills.IN_PROCESS, "ops": SMALL_TRAINING}
    )
    assert platform.wait_for_run(rerun_id, timeout=480) == "SUCCESS", platform.step_failures(rerun_id)
    versions = site.registry().versions(team)
    assert [(v.version, v.run_id) for v in versions] == [(1, None), (2, rerun_id)]
    assert drills.asset_file(storage, "tf_model", killed_partition).exists()
    assert drills.artifact_problems(storage) == []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- 2. a daemon restart between sensor ticks ------------------------------------------------------------


@slow
def test_daemon_crash_between_sensor_ticks_creates_no_duplicate_retraining_run(site, today, drift_partition):
    """The real dagster-daemon, crashed and restarted on the same DAGSTER_HOME.

    A drift_report saying drift is recorded for a partition (as the prediction side records it). The
    running daemon's drift_retraining_sensor requests its retraining run. Then the whole platform is
    killed with SIGKILL and, while it is down, the sensor's stored cursor is put back to what it was
    before that tick: the worst crash there is, the run submitted but the cursor never saved. After the
    restart the sensor reads the same drift event again and asks for the same run key
    (``drift-<storage id>``); Dagster must skip it because a run with that key exists. Asserted on the
    daemon's own tick record and the run list. The next tick is due 60 s (minimum_interval_seconds) after
    the last one; the drill waits for that one tick after the restart, not two, to stay within minutes.
    """
    key = f"drift-{site.drift_storage_id}"
    home = site.platform.home
    with dg.DagsterInstance.from_config(str(home)) as instance:
        ticks = drills.wait_for(
            lambda: [t for t in drills.sensor_ticks(instance) if key in t.run_keys],
            timeout=180,
            what=f"a drift sensor tick requesting {key}",
        )
        requesting = ticks[-1]
        assert len(requesting.run_ids) == 1
        first_run = requesting.run_ids[0]
        older = [t for t in drills.sensor_ticks(instance) if t.timestamp < requesting.timestamp]
        cursor_before = older[0].cursor if older else None
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": key}))
        assert [r.run_id for r in runs] == [first_run]
        assert runs[0].tags["dagster/partition"] == drift_partition and runs[0].tags["trigger"] == "drift"
    drills.wait_for_runs(site.platform, [first_run], timeout=300)

    drills.crash(site.platform)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        drills.set_sensor_cursor(instance, cursor_before)
    restarted_at = time.time()
    site.platform = start_platform(site.tmp, as_of=today, demo_args=f"{DEMO_ARGS} --if-missing")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        after = drills.wait_for(
            lambda: [t for t in drills.sensor_ticks(instance) if t.timestamp > restarted_at],
            timeout=180,
            what="a drift sensor tick after the restart",
        )
        replayed = after[-1]
        assert key in replayed.run_keys, replayed  # the crash window was replayed: the same key asked for again
        assert replayed.run_ids == [] and replayed.status == TickStatus.SKIPPED, replayed
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": drills.DRIFT_SENSOR}))
        assert [r.run_id for r in runs] == [first_run]

        # The daemon writes the finished tick first and the sensor's state (its cursor) just after: await both.
        def saved_after() -> int:
            cursor = drills.sensor_state(instance).instigator_data.cursor
            return json.loads(cursor)["after"] if cursor else 0

        drills.wait_for(
            lambda: saved_after() >= site.drift_storage_id,
            timeout=30,
            what=f"the drift sensor's saved cursor past drift event {site.drift_storage_id}",
        )
