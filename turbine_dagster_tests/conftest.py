"""Shared fixtures: small demo landing data in temporary folders, settings pointing at them."""

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from upath import UPath  # noqa: E402

from turbine_dagster.core.demo_data import recent_weeks, write_demo_data  # noqa: E402
from turbine_dagster.settings import Settings  # noqa: E402

TEAM = "team_a"


@pytest.fixture(scope="session")
def week() -> str:
    return recent_weeks(1)[0]


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
