import json
import multiprocessing
import os
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: keep its C++ start-up chatter out

import catboost  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402

from turbine_dagster.core.evaluation.selection import GateDecision  # noqa: E402
from turbine_dagster.core.models.checkpoints import BEST  # noqa: E402
from turbine_dagster.core.models.interface import predict_malignant_proba  # noqa: E402
from turbine_dagster.core.models.logistic_model import train_logistic_model  # noqa: E402
from turbine_dagster.core.models.params import LogisticParams  # noqa: E402
from turbine_dagster.core.registry.registration import REFERENCE_MAX_ROWS  # noqa: E402
from turbine_dagster.core.registry.registry import ModelRegistry  # noqa: E402
from turbine_dagster.core.registry.versions import RegistryLookupError  # noqa: E402
from turbine_dagster.core.schema import FEATURE_COLUMNS, TARGET  # noqa: E402
from turbine_dagster.core.storage import model_files  # noqa: E402, F401  loaded before any fork: children inherit it
from turbine_dagster_tests.conftest import create_bucket  # noqa: E402

TEAM = "team_a"
BUCKET = "registry"


@pytest.fixture(scope="module")
def cases() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame.sample(120, random_state=0)


@pytest.fixture(scope="module")
def model(cases) -> catboost.CatBoostClassifier:
    classifier = catboost.CatBoostClassifier(iterations=10, depth=3, logging_level="Silent", allow_writing_files=False)
    return classifier.fit(cases[list(FEATURE_COLUMNS)], cases[TARGET])


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(str(tmp_path / "registry"))


def register(registry: ModelRegistry, model, cases: pd.DataFrame, recall: float, team: str = TEAM, run_id: str = "run"):
    return registry.register(
        team,
        model,
        threshold=0.3,
        metrics={"malignant_recall": recall, "roc_auc": 0.99},
        partition=f"{team}|2026-11-23",
        run_id=run_id,
        data_version="abc123",
        reference=cases,
    )


def recall_gate(challenger_recall: float, pause_s: float = 0.0):
    """A stand-in for the promotion gate, on the recalls stored with each version: promote unless worse."""

    def decide(serving):
        time.sleep(pause_s)  # stands in for scoring the serving model: widens the window a race needs
        if serving is None:
            return GateDecision(True, f"first champion for this team (recall {challenger_recall})")
        serving_recall = serving.metrics["malignant_recall"]
        if challenger_recall >= serving_recall:
            return GateDecision(True, f"promoted: recall {challenger_recall} not worse than serving {serving_recall}")
        return GateDecision(False, f"refused: recall {challenger_recall} worse than serving {serving_recall}")

    return decide


def test_register_stores_the_native_model_the_reference_and_the_entry(registry, model, cases):
    version = register(registry, model, cases, recall=0.97)

    assert (version.version, version.label, version.status) == (1, "v0001", "candidate")
    assert version.model_type == "catboost"
    assert version.artifact_uri.endswith("/team_a/versions/v0001/model.cbm")
    entry = json.loads((registry.root / TEAM / "versions" / "v0001" / "entry.json").read_text())
    assert entry["metrics"] == {"malignant_recall": 0.97, "roc_auc": 0.99}
    assert (entry["partition"], entry["run_id"], entry["data_version"], entry["threshold"]) == (
        "team_a|2026-11-23",
        "run",
        "abc123",
        0.3,
    )
    reloaded = registry.load_model(registry.get(TEAM, 1))
    np.testing.assert_array_equal(predict_malignant_proba(reloaded, cases), predict_malignant_proba(model, cases))
    pd.testing.assert_frame_equal(registry.load_reference(version), cases[list(FEATURE_COLUMNS)].reset_index(drop=True))
    assert [event["kind"] for event in registry.events(TEAM)] == ["registered"]


def test_a_logistic_model_registers_with_its_best_checkpoint_and_reloads_to_its_predictions(registry, split):
    train, validation = split
    trained = train_logistic_model(train, validation, LogisticParams())

    version = registry.register(
        TEAM,
        trained.model,
        threshold=trained.checkpoints[0].threshold,
        metrics={"malignant_recall": 0.97},
        partition=f"{TEAM}|2026-11-23",
        run_id="run",
        data_version=None,
        reference=train,
        checkpoints=trained.checkpoints,
    )

    assert version.model_type == "logistic" and version.artifact_uri.endswith("/v0001/model.logreg")
    reloaded = registry.load_model(registry.get(TEAM, 1))
    np.testing.assert_array_equal(
        predict_malignant_proba(reloaded, validation), predict_malignant_proba(trained.model, validation)
    )
    (best,) = registry.get(TEAM, 1).checkpoints
    assert best.checkpoint_id == BEST and best.artifact_uri.endswith("/v0001/checkpoints/best.logreg")
    np.testing.assert_array_equal(
        predict_malignant_proba(registry.load_model(version, BEST), validation),
        trained.checkpoints[0].validation_p_malignant,
    )


def test_the_drift_reference_keeps_features_only_and_at_most_the_cap(registry, model):
    rng = np.random.default_rng(0)
    rows = REFERENCE_MAX_ROWS + 500
    large = pd.DataFrame(rng.normal(size=(rows, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    large[TARGET] = 0
    reference = registry.load_reference(register(registry, model, large, recall=0.97))
    assert reference.shape == (REFERENCE_MAX_ROWS, len(FEATURE_COLUMNS))


def test_a_number_claimed_by_a_crashed_registration_is_never_reused(registry, model, cases):
    register(registry, model, cases, recall=0.97)
    crashed = registry.root / TEAM / "versions" / "v0002"
    crashed.mkdir(parents=True)
    (crashed / "claim.json").write_text("{}")  # claimed, then the process died before entry.json

    assert register(registry, model, cases, recall=0.97).version == 3
    assert [version.label for version in registry.versions(TEAM)] == ["v0001", "v0003"]


def test_unknown_versions_and_teams_get_errors_listing_what_exists(registry, model, cases):
    register(registry, model, cases, recall=0.97)
    with pytest.raises(RegistryLookupError, match="team 'team_a' has no version v0007 .*available: v0001"):
        registry.get(TEAM, 7)
    with pytest.raises(RegistryLookupError, match="'team_z' has no registered version .*teams with versions: team_a"):
        registry.get("team_z", 1)
    with pytest.raises(ValueError, match="invalid team name '../etc'"):
        registry.versions("../etc")
    assert registry.versions("team_new") == [] and registry.serving("team_new") is None


def test_the_first_champion_is_promoted(registry, model, cases):
    register(registry, model, cases, recall=0.96)
    decision = registry.promote_if(TEAM, 1, recall_gate(0.96))
    assert decision.promote and "first champion" in decision.reason
    assert registry.serving(TEAM).version == 1


def test_a_worse_challenger_is_refused_and_the_serving_pointer_is_unchanged(registry, model, cases):
    register(registry, model, cases, recall=0.98)
    registry.promote_if(TEAM, 1, recall_gate(0.98))
    register(registry, model, cases, recall=0.93)

    decision = registry.promote_if(TEAM, 2, recall_gate(0.93))

    assert not decision.promote
    assert registry.serving(TEAM).version == 1
    refused = registry.events(TEAM)[-1]
    assert (refused["kind"], refused["version"], refused["previous_version"]) == ("refused", 2, 1)
    assert refused["reason"] == decision.reason
    assert [v.status for v in registry.versions(TEAM)] == ["serving", "refused"]


def test_a_better_challenger_is_promoted(registry, model, cases):
    register(registry, model, cases, recall=0.95)
    registry.promote_if(TEAM, 1, recall_gate(0.95))
    register(registry, model, cases, recall=0.98)

    assert registry.promote_if(TEAM, 2, recall_gate(0.98)).promote
    assert registry.serving(TEAM).version == 2
    assert [v.status for v in registry.versions(TEAM)] == ["retired", "serving"]


def test_rollback_restores_the_earlier_version_and_records_the_event(registry, model, cases):
    for number, recall in ((1, 0.96), (2, 0.98)):
        register(registry, model, cases, recall=recall)
        registry.promote_if(TEAM, number, recall_gate(recall))

    event = registry.rollback(TEAM, 1, reason="v0002 flags every case from clinic 7")

    assert registry.serving(TEAM).version == 1
    assert (event["kind"], event["version"], event["previous_version"]) == ("rollback", 1, 2)
    assert registry.events(TEAM)[-1] == event
    assert [v.status for v in registry.versions(TEAM)] == ["serving", "retired"]


def test_rollback_only_returns_to_a_version_that_served(registry, model, cases):
    register(registry, model, cases, recall=0.98)
    registry.promote_if(TEAM, 1, recall_gate(0.98))
    register(registry, model, cases, recall=0.90)
    registry.promote_if(TEAM, 2, recall_gate(0.90))

    with pytest.raises(ValueError, match="v0002 of team team_a never served .*served before: none"):
        registry.rollback(TEAM, 2, reason="try it")
    with pytest.raises(ValueError, match="already serves"):
        registry.rollback(TEAM, 1, reason="again")
    with pytest.raises(ValueError, match="needs a reason"):
        registry.rollback(TEAM, 1, reason=" ")
    assert registry.serving(TEAM).version == 1


def test_a_version_that_served_stays_retired_when_its_event_is_lost(registry, model, cases):
    for number, recall in ((1, 0.96), (2, 0.98)):
        register(registry, model, cases, recall=recall)
        registry.promote_if(TEAM, number, recall_gate(recall))
    events = registry.root / TEAM / "events"
    for name in registry._names(events):
        if "-promoted-v0001-" in name:
            (events / name).unlink()  # the event of v0001's promotion never made it to storage

    assert [v.status for v in registry.versions(TEAM)] == ["retired", "serving"]
    assert registry.rollback(TEAM, 1, reason="v0002 flags every case from clinic 7")["version"] == 1


def test_a_registry_written_before_pointer_histories_reads_and_promotes_on(registry, model, cases):
    for _number, recall in ((1, 0.96), (2, 0.98), (3, 0.99)):
        register(registry, model, cases, recall=recall)
    for number, recall in ((1, 0.96), (2, 0.98)):
        registry.promote_if(TEAM, number, recall_gate(recall))
    team_dir = registry.root / TEAM
    pointer = json.loads((team_dir / "serving.json").read_text())
    old_pointer = {key: pointer[key] for key in ("team", "version", "since", "by")}  # as pointers were written
    (team_dir / "serving.json").write_text(json.dumps(old_pointer))
    for path in (team_dir / "events").iterdir():  # as the events of that time were written
        event = json.loads(path.read_text())
        path.write_text(json.dumps({key: event[key] for key in event if key not in ("moves_pointer", "details")}))

    def history():
        return [(move["version"], move["previous_version"]) for move in registry.pointer_history(TEAM)]

    assert [v.status for v in registry.versions(TEAM)] == ["retired", "serving", "candidate"]
    assert history() == [(1, None), (2, 1)]
    assert registry.promote_if(TEAM, 3, recall_gate(0.99)).promote
    assert history() == [(1, None), (2, 1), (3, 2)]
    assert [e["kind"] for e in registry.events(TEAM)][-3:] == ["promoted", "promoted", "promoted"]


RECALLS = (0.95, 0.99, 0.97, 0.96)


def register_and_promote(root: str, model, cases: pd.DataFrame, recall: float, start: threading.Barrier) -> None:
    registry = ModelRegistry(root)
    version = register(registry, model, cases, recall=recall, run_id=f"run-{recall}")
    start.wait(timeout=30)  # every worker holds a fresh version before any promotes
    registry.promote_if(TEAM, version.version, recall_gate(recall, pause_s=0.05))


def assert_consistent(registry: ModelRegistry) -> None:
    """What two runs finishing together must leave: the outcome of some serial order of promotions."""
    versions = registry.versions(TEAM)
    assert sorted(v.version for v in versions) == list(range(1, len(RECALLS) + 1))  # no number given twice
    events = registry.events(TEAM)  # every event parses
    registered = sorted(event["version"] for event in events if event["kind"] == "registered")
    assert registered == list(range(1, len(RECALLS) + 1))
    decisions = [event for event in events if event["kind"] in ("promoted", "refused")]
    assert sorted(event["version"] for event in decisions) == registered  # every version was decided once

    promoted = [event for event in decisions if event["kind"] == "promoted"]
    for before, after in zip([None, *promoted], promoted, strict=False):
        # Each promotion replaced exactly the version the previous one installed: none decided on a stale pointer.
        assert after["previous_version"] == (before["version"] if before else None)
    serving = registry.serving(TEAM)
    assert serving.version == promoted[-1]["version"]
    assert serving.metrics["malignant_recall"] == max(RECALLS)  # a serial gate always ends on the best


def test_concurrent_promotions_in_threads_leave_a_consistent_registry(registry, model, cases):
    start = threading.Barrier(len(RECALLS))
    failures = []

    def worker(recall):
        try:
            register_and_promote(str(registry.root), model, cases, recall, start)
        except BaseException as error:  # surfaced below: a thread's exception would otherwise vanish
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(recall,)) for recall in RECALLS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert_consistent(registry)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_concurrent_promotions_in_processes_leave_a_consistent_registry(registry, model, cases):
    # fork: children inherit the loaded model store; spawn would re-import TensorFlow (~10 s a process).
    context = multiprocessing.get_context("fork")
    start = context.Barrier(len(RECALLS))
    processes = [
        context.Process(target=register_and_promote, args=(str(registry.root), model, cases, recall, start))
        for recall in RECALLS
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0] * len(RECALLS)
    assert_consistent(registry)


@pytest.fixture
def s3_registry_root(s3_environment):
    create_bucket(BUCKET)
    return f"s3://{BUCKET}/registry"


def test_on_s3_versions_promotion_and_rollback_work_as_locally(s3_registry_root, model, cases):
    registry = ModelRegistry(s3_registry_root)
    for number, recall in ((1, 0.96), (2, 0.98)):
        version = register(registry, model, cases, recall=recall, team="team_s3")
        assert version.artifact_uri == f"{s3_registry_root}/team_s3/versions/v000{number}/model.cbm"
        assert registry.promote_if("team_s3", number, recall_gate(recall)).promote
    registry.rollback("team_s3", 1, reason="check the rollback on S3")

    serving = registry.serving("team_s3")
    assert serving.version == 1
    reloaded = registry.load_model(serving)
    np.testing.assert_array_equal(predict_malignant_proba(reloaded, cases), predict_malignant_proba(model, cases))
    assert registry.load_reference(serving).shape == (len(cases), len(FEATURE_COLUMNS))
    kinds = [event["kind"] for event in registry.events("team_s3")]
    assert kinds == ["registered", "promoted", "registered", "promoted", "rollback"]


def test_on_s3_a_promotion_that_lost_a_race_decides_again_on_the_new_pointer(s3_registry_root, model, cases):
    registry = ModelRegistry(s3_registry_root)
    for recall in (0.95, 0.99, 0.97):
        register(registry, model, cases, recall=recall, team="team_race")
    registry.promote_if("team_race", 1, recall_gate(0.95))
    pointer = registry.root / "team_race" / "serving.json"
    seen = []

    def decide(serving):
        seen.append(serving.version)
        if len(seen) == 1:  # another process promotes v0002 between our read and our write
            pointer.write_text(json.dumps({"team": "team_race", "version": 2, "since": "", "by": "promoted"}))
        return recall_gate(0.97)(serving)

    decision = registry.promote_if("team_race", 3, decide)

    assert seen == [1, 2]
    assert not decision.promote  # 0.97 would beat v0001 but not v0002, which really serves
    assert registry.serving("team_race").version == 2
    assert registry.events("team_race")[-1]["previous_version"] == 2


def test_the_gate_details_are_recorded_with_the_decision(registry, model, cases):
    register(registry, model, cases, recall=0.97)
    details = {"paired_counts": {"only_challenger": 3, "only_serving": 1}, "p_value": np.float64(0.31)}

    registry.promote_if(TEAM, 1, lambda serving: GateDecision(True, "first champion", details=details))

    promoted = registry.events(TEAM)[-1]
    assert (promoted["kind"], promoted["details"]) == (
        "promoted",
        {"paired_counts": {"only_challenger": 3, "only_serving": 1}, "p_value": 0.31},
    )


def test_the_split_scheme_is_kept_in_the_entry_and_old_entries_read_without_it(registry, model, cases):
    registry.register(
        TEAM,
        model,
        threshold=0.3,
        metrics={"malignant_recall": 0.97},
        partition=None,
        run_id="run",
        data_version=None,
        reference=cases,
        split_scheme="case_id_hash_70_15_15",
    )
    register(registry, model, cases, recall=0.97)
    old_entry = registry.root / TEAM / "versions" / "v0002" / "entry.json"
    written_before = json.loads(old_entry.read_text())
    del written_before["split_scheme"]  # as entries were written before the field existed
    old_entry.write_text(json.dumps(written_before))

    assert [v.split_scheme for v in registry.versions(TEAM)] == ["case_id_hash_70_15_15", None]
    assert registry.get(TEAM, 1).to_dict()["split_scheme"] == "case_id_hash_70_15_15"


def test_an_event_removed_between_listing_and_reading_is_skipped(registry, model, cases, monkeypatch):
    register(registry, model, cases, recall=0.97)
    listed = registry._names

    def names_with_one_gone(folder):  # a lost race's event, deleted by its writer after this listing
        extra = ["20261130T000000000000Z-promoted-v0009-deadbeef.json"] if folder.name == "events" else []
        return [*listed(folder), *extra]

    monkeypatch.setattr(registry, "_names", names_with_one_gone)

    assert [event["kind"] for event in registry.events(TEAM)] == ["registered"]
