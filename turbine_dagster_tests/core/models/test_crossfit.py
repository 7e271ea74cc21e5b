import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from turbine_dagster.core.data import cases
from turbine_dagster.core.models.catboost_model import (
    cross_fit_catboost_model,
    search_catboost_params,
    train_catboost_model,
)
from turbine_dagster.core.models.crossfit import P_MALIGNANT, cross_fit
from turbine_dagster.core.models.interface import predict_malignant_proba
from turbine_dagster.core.models.params import CatBoostSearchParams, TFTrainingParams
from turbine_dagster.core.models.tf_model import average_models, cross_fit_tf_model
from turbine_dagster.core.schema import CASE_ID
from turbine_dagster.core.storage.model_files import load_model, save_model

TINY_CATBOOST = CatBoostSearchParams(
    param_grid={"depth": [3]}, cv_folds=2, iterations=30, early_stopping_rounds=5, checkpoint_iterations=(5, 29)
)


@pytest.fixture(scope="module")
def development() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame.sample(300, random_state=1)
    frame.insert(0, CASE_ID, [f"wdbc-{row}" for row in frame.index])
    development, _ = cases.development_and_holdout(frame, cases.SplitParams(folds=3))
    return development


@pytest.fixture(scope="module")
def catboost_result(development, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("catboost_cwd"))
        return cross_fit_catboost_model(development, TINY_CATBOOST)


def test_each_case_is_scored_once_by_a_model_that_never_fitted_or_stopped_on_it(development, tmp_path):
    seen: dict[int, set[str]] = {}

    def recording_trainer(fit: pd.DataFrame, early_stop: pd.DataFrame, fold: int):
        seen[fold] = set(fit[CASE_ID]) | set(early_stop[CASE_ID])
        assert not set(fit[CASE_ID]) & set(early_stop[CASE_ID])
        return train_catboost_model(fit, early_stop, TINY_CATBOOST)

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        result = cross_fit(development, recording_trainer, lambda models: models[0])

    out_of_fold = result.out_of_fold
    assert sorted(out_of_fold[CASE_ID]) == sorted(development[CASE_ID])
    for fold, scored in out_of_fold.groupby(cases.FOLD):
        assert not set(scored[CASE_ID]) & seen[fold]
        assert seen[fold] | set(scored[CASE_ID]) == set(development[CASE_ID])
    assert out_of_fold[P_MALIGNANT].between(0, 1).all()


def test_catboost_ensemble_is_the_mean_raw_score_of_its_fold_models(catboost_result, development):
    raw = [
        model.predict(development.loc[:, model.feature_names_], prediction_type="RawFormulaVal")
        for model in (fold.model for fold in catboost_result.fold_results)
    ]
    p_benign = 1 / (1 + np.exp(-np.mean(raw, axis=0)))  # CatBoost's raw score is the log-odds of class 1
    np.testing.assert_allclose(predict_malignant_proba(catboost_result.model, development), 1 - p_benign, atol=1e-9)


def test_ensemble_checkpoints_exist_only_for_steps_every_fold_reached(catboost_result):
    reached = [{c.checkpoint_id for c in fold.checkpoints} for fold in catboost_result.fold_results]
    expected = set.intersection(*reached)
    assert [c.checkpoint_id for c in catboost_result.checkpoints][-1] == "best"
    assert {c.checkpoint_id for c in catboost_result.checkpoints} == expected
    best = catboost_result.checkpoints[-1]
    assert best.model is catboost_result.model
    # Metrics and threshold come from the out-of-fold scores of the best fold models.
    np.testing.assert_allclose(best.validation_p_malignant, catboost_result.out_of_fold[P_MALIGNANT])


def test_keras_ensemble_averages_the_fold_networks_and_survives_a_native_round_trip(development, tmp_path):
    result = cross_fit_tf_model(development, TFTrainingParams(hidden_units=(8,), epochs=2, patience=1))
    folds = [fold.model for fold in result.fold_results]
    expected = np.mean([predict_malignant_proba(model, development) for model in folds], axis=0)
    np.testing.assert_allclose(predict_malignant_proba(result.model, development), expected, atol=1e-6)
    save_model(result.model, tmp_path / "ensemble.keras")
    reloaded = load_model(tmp_path / "ensemble.keras")
    np.testing.assert_allclose(
        predict_malignant_proba(reloaded, development), predict_malignant_proba(result.model, development), atol=1e-6
    )
    assert average_models(folds[:1]) is folds[0]


def test_catboost_ensemble_survives_a_native_round_trip(catboost_result, development, tmp_path):
    save_model(catboost_result.model, tmp_path / "ensemble.cbm")
    np.testing.assert_array_equal(
        predict_malignant_proba(load_model(tmp_path / "ensemble.cbm"), development),
        predict_malignant_proba(catboost_result.model, development),
    )


def test_cross_fitting_needs_the_fold_column(development):
    with pytest.raises(ValueError, match="no 'fold' column"):
        cross_fit(development.drop(columns=[cases.FOLD]), lambda *args: None, lambda models: None)


def test_catboost_searches_once_per_cross_fitting_and_every_fold_fits_its_choice(development, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    candidate_lines: list[str] = []
    params = CatBoostSearchParams(param_grid={"depth": [2, 3]}, cv_folds=2, iterations=20, early_stopping_rounds=5)

    result = cross_fit_catboost_model(development, params, on_candidate=candidate_lines.append)

    assert len(candidate_lines) == 2  # the two candidates once, not once per fold
    searches = {id(fold.search) for fold in result.fold_results}
    assert len(searches) == 1 and len(result.fold_results) == 3
    assert result.fold_results[0].search.rows == len(development)
    for fold in result.fold_results:
        assert fold.model.get_params()["depth"] == fold.best_params["depth"]


def test_catboost_searches_a_stratified_sample_above_search_max_rows(development, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = CatBoostSearchParams(param_grid={"depth": [2]}, cv_folds=2, iterations=10, search_max_rows=100)

    search = search_catboost_params(development, params)

    assert search.rows == 100
    assert search.best_params == {"depth": 2}
