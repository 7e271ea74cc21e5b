"""Transient storage errors are retried with backoff; data errors and storage errors that would recur are final."""

from collections import defaultdict

import dagster as dg
import pytest

from turbine_dagster.core.storage import files
from turbine_dagster.defs.resources import LandingZone
from turbine_dagster.defs.retries import STORAGE_RETRY_POLICY
from turbine_dagster.defs.training.data_assets import raw_data, splits
from turbine_dagster_tests.defs.helpers import failure_messages, materialize, materialized_keys

FAULTS: dict[str, list[BaseException]] = defaultdict(list)
"""Errors still to raise, by where; module-level so that a retried step (new resource objects) meets the rest."""


@pytest.fixture(autouse=True)
def no_faults_left():
    FAULTS.clear()
    yield
    FAULTS.clear()


def inject(where: str) -> None:
    if FAULTS[where]:
        raise FAULTS[where].pop(0)


@pytest.fixture
def flaky_writes(monkeypatch):
    """Stored files are written as usual, except raw_data's, which meet the faults queued under ``write raw_data``
    (as an S3 PUT would)."""
    write = files.write_bytes_atomic

    def flaky(target, data):
        if "/raw_data/" in str(target):
            inject("write raw_data")
        write(target, data)

    monkeypatch.setattr(files, "write_bytes_atomic", flaky)


class FlakyLanding(LandingZone):
    """The landing zone, but listing it meets the faults queued under ``list landing``."""

    def path(self):
        inject("list landing")
        return super().path()


def events(result, kind: str, step: str) -> list:
    return [e for e in result.all_events if e.event_type_value == kind and e.step_key == step]


def test_every_asset_and_check_of_both_locations_retries_with_backoff():
    from turbine_dagster.locations.prediction import defs as prediction
    from turbine_dagster.locations.training import defs as training

    assert STORAGE_RETRY_POLICY.backoff == dg.Backoff.EXPONENTIAL and STORAGE_RETRY_POLICY.max_retries >= 2
    for defs in (training, prediction):
        graph = defs.resolve_asset_graph()
        nodes = [a.node_def for a in graph.assets_defs if a.is_executable]  # checks: in their asset's op or their own
        assert graph.asset_check_keys and all(
            any(key in a.check_keys for a in graph.assets_defs if a.is_executable) for key in graph.asset_check_keys
        )
        assert all(node.retry_policy == STORAGE_RETRY_POLICY for node in nodes), [
            node.name for node in nodes if node.retry_policy != STORAGE_RETRY_POLICY
        ]


def test_a_storage_write_that_times_out_once_is_retried_and_the_run_succeeds(settings, partition_key, flaky_writes):
    FAULTS["write raw_data"] = [TimeoutError("PUT raw_data: read timed out")]
    result = materialize([raw_data, splits], settings, partition_key)
    assert result.success, failure_messages(result)
    assert len(events(result, "STEP_UP_FOR_RETRY", "raw_data")) == 1
    assert materialized_keys(result) == {"raw_data", "train_split", "test_split"} and not FAULTS["write raw_data"]


def test_a_landing_listing_that_times_out_once_is_retried(settings, partition_key):
    FAULTS["list landing"] = [ConnectionResetError("ListObjectsV2: connection reset")]
    landing = FlakyLanding(root=settings.landing_root)
    result = materialize([raw_data], settings, partition_key, resources={"landing_zone": landing})
    assert result.success, failure_messages(result)
    assert len(events(result, "STEP_UP_FOR_RETRY", "raw_data")) == 1


def test_a_storage_error_that_would_recur_fails_at_once_naming_the_path(settings, partition_key, flaky_writes):
    FAULTS["write raw_data"] = [PermissionError("AccessDenied") for _ in range(4)]
    result = materialize([raw_data], settings, partition_key)
    assert not result.success
    assert not events(result, "STEP_UP_FOR_RETRY", "raw_data") and len(FAULTS["write raw_data"]) == 3
    message = failure_messages(result)
    assert (
        "raw_data: writing" in message and "raw_data/team_a/" in message and "PermissionError: AccessDenied" in message
    )


def test_a_data_error_is_not_retried(settings):
    result = materialize([raw_data], settings, "team_b|2026-01-04")  # no landing data there
    assert not result.success and not events(result, "STEP_UP_FOR_RETRY", "raw_data")
    assert "raw_data for team_b|2026-01-04" in failure_messages(result)


def test_a_failed_blocking_check_is_not_retried(settings, partition_key):
    run_config = {"ops": {"raw_data": {"config": {"min_cases_per_class": 1000}}}}
    result = materialize([raw_data, splits], settings, partition_key, run_config=run_config)
    assert not result.success and not events(result, "STEP_UP_FOR_RETRY", "raw_data")
    assert materialized_keys(result) == {"raw_data"}  # stored as landed; nothing downstream
