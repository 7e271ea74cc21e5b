import datetime as dt

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.spatial import cKDTree
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from upath import UPath

from turbine_dagster.core.data import landing
from turbine_dagster.core.data.demo import DemoDataWriter, DriftInjection, recent_weeks, write_demo_data
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


# A demo partition as training would read it: one team, seven weeks of the default 150 labeled rows.
PARTITION_WEEKS = [(dt.date(2026, 10, 4) + dt.timedelta(weeks=n)).isoformat() for n in range(7)]


@pytest.fixture(scope="module")
def wdbc():
    features, target = load_breast_cancer(return_X_y=True)
    return features, target


@pytest.fixture(scope="module")
def demo_partition():
    writer = DemoDataWriter(seed=0)
    return pd.concat([writer.cases("team_a", week, 150, "L") for week in PARTITION_WEEKS], ignore_index=True)


def _cv_roc_auc(features, target) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5_000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return float(cross_val_score(model, features, target, cv=folds, scoring="roc_auc").mean())


def test_demo_test_rows_are_no_closer_to_training_rows_than_new_wdbc_cases_would_be(wdbc, demo_partition):
    features, _ = wdbc
    scale = features.std(axis=0)
    wdbc_nn = cKDTree(features / scale).query(features / scale, k=2)[0][:, 1]  # the nearest other case
    train, test = train_test_split(demo_partition, test_size=0.2, stratify=demo_partition[TARGET], random_state=0)
    columns = list(FEATURE_COLUMNS)
    demo_nn = cKDTree(train[columns].to_numpy() / scale).query(test[columns].to_numpy() / scale)[0]
    # Resampling the 569 cases gave a ratio of 0.18 and 80 % of test rows below WDBC's 5th percentile.
    assert np.median(demo_nn) >= 0.85 * np.median(wdbc_nn)
    assert np.mean(demo_nn < np.percentile(wdbc_nn, 5)) <= 0.10


def test_demo_classes_are_as_separable_as_wdbc_not_more(wdbc, demo_partition):
    wdbc_auc = _cv_roc_auc(*wdbc)
    demo_auc = _cv_roc_auc(demo_partition[list(FEATURE_COLUMNS)], demo_partition[TARGET])
    assert abs(demo_auc - wdbc_auc) <= 0.01 and demo_auc <= 0.998, (demo_auc, wdbc_auc)


def test_demo_cases_match_wdbc_per_class_means_stds_and_balance(wdbc):
    features, target = wdbc
    cases = DemoDataWriter(seed=0).cases("team_a", "2026-11-22", 20_000, "L")
    assert (cases[list(FEATURE_COLUMNS)] >= 0).all().all()
    assert abs((cases[TARGET] == 0).mean() - (target == 0).mean()) <= 0.02
    for label in (0, 1):
        demo = cases.loc[cases[TARGET] == label, list(FEATURE_COLUMNS)].to_numpy()
        real = features[target == label]
        # The team's instrument bias (σ 2 %) moves each mean and std by a few percent.
        assert np.abs(demo.mean(axis=0) / real.mean(axis=0) - 1).max() <= 0.10
        std_ratio = demo.std(axis=0) / real.std(axis=0)
        assert 0.85 <= std_ratio.min() and std_ratio.max() <= 1.15
