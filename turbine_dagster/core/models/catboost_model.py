"""Search CatBoost hyper-parameters by cross-validation, then fit the final model with early stopping.

``train_catboost_model`` does it once; ``cross_fit_catboost_model`` once per cross-fitting fold, serving
their average (see ``crossfit``).
"""

import functools
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import catboost
import numpy as np
import pandas as pd
from catboost.utils import get_gpu_device_count

from turbine_dagster.core.data.cases import EARLY_STOPPING_FRACTION
from turbine_dagster.core.models.checkpoints import BEST, Checkpoint, take_checkpoint
from turbine_dagster.core.models.crossfit import CrossFitResult, cross_fit
from turbine_dagster.core.models.interface import feature_matrix, predict_malignant_proba, require_trainable_split
from turbine_dagster.core.models.params import CatBoostSearchParams
from turbine_dagster.core.schema import FEATURE_COLUMNS, MALIGNANT, TARGET

logger = logging.getLogger(__name__)

CV_METRIC = "Logloss"
"""The loss CatBoost ranks search candidates by (lower is better)."""

CandidateCallback = Callable[[str], None]
"""Receives one human-readable line per evaluated search candidate."""


@dataclass(frozen=True)
class CatBoostTrainingResult:
    model: catboost.CatBoostClassifier
    best_params: dict[str, Any]
    cv_score: float
    """Mean cross-validated ``cv_metric`` of the chosen candidate, the value the search ranked it by."""
    cv_metric: str
    best_iteration: int
    """0-based iteration whose trees the model keeps (``use_best_model`` on the validation split)."""
    seconds: float
    device: str
    """"CPU" or e.g. "GPU (1 device)"."""
    feature_importance: pd.DataFrame
    """Columns ``feature`` and ``importance``, most important first."""
    checkpoints: list[Checkpoint] = field(default_factory=list)
    """One per configured tree count the final fit reached, in order, then ``best`` (whose model is
    ``model`` itself). Each holds its own model object and the validation P(malignant) it gave."""


# CatBoost's search prints one line per candidate: "3:\tloss: 0.1750224\tbest: 0.1337912 (1)\ttotal: 677ms\t..."
_CANDIDATE_LINE = re.compile(r"^(\d+):\s+loss:\s+(\S+)\s+best:\s+(\S+)\s+\((\d+)\)\s+total:\s+(\S+)")


class _CandidateReporter:
    """A CatBoost log stream that turns each search progress line into a call of ``on_candidate``."""

    def __init__(self, on_candidate: CandidateCallback | None, candidate_count: int):
        self._on_candidate = on_candidate
        self._candidate_count = candidate_count
        self._pending = ""

    def write(self, text: str) -> None:
        # CatBoost may hand over partial lines; report complete ones only.
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip() and self._on_candidate is not None:
                self._on_candidate(self._describe(line))

    def _describe(self, line: str) -> str:
        match = _CANDIDATE_LINE.match(line)
        if match is None:
            return line.strip()
        index, loss, best, best_index, elapsed = match.groups()
        return (
            f"candidate {int(index) + 1}/{self._candidate_count}: cv {CV_METRIC} {float(loss):.4f} "
            f"(best so far {float(best):.4f}, candidate {int(best_index) + 1}), {elapsed} elapsed"
        )


class _WarningLog:
    """CatBoost's error stream, sent to Python logging so warnings are not lost in quiet mode."""

    def write(self, text: str) -> None:
        if text.strip():
            logger.warning("catboost: %s", text.strip())


def _candidate_count(params: CatBoostSearchParams) -> int:
    grid_size = math.prod(len(values) for values in params.param_grid.values())
    # A randomized search over lists samples without repetition, so it stops once the grid is exhausted.
    return grid_size if params.search == "grid" else min(params.n_iter, grid_size)


def _task_type(use_gpu: bool) -> tuple[str, str]:
    """(CatBoost task_type, device label). A GPU is used only when asked for and present."""
    if not use_gpu:
        return "CPU", "CPU"
    gpu_count = get_gpu_device_count()
    if gpu_count == 0:
        logger.warning("use_gpu is set but CatBoost sees no GPU; training on the CPU")
        return "CPU", "CPU"
    return "GPU", f"GPU ({gpu_count} device{'s' if gpu_count > 1 else ''})"


def _classifier(params: CatBoostSearchParams, task_type: str, **chosen: Any) -> catboost.CatBoostClassifier:
    options = {
        "loss_function": CV_METRIC,
        "iterations": params.iterations,
        "early_stopping_rounds": params.early_stopping_rounds,
        "auto_class_weights": "Balanced" if params.class_weight == "balanced" else None,
        "random_seed": params.seed,
        "thread_count": params.thread_count,
        "task_type": task_type,
        "logging_level": "Silent",
        "allow_writing_files": False,  # no catboost_info/ folder in the worker's working directory
    }
    return catboost.CatBoostClassifier(**{**options, **chosen})  # searched values win over the defaults


def _python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def train_catboost_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    params: CatBoostSearchParams,
    on_candidate: CandidateCallback | None = None,
    *,
    where: str | None = None,
) -> CatBoostTrainingResult:
    """Search ``params.param_grid`` by cross-validation on ``train``, then refit the best candidate on
    ``train`` with early stopping on ``validation``; the model keeps its best validation iteration.
    ``params.checkpoint_iterations`` are kept as checkpoints (the final fit's first N trees), plus ``best``.

    CatBoost's custom log streams are process-wide: run one search at a time per process.
    """
    require_trainable_split(train, split="train", where=where)
    require_trainable_split(validation, split="validation", where=where)
    columns = list(FEATURE_COLUMNS)
    train_features = pd.DataFrame(feature_matrix(train, split="train", where=where), columns=columns)
    validation_features = pd.DataFrame(feature_matrix(validation, split="validation", where=where), columns=columns)
    train_labels = train[TARGET].to_numpy(dtype=int)
    validation_labels = validation[TARGET].to_numpy(dtype=int)
    task_type, device = _task_type(params.use_gpu)

    started = time.perf_counter()
    search_options = dict(
        X=train_features,
        y=train_labels,
        cv=params.cv_folds,
        partition_random_seed=params.seed,
        search_by_train_test_split=False,  # every candidate is scored by CV: the splits are small
        stratified=True,
        refit=False,
        verbose=1,
        log_cout=_CandidateReporter(on_candidate, _candidate_count(params)),
        log_cerr=_WarningLog(),
    )
    searcher = _classifier(params, task_type)
    param_grid = {name: list(values) for name, values in params.param_grid.items()}
    if params.search == "grid":
        search = searcher.grid_search(param_grid, **search_options)
    else:
        search = searcher.randomized_search(param_grid, n_iter=params.n_iter, **search_options)
    best_params = {name: _python_scalar(value) for name, value in search["params"].items()}

    model = _classifier(params, task_type, **best_params)
    model.fit(
        train_features,
        train_labels,
        eval_set=(validation_features, validation_labels),
        use_best_model=False,  # every tree stays until the snapshots are taken; trimmed to the best below
        log_cerr=_WarningLog(),
    )
    best_iteration = int(model.get_best_iteration())
    validation_loss = model.get_evals_result()["validation"][CV_METRIC]  # one value per tree count
    is_malignant = validation_labels == MALIGNANT
    checkpoints = []
    for trees in params.checkpoint_iterations:
        if trees > model.tree_count_:
            break  # early stopping ended the fit sooner
        snapshot = model.copy()
        snapshot.shrink(ntree_end=trees)
        p_malignant = predict_malignant_proba(snapshot, validation_features)
        checkpoints.append(
            take_checkpoint("iteration", trees, snapshot, is_malignant, p_malignant, validation_loss[trees - 1])
        )
    model.shrink(ntree_end=best_iteration + 1)  # what use_best_model=True would have kept
    checkpoints.append(
        take_checkpoint(
            BEST,
            best_iteration + 1,
            model,
            is_malignant,
            predict_malignant_proba(model, validation_features),
            validation_loss[best_iteration],
        )
    )
    seconds = time.perf_counter() - started

    importance = pd.DataFrame({"feature": columns, "importance": model.get_feature_importance()})
    return CatBoostTrainingResult(
        model=model,
        best_params=best_params,
        # CatBoost ranks candidates by the CV mean at the iteration where CV early stopping ended.
        cv_score=float(search["cv_results"][f"test-{CV_METRIC}-mean"][-1]),
        cv_metric=CV_METRIC,
        best_iteration=best_iteration,
        seconds=seconds,
        device=device,
        feature_importance=importance.sort_values("importance", ascending=False, ignore_index=True),
        checkpoints=checkpoints,
    )


def mean_feature_importance(fold_results: Sequence[CatBoostTrainingResult]) -> pd.DataFrame:
    """Each feature's importance averaged over the fold models, most important first."""
    return (
        pd.concat([fold.feature_importance for fold in fold_results])
        .groupby("feature", as_index=False)["importance"]
        .mean()
        .sort_values("importance", ascending=False, ignore_index=True)
    )


def average_models(models: Sequence[catboost.CatBoostClassifier]) -> catboost.CatBoostClassifier:
    """One CatBoost classifier whose raw score is the mean of ``models``' (``catboost.sum_models`` with equal
    weights: the cross-fitted ensemble as a single native ``.cbm``)."""
    if len(models) == 1:
        return models[0]
    summed = catboost.sum_models(list(models), weights=[1 / len(models)] * len(models))
    # sum_models returns the base CatBoost class; a classifier is what predict_proba and the store expect.
    with tempfile.TemporaryDirectory(prefix="turbine-catboost-") as scratch:
        file = f"{scratch}/ensemble.cbm"
        summed.save_model(file, format="cbm")
        return catboost.CatBoostClassifier().load_model(file, format="cbm")


def cross_fit_catboost_model(
    development: pd.DataFrame,
    params: CatBoostSearchParams,
    *,
    early_stopping_fraction: float = EARLY_STOPPING_FRACTION,
    on_candidate: Callable[[int, str], None] | None = None,
    where: str | None = None,
) -> CrossFitResult:
    """CatBoost's search and an early-stopped fit per fold (``crossfit.cross_fit``); the result's model is
    their average. The search of fold k never sees fold k, so neither do its chosen parameters."""

    def train_fold(fit: pd.DataFrame, early_stop: pd.DataFrame, fold: int) -> CatBoostTrainingResult:
        callback = None if on_candidate is None else functools.partial(on_candidate, fold)
        return train_catboost_model(fit, early_stop, params, callback, where=where)

    return cross_fit(
        development, train_fold, average_models, early_stopping_fraction=early_stopping_fraction, seed=params.seed
    )
