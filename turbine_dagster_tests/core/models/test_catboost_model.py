from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from turbine_dagster.core.models.catboost_model import mean_feature_importance, train_catboost_model
from turbine_dagster.core.models.interface import predict_malignant_proba
from turbine_dagster.core.models.params import CatBoostSearchParams
from turbine_dagster.core.schema import FEATURE_COLUMNS, MALIGNANT, TARGET
from turbine_dagster.presentation.training import feature_importance_markdown
from turbine_dagster_tests.core.models.helpers import mean_malignant_proba_by_class

SPACE = {"depth": [2, 3], "learning_rate": [0.1, 0.3]}
FAST = CatBoostSearchParams(param_grid=SPACE, cv_folds=3, iterations=40, early_stopping_rounds=10)


@pytest.fixture(scope="module")
def grid_searched(split, tmp_path_factory):
    candidate_lines: list[str] = []
    working_dir = tmp_path_factory.mktemp("catboost_cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(working_dir)
        result = train_catboost_model(*split, FAST, on_candidate=candidate_lines.append)
    return result, candidate_lines, working_dir


def test_grid_search_picks_values_from_the_configured_space(grid_searched):
    result, _, _ = grid_searched

    assert set(result.best_params) == set(SPACE)
    assert all(value in SPACE[name] for name, value in result.best_params.items())


def test_reports_one_line_per_grid_candidate(grid_searched):
    _, candidate_lines, _ = grid_searched

    assert len(candidate_lines) == 4
    assert candidate_lines[0].startswith("candidate 1/4: cv Logloss ")
    assert candidate_lines[-1].startswith("candidate 4/4: ")


def test_randomized_search_samples_n_iter_candidates_from_the_space(split):
    candidate_lines: list[str] = []
    params = CatBoostSearchParams(search="randomized", param_grid=SPACE, n_iter=2, iterations=20)

    result = train_catboost_model(*split, params, on_candidate=candidate_lines.append)

    assert len(candidate_lines) == 2
    assert all(value in SPACE[name] for name, value in result.best_params.items())


def test_result_describes_the_run(grid_searched):
    result, _, _ = grid_searched

    assert result.cv_metric == "Logloss"
    assert 0 < result.cv_score < 1
    assert 0 <= result.best_iteration < FAST.iterations
    assert result.model.tree_count_ == result.best_iteration + 1  # use_best_model trimmed the trees
    assert result.device == "CPU"
    assert result.seconds > 0


def test_feature_importance_covers_every_feature_most_important_first(grid_searched):
    result, _, _ = grid_searched
    importance = result.feature_importance

    assert sorted(importance["feature"]) == sorted(FEATURE_COLUMNS)
    assert importance["importance"].is_monotonic_decreasing


def test_writes_no_files_into_the_working_directory(grid_searched):
    _, _, working_dir = grid_searched

    assert list(working_dir.iterdir()) == []


def test_predicts_probability_of_malignant(grid_searched, split):
    result, _, _ = grid_searched
    _, validation = split

    malignant, benign = mean_malignant_proba_by_class(result.model, validation)

    assert malignant > benign


def test_prediction_reads_features_by_name_not_by_position(grid_searched, split):
    result, _, _ = grid_searched
    _, validation = split
    reversed_columns = validation[list(reversed(validation.columns))]

    np.testing.assert_array_equal(
        predict_malignant_proba(result.model, reversed_columns), predict_malignant_proba(result.model, validation)
    )


def test_feature_importance_plot_is_an_embedded_png(grid_searched):
    result, _, _ = grid_searched

    markdown = feature_importance_markdown(result.feature_importance, top=5)

    assert markdown.startswith("![Feature importance](data:image/png;base64,")


def test_single_class_split_is_refused_naming_where(split):
    train, validation = split
    malignant_only = train[train[TARGET] == MALIGNANT]

    with pytest.raises(ValueError, match=r"train split for team_a\|2026-11-22 has a single class \(malignant only"):
        train_catboost_model(malignant_only, validation, FAST, where="team_a|2026-11-22")


def test_empty_search_space_is_refused():
    with pytest.raises(ValueError, match=r"no candidate values for \['depth'\]"):
        CatBoostSearchParams(param_grid={"depth": []})


def test_feature_importance_is_averaged_over_the_fold_models_most_important_first():
    folds = [
        SimpleNamespace(feature_importance=pd.DataFrame({"feature": ["a", "b"], "importance": [10.0, 30.0]})),
        SimpleNamespace(feature_importance=pd.DataFrame({"feature": ["b", "a"], "importance": [10.0, 50.0]})),
    ]
    mean = mean_feature_importance(folds)
    assert mean.to_dict("records") == [{"feature": "a", "importance": 30.0}, {"feature": "b", "importance": 20.0}]


def test_catboost_trains_on_every_gpu_it_sees_by_default_and_on_the_cpu_without_one(monkeypatch):
    from turbine_dagster.core.models import catboost_model

    assert CatBoostSearchParams().use_gpu
    monkeypatch.setattr(catboost_model, "_visible_gpus", lambda: 0)
    assert catboost_model._task_type(True) == ("CPU", "CPU")
    monkeypatch.setattr(catboost_model, "_visible_gpus", lambda: 4)
    assert catboost_model._task_type(True) == ("GPU", "GPU (4 devices)")
    assert catboost_model._task_type(False) == ("CPU", "CPU")
    classifier = catboost_model._classifier(CatBoostSearchParams(), "GPU")
    assert classifier.get_params()["task_type"] == "GPU" and "devices" not in classifier.get_params()  # all it sees
