"""challenger_comparison reads only the labels (case_id and target) of the labeled cases, and counts the compared
ones."""

import pandas as pd
import pytest

from turbine_dagster.core.data import cases, landing
from turbine_dagster.core.data.demo import DemoDataWriter
from turbine_dagster.core.evaluation.selection import GateDecision
from turbine_dagster.core.models.catboost_model import train_catboost_model
from turbine_dagster.core.models.params import CatBoostSearchParams
from turbine_dagster.core.registry.registry import ModelRegistry
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, TARGET
from turbine_dagster_tests.conftest import TEAM
from turbine_dagster_tests.defs.helpers import failure_messages, materialize


@pytest.fixture(scope="module")
def model():
    frame = DemoDataWriter().cases(TEAM, "2026-01-04", 300, "L")
    params = CatBoostSearchParams(param_grid={"depth": [2]}, iterations=10, cv_folds=2)
    return train_catboost_model(frame.iloc[:200], frame.iloc[200:], params).model, frame


def test_challenger_comparison_reads_only_label_columns_and_counts_the_compared_cases(
    settings, landing_root, week, partition_key, model, monkeypatch, tmp_path
):
    from turbine_dagster.defs.prediction import assets

    fitted, reference = model
    registry = ModelRegistry(f"{settings.storage_root}/registry")
    for _ in range(2):  # the champion, then a challenger (the same model: labels are the point here)
        version = registry.register(
            TEAM,
            fitted,
            threshold=0.5,
            metrics={},
            partition=None,
            run_id=None,
            data_version=None,
            reference=reference.loc[:, list(FEATURE_COLUMNS)],
        )
        if version.version == 1:
            registry.promote_if(TEAM, 1, lambda current: GateDecision(True, "test"))
    folder = landing.partition_dir(landing_root, landing.SCORING, TEAM, week)
    scored = pd.concat([pd.read_parquet(path.path) for path in landing.data_files(folder, landing_root)])
    # Labels land for 30 of the scored cases, and for 40 cases that were never scored.
    labeled = pd.concat([scored.iloc[:30], reference.drop(columns=TARGET).iloc[:40]], ignore_index=True)
    labeled[TARGET] = [0, 1] * 35
    labeled.to_csv((landing.partition_dir(landing_root, landing.LABELED, TEAM, week) / "late.csv").path, index=False)

    asked, answered = [], []

    def recording(root, team, case_ids=None, cache=None):
        asked.append(case_ids)
        labels = cases.landed_labels(root, team, case_ids, cache=cache)
        answered.append(labels)
        return labels

    monkeypatch.setattr(assets, "landed_labels", recording)
    result = materialize([assets.challenger_comparison], settings, partition_key)
    assert result.success, failure_messages(result)
    assert asked == [None]  # no set of the week's scored ids (millions of rows) is built
    assert list(answered[0].columns) == [CASE_ID, TARGET] and set(scored[CASE_ID][:30]) <= set(answered[0][CASE_ID])
    metadata = result.asset_materializations_for_node("challenger_comparison")[0].metadata
    assert metadata["labeled_cases"].value == 30
