import datetime as dt

import pandas as pd
import pyarrow.parquet as pq
import pytest
from upath import UPath

from turbine_dagster.core import landing
from turbine_dagster.core.demo_data import DemoDataWriter, DriftInjection, recent_weeks, write_demo_data
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, TARGET


def test_recent_weeks_are_sundays_ending_with_the_current_week():
    assert recent_weeks(3, today=dt.date(2026, 11, 27)) == ["2026-11-08", "2026-11-15", "2026-11-22"]
    assert recent_weeks(1, today=dt.date(2026, 11, 22)) == ["2026-11-22"]


def test_demo_data_is_deterministic_and_ids_unique(tmp_path):
    first = DemoDataWriter(seed=3).cases("team_a", "2026-11-22", 300, "L")
    second = DemoDataWriter(seed=3).cases("team_a", "2026-11-22", 300, "L")
    pd.testing.assert_frame_equal(first, second)
    assert first[CASE_ID].is_unique
    assert set(first[TARGET]) == {0, 1}
    other_team = DemoDataWriter(seed=3).cases("team_b", "2026-11-22", 300, "L")
    assert not set(first[CASE_ID]) & set(other_team[CASE_ID])


def test_scoring_data_is_written_in_row_groups_without_labels(tmp_path):
    root = UPath(tmp_path)
    write_demo_data(root, ["team_a"], ["2026-11-22"], labeled_rows=10, scoring_rows=2_500, chunk_rows=1_000)
    path = landing.partition_dir(root, landing.SCORING, "team_a", "2026-11-22") / "cases.parquet"
    metadata = pq.ParquetFile(path.path).metadata
    assert (metadata.num_rows, metadata.num_row_groups) == (2_500, 3)
    table = pq.read_table(path.path).to_pandas()
    assert TARGET not in table.columns and table[CASE_ID].is_unique


def test_drift_injection_shifts_only_the_chosen_features():
    writer = DemoDataWriter(seed=0)
    drift = [DriftInjection("team_a", "2026-11-22", ("mean radius",), 2.0)]
    plain = writer.cases("team_a", "2026-11-22", 500, "S")
    shifted = writer.cases("team_a", "2026-11-22", 500, "S", drift)
    delta = (shifted[list(FEATURE_COLUMNS)] - plain[list(FEATURE_COLUMNS)]).abs().max()
    assert delta["mean radius"] > 1 and delta.drop("mean radius").max() == 0


def test_drift_argument_is_parsed_and_checked():
    parsed = DriftInjection.parse("team_b:2026-11-22:mean radius,mean texture:1.5")
    assert parsed == DriftInjection("team_b", "2026-11-22", ("mean radius", "mean texture"), 1.5)
    with pytest.raises(ValueError, match="unknown feature"):
        DriftInjection.parse("team_b:2026-11-22:radius:1")
