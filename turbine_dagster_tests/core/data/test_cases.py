import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from upath import UPath

from turbine_dagster.core.data import cases, landing
from turbine_dagster.core.data.demo import write_demo_data
from turbine_dagster.core.schema import BENIGN, CASE_ID, FEATURE_COLUMNS, MALIGNANT, TARGET
from turbine_dagster_tests.conftest import TEAM


def labeled_file(root: UPath, week: str) -> UPath:
    return landing.partition_dir(root, landing.LABELED, TEAM, week) / "cases.csv"


def test_load_labeled_cases_reads_every_week_up_to_the_partition(tmp_path):
    root = UPath(tmp_path)
    write_demo_data(root, [TEAM], ["2026-11-08", "2026-11-15", "2026-11-22"], labeled_rows=50, scoring_rows=0)
    frame = cases.load_labeled_cases(root, TEAM, "2026-11-15")
    assert len(frame) == 100
    assert sorted(frame[cases.WEEK].unique()) == ["2026-11-08", "2026-11-15"]
    assert frame[cases.SOURCE_FILE].iloc[0] == "labeled/team=team_a/week=2026-11-08/cases.csv"


def test_window_keeps_only_the_last_weeks(tmp_path):
    root = UPath(tmp_path)
    write_demo_data(root, [TEAM], ["2026-11-08", "2026-11-15", "2026-11-22"], labeled_rows=50, scoring_rows=0)
    frame = cases.load_labeled_cases(root, TEAM, "2026-11-22", window_weeks=2)
    assert sorted(frame[cases.WEEK].unique()) == ["2026-11-15", "2026-11-22"]


def test_missing_column_names_column_and_file(landing_root, week):
    path = labeled_file(landing_root, week)
    pd.read_csv(path).drop(columns=["mean radius"]).to_csv(path, index=False)
    with pytest.raises(
        landing.LandingError, match=r"column 'mean radius' missing in labeled/team=team_a/week=.*/cases\.csv"
    ):
        cases.load_labeled_cases(landing_root, TEAM, week)


def test_empty_partition_says_where_it_looked(tmp_path):
    with pytest.raises(cases.EmptyPartitionError, match="no labeled cases for team_a up to week 2026-11-22"):
        cases.load_labeled_cases(UPath(tmp_path), TEAM, "2026-11-22")


def test_text_in_numeric_column_is_kept_and_reported(landing_root, week):
    path = labeled_file(landing_root, week)
    frame = pd.read_csv(path).astype({"mean texture": object})
    frame.loc[[1, 2], "mean texture"] = "n/a?"
    frame.to_csv(path, index=False)
    loaded = cases.load_labeled_cases(landing_root, TEAM, week)
    outcome = cases.check_numeric_features(loaded)
    assert not outcome.passed
    assert [(p.column, p.rows) for p in outcome.problems] == [("mean texture", 2)]
    assert "cases.csv" in outcome.description()


@pytest.mark.parametrize("value, detail", [(np.nan, "is NaN"), (np.inf, "is infinite")])
def test_nan_and_inf_are_counted_per_column_and_file(landing_root, week, value, detail):
    path = labeled_file(landing_root, week)
    frame = pd.read_csv(path)
    frame.loc[[0, 5, 9], "worst area"] = value
    frame.to_csv(path, index=False)
    outcome = cases.check_finite_features(cases.load_labeled_cases(landing_root, TEAM, week))
    assert [(p.column, p.rows, p.detail) for p in outcome.problems] == [("worst area", 3, detail)]


def test_unknown_label_and_duplicate_ids_are_reported(landing_root, week):
    path = labeled_file(landing_root, week)
    frame = pd.read_csv(path)
    frame.loc[0, TARGET] = 2
    frame.loc[1, CASE_ID] = frame.loc[2, CASE_ID]
    frame.to_csv(path, index=False)
    loaded = cases.load_labeled_cases(landing_root, TEAM, week)
    assert cases.check_labels(loaded).problems[0].rows == 1
    assert cases.check_unique_case_ids(loaded).problems[0].rows == 2


def test_rows_per_class_minimum(landing_root, week):
    loaded = cases.load_labeled_cases(landing_root, TEAM, week)
    assert cases.check_rows_per_class(loaded, 10).passed
    assert not cases.check_rows_per_class(loaded.loc[loaded[TARGET] == 1], 10).passed


def test_row_problems_name_each_bad_column():
    frame = pd.DataFrame({c: [1.0, 2.0, 3.0] for c in FEATURE_COLUMNS}).astype({"mean area": object})
    frame.loc[0, "mean area"] = "abc"
    frame.loc[1, "mean radius"] = np.inf
    frame.loc[1, "worst area"] = np.nan
    reasons = cases.row_problems(frame)
    assert reasons.tolist() == ["'mean area' is not numeric", "'mean radius' is infinite; 'worst area' is NaN", ""]


def test_holdout_is_a_pure_function_of_the_case_id(landing_root, week):
    frame = cases.load_labeled_cases(landing_root, TEAM, week)
    development, holdout = cases.development_and_holdout(frame, cases.SplitParams(test_fraction=0.2, folds=3))
    assert len(development) + len(holdout) == len(frame)
    assert not set(development[CASE_ID]) & set(holdout[CASE_ID])
    assert len(holdout) == pytest.approx(0.2 * len(frame), abs=0.08 * len(frame))
    # More cases, another order: the cases held out before stay held out, and no other moves in. The new ids'
    # stored keys are their old ids': they are found stale and computed again.
    more = pd.concat([frame.sample(frac=1, random_state=3), frame.assign(**{CASE_ID: frame[CASE_ID] + "-new"})])
    _, holdout_of_more = cases.development_and_holdout(more, cases.SplitParams(test_fraction=0.2, folds=3))
    old_ids = set(frame[CASE_ID])
    assert {case for case in holdout_of_more[CASE_ID] if case in old_ids} == set(holdout[CASE_ID])
    new_ids = more[CASE_ID][~more[CASE_ID].isin(old_ids)]
    assert set(holdout_of_more[CASE_ID]) - old_ids == set(new_ids[cases.in_holdout(new_ids, 0.2)])


# Holdout membership as the function before the case-id keys computed it (sha256(id)[:8] / 2**64 < share, one id
# at a time): registered versions name this scheme, so no case may move.
PINNED_HOLDOUT = {
    0.2: {"844981", "team_a-2026-11-08-L000000002"},
    0.5: {"842517", "84458202", "844981", "team_a-2026-11-08-L000000000", "team_a-2026-11-08-L000000002"}
    | {"case-0f3a5c7e9b1d2f40"},
}
PINNED_IDS = [
    *("842302", "842517", "84300903", "84348301", "84358402", "843786", "844359", "84458202", "844981", "84501001"),
    *(f"team_a-2026-11-08-L00000000{i}" for i in range(4)),
    "case-0f3a5c7e9b1d2f40",
]


@pytest.mark.parametrize("share", sorted(PINNED_HOLDOUT))
def test_the_holdout_of_a_case_id_is_the_one_it_always_had(share):
    ids = pd.Series(PINNED_IDS, dtype=str)
    assert set(ids[cases.in_holdout(ids, share)]) == PINNED_HOLDOUT[share]
    frame = pd.DataFrame({CASE_ID: ids, TARGET: [MALIGNANT, BENIGN] * 7 + [MALIGNANT]})
    holdout_keys, _ = cases.case_keys(frame)
    assert set(ids[cases.holdout_mask(holdout_keys, share)]) == PINNED_HOLDOUT[share]


def test_folds_are_a_pure_function_of_the_case_id(landing_root, week):
    frame = cases.load_labeled_cases(landing_root, TEAM, week)
    development, _ = cases.development_and_holdout(frame, cases.SplitParams(folds=4))
    assert sorted(development[cases.FOLD].unique()) == [0, 1, 2, 3]
    assert development[cases.FOLD].value_counts().min() >= len(development) / 4 * 0.5  # a hash spreads them
    shuffled, _ = cases.development_and_holdout(frame.sample(frac=1, random_state=5), cases.SplitParams(folds=4))
    assert dict(zip(shuffled[CASE_ID], shuffled[cases.FOLD], strict=True)) == dict(
        zip(development[CASE_ID], development[cases.FOLD], strict=True)
    )
    assert cases.KEY_COLUMNS[0] not in development.columns and cases.KEY_COLUMNS[1] not in development.columns


def test_a_case_keeps_its_fold_when_a_week_is_added(tmp_path):
    root = UPath(tmp_path)
    write_demo_data(root, [TEAM], ["2026-11-08", "2026-11-15"], labeled_rows=150, scoring_rows=0)
    before, _ = cases.development_and_holdout(cases.load_labeled_cases(root, TEAM, "2026-11-08"))
    write_demo_data(root, [TEAM], ["2026-11-22"], labeled_rows=150, scoring_rows=0)
    after, _ = cases.development_and_holdout(cases.load_labeled_cases(root, TEAM, "2026-11-22"))
    fold_after = dict(zip(after[CASE_ID], after[cases.FOLD], strict=True))
    assert len(after) > len(before)
    assert all(fold_after[case] == fold for case, fold in zip(before[CASE_ID], before[cases.FOLD], strict=True))


def test_a_fold_without_a_class_is_refused_with_its_counts():
    # 5 malignant development cases, none in fold 0: enough of each class for 5 folds, yet fold 0 lacks one
    frame = pd.DataFrame({CASE_ID: [f"c{i}" for i in range(300)], TARGET: BENIGN, **{c: 1.0 for c in FEATURE_COLUMNS}})
    holdout_keys, fold_keys = cases.case_keys(frame)
    in_development = ~cases.holdout_mask(holdout_keys, 0.2)
    frame.loc[np.flatnonzero(in_development & (fold_keys % np.uint64(5) != 0))[:5], TARGET] = MALIGNANT
    frame.loc[np.flatnonzero(~in_development)[:1], TARGET] = MALIGNANT  # the holdout has both classes
    with pytest.raises(
        ValueError, match=r"fold\(s\) 0(, \d)* of 5 .* lack a class: class counts per fold \{0: \{'malignant': 0"
    ) as error:
        cases.development_and_holdout(frame, cases.SplitParams(folds=5))
    assert "land more cases or use fewer folds" in str(error.value)


def test_split_parameters_and_class_counts_are_validated(landing_root, week):
    frame = cases.load_labeled_cases(landing_root, TEAM, week)
    with pytest.raises(ValueError, match="test_fraction must be in"):
        cases.SplitParams(test_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2 folds"):
        cases.SplitParams(folds=1)
    few = pd.concat([frame[frame[TARGET] == MALIGNANT].head(3), frame[frame[TARGET] == BENIGN]])
    with pytest.raises(ValueError, match="need at least 5 of each class for 5 cross-fitting folds"):
        cases.development_and_holdout(few, cases.SplitParams(folds=5))


def test_fingerprint_changes_with_content(landing_root, week):
    frame = cases.load_labeled_cases(landing_root, TEAM, week)
    changed = frame.copy()
    changed.loc[0, "mean radius"] += 1
    assert cases.fingerprint(frame) == cases.fingerprint(frame.copy())
    assert cases.fingerprint(frame) != cases.fingerprint(changed)


def test_landed_labels_of_scored_cases_come_from_any_week(tmp_path):
    root = UPath(tmp_path)
    write_demo_data(root, [TEAM], ["2026-11-15", "2026-11-22"], labeled_rows=20, scoring_rows=0)
    earlier = cases.load_labeled_cases(root, TEAM, "2026-11-15")
    wanted = {earlier[CASE_ID].iloc[0], earlier[CASE_ID].iloc[5], "not-landed"}
    labels = cases.landed_labels(root, TEAM, wanted)
    assert set(labels[CASE_ID]) == wanted - {"not-landed"} and list(labels.columns) == [CASE_ID, TARGET]
    assert cases.landed_labels(root, TEAM, {"not-landed"}) is None
    assert cases.landed_labels(UPath(tmp_path / "empty"), TEAM, wanted) is None


def test_values_a_model_cannot_take_or_no_measurement_has_fail_the_value_check(landing_root, week):
    path = labeled_file(landing_root, week)
    frame = pd.read_csv(path)
    frame.loc[[0, 1], "worst area"] = 1e300  # finite in float64, infinite in the model's float32
    frame.loc[2, "mean radius"] = -3.0  # a radius is not negative
    frame.to_csv(path, index=False)

    outcome = cases.check_finite_features(cases.load_labeled_cases(landing_root, TEAM, week))

    assert [(p.column, p.rows, p.detail) for p in outcome.problems] == [
        ("mean radius", 1, "is negative (no measurement is)"),
        ("worst area", 2, "is beyond float32 range (infinite to the model)"),
    ]


def test_row_problems_name_out_of_range_and_negative_values():
    frame = pd.DataFrame({c: [1.0, 2.0, 3.0] for c in FEATURE_COLUMNS})
    frame.loc[0, "mean area"] = -1e300
    frame.loc[1, "mean radius"] = -0.5
    assert cases.row_problems(frame).tolist() == [
        "'mean area' is beyond float32 range (infinite to the model); 'mean area' is negative (no measurement is)",
        "'mean radius' is negative (no measurement is)",
        "",
    ]


def test_unusually_large_values_are_counted_not_refused():
    typical = load_breast_cancer(as_frame=True).frame[list(FEATURE_COLUMNS)].median()
    frame = pd.DataFrame({c: [typical[c]] * 3 for c in FEATURE_COLUMNS})
    bound = cases.UNUSUALLY_LARGE["worst area"]
    frame.loc[0, "worst area"] = bound * 2
    frame.loc[1, "worst area"] = bound  # at the bound: usual
    frame.loc[2, "mean radius"] = np.inf  # not a value: the other checks' business

    unusual = cases.unusually_large(frame)

    assert unusual.tolist() == [True, False, False]
    assert cases.check_finite_features(frame.drop(index=2).assign(source_file="f")).passed


def test_a_smaller_holdout_lies_inside_a_larger_one_so_the_gate_may_pair_across_them():
    frame = pd.DataFrame({"case_id": [f"case-{i}" for i in range(2000)]})
    small, large = cases.in_holdout(frame["case_id"], 0.1), cases.in_holdout(frame["case_id"], 0.2)
    assert small.sum() > 0 and not np.any(small & ~large)  # every case of the 0.1 holdout is in the 0.2 one

    scheme = cases.SplitParams(test_fraction=0.1).scheme
    assert cases.holdout_covers(cases.SplitParams(test_fraction=0.2).scheme, scheme)
    assert cases.holdout_covers(scheme, scheme)
    assert not cases.holdout_covers(scheme, cases.SplitParams(test_fraction=0.2).scheme)
    assert not cases.holdout_covers(None, scheme)
    assert not cases.holdout_covers("random-split:0.5", scheme)
    assert not cases.holdout_covers("case-id-sha256-holdout:garbled", scheme)
