"""The registry on S3 under lost responses, 409 conflicts and failing writes, from threads and processes.

Every request goes through ``S3FaultProxy`` in front of the session's moto server; registrations go to the
server directly (they are not under test here). What must hold, whatever the faults: one serving pointer
history (each move replaces exactly the version the previous move installed), every promotion a caller
was told of recorded once, and no event for a move that did not happen.
"""

import multiprocessing
import threading
import uuid

import pytest

from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.core.schema import FEATURE_COLUMNS, TARGET
from turbine_dagster_tests.conftest import create_bucket
from turbine_dagster_tests.deploy.s3_faults import (
    Fault,
    S3FaultProxy,
    promote_in_process,
    promote_versions,
    recall_decision,
)

BUCKET = "registry-faults"
POINTER = r"/serving\.json$"


@pytest.fixture
def proxy(s3_environment):
    with S3FaultProxy(s3_environment, seed=14) as running:
        yield running


@pytest.fixture
def root(s3_environment) -> str:
    create_bucket(BUCKET)
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"  # one registry per test in the shared bucket


@pytest.fixture(scope="module")
def model():
    import catboost
    from sklearn.datasets import load_breast_cancer

    cases = load_breast_cancer(as_frame=True).frame.sample(60, random_state=0)
    classifier = catboost.CatBoostClassifier(iterations=3, depth=2, logging_level="Silent", allow_writing_files=False)
    return classifier.fit(cases[list(FEATURE_COLUMNS)], cases[TARGET]), cases


def register(root: str, model, recalls: list[float], team: str = "team_a") -> dict[int, float]:
    """Versions 1..n of ``team`` with these malignant recalls, written without faults."""
    classifier, cases = model
    registry = ModelRegistry(root)
    numbers = {}
    for recall in recalls:
        version = registry.register(
            team,
            classifier,
            threshold=0.3,
            metrics={"malignant_recall": recall},
            partition=None,
            run_id=f"run-{recall}",
            data_version=None,
            reference=cases,
        )
        numbers[version.version] = recall
    return numbers


def through(proxy: S3FaultProxy, root: str) -> ModelRegistry:
    return ModelRegistry(root, storage_options={"endpoint_url": proxy.url})


def recall_gate(recalls: dict[int, float], version: int, seen: list | None = None):
    def decide(serving):
        if seen is not None:
            seen.append(serving.version if serving else None)
        return recall_decision(recalls[version], recalls[serving.version] if serving else None)

    return decide


def moves(registry: ModelRegistry, team: str = "team_a") -> list[tuple[str, int, int | None]]:
    return [
        (e["kind"], e["version"], e["previous_version"])
        for e in registry.events(team)
        if e["kind"] in ("promoted", "rollback")
    ]


def test_a_409_on_the_pointer_write_is_a_lost_race_and_the_promotion_decides_again(proxy, root, model):
    recalls = register(root, model, [0.96])
    proxy.inject(Fault("conflict", POINTER, times=1))
    seen = []

    decision = through(proxy, root).promote_if("team_a", 1, recall_gate(recalls, 1, seen))

    assert decision.promote and proxy.injected["conflict"] == 1
    assert seen == [None, None]  # decided again after the conflict
    assert through(proxy, root).serving("team_a").version == 1
    assert moves(through(proxy, root)) == [("promoted", 1, None)]


def test_a_first_pointer_write_whose_answer_is_lost_is_recognised_as_ours(proxy, root, model):
    recalls = register(root, model, [0.96])
    proxy.inject(Fault("drop", POINTER, times=1))  # applied; the client's retry then meets If-None-Match

    decision = through(proxy, root).promote_if("team_a", 1, recall_gate(recalls, 1))

    assert proxy.injected["drop"] == 1
    assert decision.promote and decision.reason.startswith("first champion")  # the gate's, not "already serves"
    assert moves(through(proxy, root)) == [("promoted", 1, None)]


def test_a_replacing_pointer_write_whose_answer_is_lost_records_its_promotion(proxy, root, model):
    recalls = register(root, model, [0.95, 0.98])
    registry = through(proxy, root)
    registry.promote_if("team_a", 1, recall_gate(recalls, 1))
    proxy.inject(Fault("drop", POINTER, times=1))  # applied; the client's retry then meets If-Match

    decision = registry.promote_if("team_a", 2, recall_gate(recalls, 2))

    assert proxy.injected["drop"] == 1
    assert decision.promote and "not worse than serving" in decision.reason
    assert moves(registry) == [("promoted", 1, None), ("promoted", 2, 1)]
    assert [v.status for v in registry.versions("team_a")] == ["retired", "serving"]


def test_a_rollback_whose_answer_is_lost_returns_its_event_and_does_not_raise(proxy, root, model):
    recalls = register(root, model, [0.95, 0.98])
    registry = through(proxy, root)
    for version in recalls:
        registry.promote_if("team_a", version, recall_gate(recalls, version))
    proxy.inject(Fault("drop", POINTER, times=1))

    event = registry.rollback("team_a", 1, reason="v0002 flags every case from clinic 7")

    assert proxy.injected["drop"] == 1
    assert (event["kind"], event["version"], event["previous_version"]) == ("rollback", 1, 2)
    assert registry.serving("team_a").version == 1
    assert moves(registry)[-1] == ("rollback", 1, 2)


def test_a_promotion_whose_event_cannot_be_written_does_not_move_the_pointer(proxy, root, model):
    recalls = register(root, model, [0.95, 0.98])
    registry = through(proxy, root)
    registry.promote_if("team_a", 1, recall_gate(recalls, 1))
    proxy.inject(Fault("fail", r"/events/[^/]*-promoted-v0002-"))  # every attempt, the client's retries included

    with pytest.raises(OSError):
        registry.promote_if("team_a", 2, recall_gate(recalls, 2))
    proxy.clear()

    assert registry.serving("team_a").version == 1  # no move without its event
    assert moves(registry) == [("promoted", 1, None)]
    assert registry.promote_if("team_a", 2, recall_gate(recalls, 2)).promote  # and the next attempt promotes
    assert moves(registry) == [("promoted", 1, None), ("promoted", 2, 1)]


def test_a_pointer_write_that_fails_leaves_no_event_for_a_move_that_did_not_happen(proxy, root, model):
    recalls = register(root, model, [0.95, 0.98])
    registry = through(proxy, root)
    registry.promote_if("team_a", 1, recall_gate(recalls, 1))
    proxy.inject(Fault("fail", POINTER))

    with pytest.raises(OSError):
        registry.promote_if("team_a", 2, recall_gate(recalls, 2))
    proxy.clear()

    assert registry.serving("team_a").version == 1
    assert moves(registry) == [("promoted", 1, None)]
    assert [v.status for v in registry.versions("team_a")] == ["serving", "candidate"]


# -- many promotions at once, with faults everywhere ---------------------------------------------------


def rising_recalls(n: int) -> list[float]:
    """Mostly rising recalls (0.900, 0.910, 0.905, 0.920, ...): later versions often win, so the pointer moves a lot."""
    steps = [k + 1 if k % 2 else max(k - 1, 0) for k in range(n)]  # 0, 2, 1, 4, 3, 6, 5, ...
    return [round(0.9 + 0.005 * step, 4) for step in steps]


NOISE = (
    Fault("drop", POINTER, probability=0.3),
    Fault("conflict", POINTER, probability=0.2),
    Fault("drop", r"/events/", probability=0.2),
    Fault("drop", POINTER, method="GET", probability=0.1),
)


def assert_one_history(registry: ModelRegistry, recalls: dict[int, float], decisions: list[dict]) -> dict:
    """The pointer history is one chain, each caller's decision is recorded once, and nothing else is."""
    history = registry.pointer_history("team_a")
    for before, after in zip([None, *history], history, strict=False):
        assert after["previous_version"] == (before["version"] if before else None), history
    assert registry.serving("team_a").version == history[-1]["version"]

    events = registry.events("team_a")
    promoted = [e for e in events if e["kind"] == "promoted"]
    assert [e["event_id"] for e in promoted] == [entry["event_id"] for entry in history]  # none lost, none phantom
    told = {d["version"]: d["promote"] for d in decisions}
    assert sorted(told) == sorted(recalls)
    recorded = {e["version"]: e["kind"] == "promoted" for e in events if e["kind"] in ("promoted", "refused")}
    assert len([e for e in events if e["kind"] in ("promoted", "refused")]) == len(recalls)  # one decision each
    assert recorded == told
    assert recalls[registry.serving("team_a").version] == max(recalls.values())  # a serial gate ends on the best
    return {"promotions": len(recalls), "pointer_moves": len(history)}


def test_concurrent_promotions_in_threads_under_faults_leave_one_pointer_history(proxy, root, model):
    recalls = register(root, model, rising_recalls(12))
    proxy.inject(*NOISE)
    workers = 4
    start = threading.Barrier(workers)
    decisions, failures = [], []

    def worker(versions):
        try:
            decisions.extend(promote_versions(root, proxy.url, "team_a", versions, recalls, start, 0.02))
        except BaseException as error:  # surfaced below: a thread's exception would otherwise vanish
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(list(recalls)[index::workers],)) for index in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    tally = proxy.tally()
    proxy.clear()

    assert failures == []
    figure = assert_one_history(ModelRegistry(root), recalls, decisions)
    print(f"threads: {figure}, {tally}")


def test_concurrent_promotions_in_processes_under_faults_leave_one_pointer_history(proxy, root, model):
    recalls = register(root, model, rising_recalls(16))
    proxy.inject(*NOISE)
    context = multiprocessing.get_context("spawn")  # no fork of a process whose S3 client runs an event loop
    workers = 4
    start, results = context.Barrier(workers), context.Queue()
    shares = [list(recalls)[index::workers] for index in range(workers)]
    processes = [
        context.Process(
            target=promote_in_process, args=(root, proxy.url, "team_a", share, recalls, start, 0.02, results)
        )
        for share in shares
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    tally = proxy.tally()
    proxy.clear()

    assert [status for status, _ in outcomes] == ["ok"] * workers, outcomes
    decisions = [decision for _, batch in outcomes for decision in batch]
    figure = assert_one_history(ModelRegistry(root), recalls, decisions)
    print(f"processes: {figure}, {tally}")


def test_a_pointer_replaced_between_its_etag_and_its_body_is_read_not_refused(proxy, root, model):
    recalls = register(root, model, [0.95, 0.98])
    ModelRegistry(root).promote_if("team_a", 1, recall_gate(recalls, 1))

    def another_writer():  # promotes v0002 after our HEAD of the pointer, before our GET of its body
        ModelRegistry(root).promote_if("team_a", 2, recall_gate(recalls, 2))

    proxy.inject(Fault("interleave", POINTER, method="GET", times=1, hook=another_writer))

    assert through(proxy, root).serving("team_a").version == 2  # the newer body; its older ETag fails safe on writes
    assert proxy.injected["interleave"] == 1
