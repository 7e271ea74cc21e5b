import numpy as np
import pandas as pd
import pytest

from turbine_dagster.core.data import landing
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, TARGET
from turbine_dagster.defs.training.data_assets import SPLIT_DESCRIPTIONS, raw_data, splits
from turbine_dagster_tests.conftest import TEAM
from turbine_dagster_tests.defs.helpers import (
    check_evaluations,
    column_types,
    failure_messages,
    materialize,
    materialized_keys,
)

DATA_ASSETS = [raw_data, splits]  # raw_data's checks run in its own step


def labeled_file(landing_root, week):
    return landing.partition_dir(landing_root, landing.LABELED, TEAM, week) / "cases.csv"


def test_raw_data_and_splits_materialize_for_a_partition(settings, partition_key, tmp_path):
    result = materialize(DATA_ASSETS, settings, partition_key)
    assert result.success, failure_messages(result)
    assert materialized_keys(result) == {"raw_data", *SPLIT_DESCRIPTIONS}
    assert all(e.passed for e in check_evaluations(result).values()) and len(check_evaluations(result)) == 5
    sizes = {
        name: result.asset_materializations_for_node("splits")[i].metadata["dagster/row_count"].value
        for i, name in enumerate(SPLIT_DESCRIPTIONS)
    }
    assert sum(sizes.values()) == 200
    stored = tmp_path / "storage" / "assets" / "train_split" / TEAM
    assert len(pd.read_parquet(next(stored.glob("*.parquet")))) == sizes["train_split"]


def test_raw_data_and_splits_carry_their_column_schema_and_row_count(settings, partition_key):
    result = materialize([raw_data, splits], settings, partition_key)
    assert result.success, failure_messages(result)
    raw = result.asset_materializations_for_node("raw_data")[0].metadata
    types = column_types(raw)
    assert list(types)[:2] == [CASE_ID, FEATURE_COLUMNS[0]] and len(types) == 37
    assert {types[CASE_ID], types[FEATURE_COLUMNS[0]], types[TARGET]} == {"string", "double", "int64"}
    assert list(types)[-2:] == ["holdout_key", "fold_key"]  # each case id's SHA-256 keys, from when it was parsed
    assert raw["dagster/row_count"].value == 200
    train, test = result.asset_materializations_for_node("splits")
    assert {"fold"} == set(column_types(train.metadata)) - set(types)
    assert {"holdout_scheme"} == set(column_types(test.metadata)) - set(types)
    assert {"holdout_key", "fold_key"} == set(types) - set(column_types(test.metadata))
    assert train.metadata["dagster/row_count"].value + test.metadata["dagster/row_count"].value == 200


def _edit(landing_root, week, change):
    path = labeled_file(landing_root, week)
    frame = pd.read_csv(path)
    change(frame)
    frame.to_csv(path, index=False)


def _text(frame):
    frame["mean texture"] = frame["mean texture"].astype(object)
    frame.loc[[3, 4], "mean texture"] = "twelve"


def _nan(frame):
    frame.loc[[3], "mean radius"] = np.nan


def _inf(frame):
    frame.loc[[3, 4, 5], "worst area"] = np.inf


def _label(frame):
    frame.loc[[3], TARGET] = 7


def _duplicate(frame):
    frame.loc[4, CASE_ID] = frame.loc[3, CASE_ID]


@pytest.mark.parametrize(
    "change, check, expected",
    [
        (_text, "feature_columns_numeric", "column 'mean texture' is not numeric: 2 row(s) in labeled/team=team_a"),
        (_nan, "no_missing_or_infinite_values", "column 'mean radius' is NaN: 1 row(s) in labeled/team=team_a"),
        (_inf, "no_missing_or_infinite_values", "column 'worst area' is infinite: 3 row(s) in labeled/team=team_a"),
        (_label, "labels_valid", "column 'target' holds a label other than 0 (malignant) or 1 (benign): 1 row(s)"),
        (_duplicate, "case_ids_unique", "column 'case_id' repeats a case id: 2 row(s) in labeled/team=team_a"),
    ],
)
def test_bad_values_fail_a_blocking_check_and_stop_downstream(
    settings, landing_root, week, partition_key, change, check, expected
):
    _edit(landing_root, week, change)
    result = materialize(DATA_ASSETS, settings, partition_key)
    assert not result.success
    evaluation = check_evaluations(result)[check]
    assert not evaluation.passed
    assert expected in evaluation.description and "cases.csv" in evaluation.description
    assert materialized_keys(result) == {"raw_data"}


def _assert_raw_data_fails(settings, partition_key, *fragments):
    result = materialize(DATA_ASSETS, settings, partition_key)
    assert not result.success
    message = failure_messages(result)
    assert f"raw_data for {partition_key}:" in message, message
    for fragment in fragments:
        assert fragment in message
    assert materialized_keys(result) == set()


def test_missing_column_fails_raw_data_naming_column_and_file(settings, landing_root, week, partition_key):
    _edit(landing_root, week, lambda frame: frame.pop("mean smoothness"))
    _assert_raw_data_fails(
        settings, partition_key, "column 'mean smoothness' missing in", f"labeled/team={TEAM}/week={week}/cases.csv"
    )


def test_file_that_is_not_csv_or_parquet_fails_raw_data(settings, landing_root, week, partition_key):
    (labeled_file(landing_root, week).parent / "cases.json").write_text("{}")
    _assert_raw_data_fails(settings, partition_key, "cases.json is not a CSV or Parquet file")


def test_empty_partition_fails_raw_data_with_guidance(settings, landing_root, week, partition_key):
    labeled_file(landing_root, week).unlink()
    _assert_raw_data_fails(
        settings, partition_key, f"no labeled cases for {TEAM} up to week {week}", "turbine-demo-data"
    )


def test_too_few_cases_of_a_class_fail_the_minimum_check(settings, partition_key):
    from dagster import RunConfig

    run_config = RunConfig(ops={"raw_data": {"config": {"min_cases_per_class": 1000}}})
    result = materialize(DATA_ASSETS, settings, partition_key, run_config=run_config)
    assert not check_evaluations(result)["enough_rows_per_class"].passed
    assert materialized_keys(result) == {"raw_data"}


def test_a_key_that_is_not_a_partition_fails_before_any_path_is_built(settings):
    import dagster as dg

    from turbine_dagster.defs.resources import local_resources
    from turbine_dagster.defs.training.data_assets import RawDataConfig

    resources = {"landing_zone": local_resources(settings)["landing_zone"]}
    with dg.build_asset_context(partition_key="../x|2026-11-22", resources=resources) as context:
        with pytest.raises(dg.Failure, match=r"partition '\.\./x\|2026-11-22': team '\.\./x' is not one of"):
            raw_data(context=context, config=RawDataConfig())


def _raw_data_metadata(result):
    return result.asset_materializations_for_node("raw_data")[0].metadata


def test_raw_data_records_the_layout_of_each_file(settings, landing_root, week, partition_key):
    from sklearn.datasets import load_breast_cancer

    folder = labeled_file(landing_root, week).parent
    load_breast_cancer(as_frame=True).frame.to_csv((folder / "sklearn_export.csv").path, index=False)
    result = materialize([raw_data], settings, partition_key)
    assert result.success, failure_messages(result)
    metadata = _raw_data_metadata(result)
    assert metadata["layouts"].value == {"internal": 200, "sklearn_frame": 569}
    assert "| sklearn_export.csv" not in metadata["source_files"].value  # files are named from the landing root
    assert f"labeled/team={TEAM}/week={week}/sklearn_export.csv | sklearn_frame" in metadata["source_files"].value


def test_unusually_large_values_are_kept_and_flagged(settings, landing_root, week, partition_key):
    from turbine_dagster.core.data.cases import UNUSUALLY_LARGE

    _edit(
        landing_root,
        week,
        lambda frame: frame.__setitem__(
            "worst area", [UNUSUALLY_LARGE["worst area"] * 3] * 2 + frame["worst area"].tolist()[2:]
        ),
    )
    result = materialize(DATA_ASSETS, settings, partition_key)
    assert result.success, failure_messages(result)
    metadata = _raw_data_metadata(result)
    assert metadata["rows_with_unusually_large_values"].value == 2
    assert "| worst area" in metadata["unusually_large_values"].value


def test_a_mistyped_week_folder_is_named_in_raw_data(settings, landing_root, partition_key):
    typo = landing_root / landing.LABELED / f"team={TEAM}" / "week=2026-11-3"
    typo.mkdir(parents=True)
    (typo / "cases.csv").write_text("case_id\n")
    result = materialize([raw_data], settings, partition_key)
    assert result.success, failure_messages(result)
    assert _raw_data_metadata(result)["ignored_landing_entries"].value == [f"labeled/team={TEAM}/week=2026-11-3"]


@pytest.mark.parametrize(
    "value, expected",
    [
        (1e300, "column 'worst area' is beyond float32 range (infinite to the model): 1 row(s)"),
        (-5.0, "column 'worst area' is negative (no measurement is): 1 row(s)"),
    ],
)
def test_values_no_model_should_get_fail_the_value_check(settings, landing_root, week, partition_key, value, expected):
    _edit(landing_root, week, lambda frame: frame.__setitem__("worst area", [value] + frame["worst area"].tolist()[1:]))
    result = materialize(DATA_ASSETS, settings, partition_key)
    evaluation = check_evaluations(result)["no_missing_or_infinite_values"]
    assert not evaluation.passed and expected in evaluation.description
    assert materialized_keys(result) == {"raw_data"}


def test_a_second_run_reads_unchanged_files_from_the_parse_cache(settings, landing_root, week, partition_key):
    first = materialize([raw_data], settings, partition_key)
    second = materialize([raw_data], settings, partition_key)
    assert first.success and second.success, failure_messages(second)
    assert (
        _raw_data_metadata(first)["files_parsed"].value,
        _raw_data_metadata(first)["files_reused_from_parse_cache"].value,
    ) == (1, 0)
    assert (
        _raw_data_metadata(second)["files_parsed"].value,
        _raw_data_metadata(second)["files_reused_from_parse_cache"].value,
    ) == (0, 1)
    assert _raw_data_metadata(second)["dagster/row_count"].value == 200
    assert all(e.passed for e in check_evaluations(second).values())


def test_a_parse_cache_that_cannot_be_written_is_a_warning_not_a_loss(settings, partition_key, monkeypatch):
    from turbine_dagster.core.storage import files

    write = files.write_bytes_atomic

    def refuse_cache(target, data):
        if "/parse-cache/" in str(target):
            raise PermissionError("AccessDenied")
        write(target, data)

    monkeypatch.setattr(files, "write_bytes_atomic", refuse_cache)
    result = materialize(DATA_ASSETS, settings, partition_key)
    assert result.success, failure_messages(result)
    metadata = _raw_data_metadata(result)
    assert metadata["dagster/row_count"].value == 200 and metadata["files_parsed"].value == 1
    assert "could not write parse cache entry" in metadata["parse_cache_problems"].value[0]
