"""Shared fixtures: small demo landing data in temporary folders, settings pointing at them."""

import dataclasses
import datetime as dt
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from upath import UPath  # noqa: E402

from turbine_dagster.core.data.demo import recent_weeks, write_demo_data  # noqa: E402
from turbine_dagster.settings import Settings  # noqa: E402

TEAM = "team_a"
# "Today" for every test: a fixed past date, so that no test depends on the wall clock. Another fixed date
# runs the same tests under it: TURBINE_TEST_TODAY=2026-06-10 pytest ...
TODAY_VARIABLE = "TURBINE_TEST_TODAY"
DEFAULT_TODAY = "2026-11-11"
WEEKS_UP_TO_TODAY = 8  # the most weeks a test uses, today's week included: all must be partitions


@pytest.fixture(autouse=True)
def no_leftover_defs_state_storage():
    """Each test starts with no current defs-state storage.

    In dagster 1.13 ``DagsterInstance.__exit__`` disposes the instance but leaves its defs-state storage
    set as the current one; a later ``materialize`` without an instance then fails with "Attempted to
    resolve undefined DagsterInstance weakref". Order between tests must not matter.
    """
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield


@pytest.fixture(scope="session")
def today() -> dt.date:
    """The date the tests treat as today; pass it on explicitly (``recent_weeks(n, today=today)``).

    Dagster processes that a test starts (``dagster dev``, the daemon) keep the real clock: what they are
    asked for are these explicit, past weeks, which are partitions on any later date.
    """
    from turbine_dagster.defs.partitions import weeks_partitions

    value = os.environ.get(TODAY_VARIABLE, DEFAULT_TODAY)
    try:
        today = dt.date.fromisoformat(value)
    except ValueError:
        raise pytest.UsageError(f"{TODAY_VARIABLE}={value!r}: expected a date as YYYY-MM-DD") from None
    weeks = recent_weeks(WEEKS_UP_TO_TODAY, today=today)
    if not (weeks_partitions.has_partition_key(weeks[0]) and weeks_partitions.has_partition_key(weeks[-1])):
        earliest = weeks_partitions.start.date() + dt.timedelta(weeks=WEEKS_UP_TO_TODAY - 1)
        raise pytest.UsageError(
            f"{TODAY_VARIABLE}={value}: the tests use the weeks {weeks[0]} .. {weeks[-1]}, which must all be weekly "
            f"partitions (from {weeks_partitions.start:%Y-%m-%d} to the current week); choose a date from {earliest} "
            "on, not in the future"
        )
    return today


@pytest.fixture(scope="session")
def week(today) -> str:
    """The week of ``today``: the partition most tests land data for and materialize."""
    return recent_weeks(1, today=today)[0]


@pytest.fixture
def landing_root(tmp_path, week) -> UPath:
    root = UPath(tmp_path / "landing")
    write_demo_data(root, [TEAM], [week], labeled_rows=200, scoring_rows=500)
    return root


@pytest.fixture
def settings(tmp_path, landing_root) -> Settings:
    return dataclasses.replace(
        Settings.from_env({}), landing_root=str(landing_root), storage_root=str(tmp_path / "storage")
    )


@pytest.fixture
def partition_key(week) -> str:
    return f"{TEAM}|{week}"


@pytest.fixture(scope="session")
def s3_server():
    """A local S3 (moto's server) on a free port of 127.0.0.1, for the whole session; stopped after."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def set_s3_environment(monkeypatch, endpoint: str) -> None:
    """Credentials, region and endpoint of the local S3 in the environment, as in a deployment."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "TURBINE_S3_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_environment(s3_server, monkeypatch):
    """Credentials, region and endpoint in the environment, as in a deployment; clients made afresh."""
    import s3fs

    set_s3_environment(monkeypatch, s3_server)
    s3fs.S3FileSystem.clear_instance_cache()  # a cached client would keep an earlier endpoint
    yield s3_server
    s3fs.S3FileSystem.clear_instance_cache()


def create_bucket(name: str) -> None:
    import boto3

    client = boto3.client("s3")
    if name not in {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=name)
