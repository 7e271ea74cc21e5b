"""Train the standardised logistic regression with scikit-learn (``StandardScaler`` + ``LogisticRegression``) and
keep it as plain numbers (``logistic_regression.LogisticModel``): no scikit-learn object outlives the training.

``train_logistic_model`` fits one; ``cross_fit_logistic_model`` fits one per cross-fitting fold and serves their
average (see ``crossfit``).
"""

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from turbine_dagster.core.data.cases import EARLY_STOPPING_FRACTION
from turbine_dagster.core.models.checkpoints import BEST, Checkpoint, take_checkpoint
from turbine_dagster.core.models.crossfit import CrossFitResult, cross_fit
from turbine_dagster.core.models.interface import feature_matrix, predict_malignant_proba, require_trainable_split
from turbine_dagster.core.models.logistic_regression import (
    LogisticModel,
    average_logistic_models,
    transformed_features,
)
from turbine_dagster.core.models.params import LogisticParams
from turbine_dagster.core.schema import FEATURE_COLUMNS, MALIGNANT, TARGET


@dataclass(frozen=True)
class LogisticTrainingResult:
    model: LogisticModel
    solver_iterations: int
    """Iterations the lbfgs solver ran; ``params.max_iter`` means it stopped before converging."""
    seconds: float
    coefficients: pd.DataFrame
    """The model's ``coefficient_table()``: per feature, its weight towards malignant, largest |weight| first."""
    checkpoints: list[Checkpoint] = field(default_factory=list)
    """``best`` only (whose model is ``model`` itself), with the validation P(malignant) it gave: a logistic
    regression has no epochs or trees to keep along the way."""


def fit_pipeline(train: pd.DataFrame, params: LogisticParams, *, where: str | None = None) -> Pipeline:
    """scikit-learn's standardisation + logistic regression, fitted on t(x) of ``train`` against its class codes."""
    features = transformed_features(feature_matrix(train, split="train", where=where), params.log1p)
    pipeline = make_pipeline(
        StandardScaler(), LogisticRegression(C=params.C, class_weight=params.class_weight, max_iter=params.max_iter)
    )
    return pipeline.fit(features, train[TARGET].to_numpy(dtype=int))


def exported(pipeline: Pipeline, log1p: bool) -> LogisticModel:
    """The fitted ``pipeline`` as a LogisticModel giving the same P(malignant)."""
    scaler, classifier = pipeline.named_steps["standardscaler"], pipeline.named_steps["logisticregression"]
    classes = list(classifier.classes_)
    if len(classes) != 2 or MALIGNANT not in classes:
        raise ValueError(f"the logistic regression was fitted on classes {classes}; expected malignant and benign")
    # The decision function is the logit of classes_[1]: with class codes sorted, that is benign (malignant is 0),
    # so the malignant logit is its negation.
    sign = 1.0 if classes[1] == MALIGNANT else -1.0
    return LogisticModel(
        features=FEATURE_COLUMNS,
        log1p=log1p,
        mean=tuple(scaler.mean_),
        scale=tuple(scaler.scale_),
        coefficients=tuple(sign * classifier.coef_[0]),
        intercept=sign * float(classifier.intercept_[0]),
    )


def train_logistic_model(
    fit: pd.DataFrame, early_stop: pd.DataFrame, params: LogisticParams, *, where: str | None = None
) -> LogisticTrainingResult:
    """Fit on ``fit``; ``early_stop`` only validates (nothing stops early): its P(malignant) and log loss make
    the ``best`` checkpoint, as the other kinds' validation split does theirs."""
    require_trainable_split(fit, split="train", where=where)
    require_trainable_split(early_stop, split="validation", where=where)
    started = time.perf_counter()
    pipeline = fit_pipeline(fit, params, where=where)
    model = exported(pipeline, params.log1p)
    seconds = time.perf_counter() - started

    is_malignant = early_stop[TARGET].to_numpy() == MALIGNANT
    p_malignant = predict_malignant_proba(model, feature_matrix(early_stop, split="validation", where=where))
    val_loss = log_loss(is_malignant, np.clip(p_malignant, 1e-7, 1 - 1e-7), labels=[False, True])
    iterations = int(pipeline.named_steps["logisticregression"].n_iter_[0])
    return LogisticTrainingResult(
        model=model,
        solver_iterations=iterations,
        seconds=seconds,
        coefficients=model.coefficient_table(),
        checkpoints=[take_checkpoint(BEST, iterations, model, is_malignant, p_malignant, val_loss)],
    )


def cross_fit_logistic_model(
    development: pd.DataFrame,
    params: LogisticParams,
    *,
    early_stopping_fraction: float = EARLY_STOPPING_FRACTION,
    where: str | None = None,
) -> CrossFitResult:
    """One logistic regression per fold (``crossfit.cross_fit``); the result's model is their average (the mean
    logit). Each fold still holds back ``early_stopping_fraction`` of its cases, only to validate, so its fit cases
    are those the other kinds fit on."""

    def train_fold(fit: pd.DataFrame, early_stop: pd.DataFrame, fold: int) -> LogisticTrainingResult:
        return train_logistic_model(fit, early_stop, params, where=where)

    return cross_fit(
        development,
        train_fold,
        average_logistic_models,
        early_stopping_fraction=early_stopping_fraction,
        seed=params.seed,
    )
