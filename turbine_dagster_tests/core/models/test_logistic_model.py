import dataclasses

import numpy as np
import pandas as pd
import pytest

from turbine_dagster.core.models.checkpoints import BEST
from turbine_dagster.core.models.interface import feature_matrix, predict_malignant_proba
from turbine_dagster.core.models.logistic_model import (
    cross_fit_logistic_model,
    exported,
    fit_pipeline,
    train_logistic_model,
)
from turbine_dagster.core.models.logistic_regression import (
    LogisticModel,
    average_logistic_models,
    transformed_features,
)
from turbine_dagster.core.models.params import LogisticParams
from turbine_dagster.core.schema import CASE_ID, FEATURE_COLUMNS, MALIGNANT, TARGET
from turbine_dagster_tests.core.models.helpers import mean_malignant_proba_by_class


@pytest.fixture(scope="module")
def trained(split):
    return train_logistic_model(*split, LogisticParams())


@pytest.fixture(scope="module")
def cross_fitted(split):
    development = split[0].assign(fold=lambda frame: np.arange(len(frame)) % 3)
    return cross_fit_logistic_model(development, LogisticParams()), development


@pytest.mark.parametrize(
    "params",
    [LogisticParams(), LogisticParams(log1p=False, class_weight="balanced", C=0.1)],
    ids=["log1p", "raw-balanced"],
)
def test_the_exported_model_gives_sklearns_probability_of_malignant(split, params):
    train, validation = split
    pipeline = fit_pipeline(train, params)
    malignant_column = list(pipeline.classes_).index(MALIGNANT)

    expected = pipeline.predict_proba(transformed_features(feature_matrix(validation), params.log1p))[
        :, malignant_column
    ]

    np.testing.assert_allclose(
        predict_malignant_proba(exported(pipeline, params.log1p), validation), expected, rtol=0, atol=1e-9
    )


def test_malignant_cases_get_the_higher_probability_of_malignant(trained, split):
    malignant, benign = mean_malignant_proba_by_class(trained.model, split[1])

    assert malignant > 0.5 > benign


def test_training_keeps_only_the_best_checkpoint_with_its_validation_scores(trained, split):
    (best,) = trained.checkpoints

    assert best.checkpoint_id == BEST and best.model is trained.model
    assert best.step == trained.solver_iterations >= 1
    np.testing.assert_array_equal(best.validation_p_malignant, predict_malignant_proba(trained.model, split[1]))
    assert 0 < best.metrics["val_loss"] < 0.5 and best.metrics["val_roc_auc"] > 0.9


def test_coefficients_cover_every_feature_largest_magnitude_first(trained):
    coefficients = trained.coefficients

    assert sorted(coefficients["feature"]) == sorted(FEATURE_COLUMNS)
    assert coefficients["coefficient"].abs().is_monotonic_decreasing


def test_the_ensemble_logit_is_the_mean_of_the_fold_logits(cross_fitted, split):
    result, _ = cross_fitted
    features = feature_matrix(split[1])
    fold_logits = [fold.model.logit(features) for fold in result.fold_results]

    np.testing.assert_allclose(result.model.logit(features), np.mean(fold_logits, axis=0), rtol=1e-12, atol=1e-9)


def test_cross_fitting_scores_every_case_once_and_keeps_the_ensemble_as_best(cross_fitted):
    result, development = cross_fitted

    assert sorted(result.out_of_fold[CASE_ID]) == sorted(development[CASE_ID])
    assert len(result.fold_results) == 3
    assert [checkpoint.checkpoint_id for checkpoint in result.checkpoints] == [BEST]
    assert result.checkpoints[0].model is result.model


def test_averaging_one_model_returns_it(trained):
    assert average_logistic_models([trained.model]) is trained.model


def test_models_with_and_without_log1p_cannot_be_averaged(trained):
    raw = dataclasses.replace(trained.model, log1p=False)

    with pytest.raises(ValueError, match="with and without log1p"):
        average_logistic_models([trained.model, raw])


def test_a_model_whose_features_are_in_another_order_is_refused(trained):
    swapped = (FEATURE_COLUMNS[1], FEATURE_COLUMNS[0], *FEATURE_COLUMNS[2:])

    with pytest.raises(ValueError, match=rf"holds '{FEATURE_COLUMNS[1]}' at position 0"):
        dataclasses.replace(trained.model, features=swapped)


def test_a_model_without_a_positive_scale_is_refused(trained):
    with pytest.raises(ValueError, match="'scale' must be positive"):
        dataclasses.replace(trained.model, scale=(0.0,) * len(FEATURE_COLUMNS))


def test_single_class_split_is_refused_naming_where(split):
    train, validation = split

    with pytest.raises(ValueError, match=r"train split for team_a\|2026-11-22 has a single class \(malignant only"):
        train_logistic_model(train[train[TARGET] == MALIGNANT], validation, LogisticParams(), where="team_a|2026-11-22")


@pytest.mark.parametrize(
    ("options", "message"),
    [({"C": 0.0}, "C must be a positive number"), ({"max_iter": 0}, "max_iter must be at least 1")],
)
def test_invalid_params_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        LogisticParams(**options)


def test_the_model_holds_plain_numbers(trained):
    model: LogisticModel = trained.model

    assert all(type(value) is float for value in (*model.mean, *model.scale, *model.coefficients, model.intercept))


def test_the_served_ensemble_keeps_the_recall_promise_on_new_cases():
    """The threshold is set on single fold models' out-of-fold scores; what serves is their mean. Over many draws of
    development cases from one population, the served model's recall on new cancers at that threshold averages at
    least the target (the conformal promise, checked on the scores of the model that serves)."""
    from turbine_dagster.core.evaluation.metrics import conformal_threshold

    rng = np.random.default_rng(7)
    shift = rng.normal(0, 0.35, len(FEATURE_COLUMNS))  # a hard problem: classes overlap, like WDBC's tail

    def draw(cases: int) -> pd.DataFrame:
        labels = rng.integers(0, 2, cases)
        features = 5 + rng.normal(size=(cases, len(FEATURE_COLUMNS))) + np.outer(labels == MALIGNANT, shift)
        frame = pd.DataFrame(np.exp(features / 4), columns=list(FEATURE_COLUMNS))  # positive, right-skewed
        return frame.assign(**{CASE_ID: [f"c{i}" for i in range(cases)], TARGET: labels})

    target, recalls = 0.95, []
    for _ in range(30):
        development = draw(300).assign(fold=lambda frame: np.arange(len(frame)) % 5)
        result = cross_fit_logistic_model(development, LogisticParams())
        out_of_fold = result.out_of_fold
        threshold = conformal_threshold(out_of_fold[TARGET], out_of_fold["p_malignant"], target).threshold
        new_cancers = draw(4000).query(f"{TARGET} == {MALIGNANT}")
        recalls.append(np.mean(predict_malignant_proba(result.model, new_cancers) >= threshold))
    standard_error = np.std(recalls, ddof=1) / np.sqrt(len(recalls))
    assert np.mean(recalls) >= target - 2 * standard_error
    assert np.mean(recalls) < 0.995  # the threshold is not so low that every case is called malignant
