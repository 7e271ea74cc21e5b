"""The IO manager builds every stored path from the partition key: keys are checked where paths are built."""

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from turbine_dagster.defs.io_managers import _NativeFormatIOManager

# Lets any key through, as a launch that bypasses Dagster's own partition validation would.
LAX = dg.MultiPartitionsDefinition(
    {
        "team": dg.StaticPartitionsDefinition(["team_a", "../../../outside", "Team_A", "/abs"]),
        "week": dg.StaticPartitionsDefinition(["2026-11-08", "..", "2026-11-3"]),
    }
)


def output_context(key, partitions_def=LAX):
    return dg.build_output_context(
        asset_key=dg.AssetKey("raw_data"), partition_key=key, asset_partitions_def=partitions_def
    )


@pytest.fixture
def manager(tmp_path) -> _NativeFormatIOManager:
    # Deep enough that a key climbing out of the root still lands inside tmp_path, where the test can see it.
    return _NativeFormatIOManager(UPath(tmp_path / "deep" / "er" / "assets"), "parquet")


def test_a_team_and_week_key_is_stored_under_team_and_week(manager, tmp_path):
    manager.handle_output(
        output_context(dg.MultiPartitionKey({"team": "team_a", "week": "2026-11-08"})), pd.DataFrame({"a": [1]})
    )
    assert (tmp_path / "deep" / "er" / "assets" / "raw_data" / "team_a" / "2026-11-08.parquet").exists()


@pytest.mark.parametrize(
    "team, week, expected",
    [
        ("../../../outside", "2026-11-08", "invalid team name '../../../outside'"),
        ("/abs", "2026-11-08", "invalid team name '/abs'"),
        ("Team_A", "2026-11-08", "invalid team name 'Team_A'"),
        ("team_a", "..", "invalid week '..'"),
        ("team_a", "2026-11-3", "invalid week '2026-11-3'"),
    ],
)
def test_a_key_that_could_leave_the_root_is_refused_before_anything_is_written(manager, tmp_path, team, week, expected):
    key = dg.MultiPartitionKey({"team": team, "week": week})
    with pytest.raises(ValueError, match=expected) as raised:
        manager.handle_output(output_context(key), pd.DataFrame({"a": [1]}))
    assert "raw_data" in str(raised.value)
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_a_plain_string_key_is_stored_where_its_multi_partition_key_is(manager, tmp_path):
    plain = dg.StaticPartitionsDefinition(["team_a|2026-11-08", "../x|2026-11-08"])
    manager.handle_output(output_context("team_a|2026-11-08", plain), pd.DataFrame({"a": [1]}))
    assert (tmp_path / "deep" / "er" / "assets" / "raw_data" / "team_a" / "2026-11-08.parquet").exists()
    with pytest.raises(ValueError, match="invalid team name"):
        manager.handle_output(output_context("../x|2026-11-08", plain), pd.DataFrame({"a": [1]}))
