"""Search CatBoost hyper-parameters by cross-validation, then fit with early stopping.

``train_catboost_model`` searches and fits once; ``cross_fit_catboost_model`` searches once and fits the choice
once per cross-fitting fold, serving their average (see ``crossfit``).
"""

import functools
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import catboost
import numpy as np
import pandas as pd
from catboost.utils import get_gpu_device_count
from sklearn.model_selection import train_test_split

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
class CatBoostSearchResult:
    best_params: dict[str, Any]
    cv_score: float
    """Mean cross-validated ``CV_METRIC`` of the chosen candidate, the value the search ranked it by."""
    rows: int
    """Cases the search cross-validated on."""
    seconds: float


@dataclass(frozen=True)
class CatBoostTrainingResult:
    model: catboost.CatBoostClassifier
    search: CatBoostSearchResult
    """The search whose choice this model was fitted with (shared by every fold of a cross-fitting)."""
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

    @property
    def best_params(self) -> dict[str, Any]:
        return self.search.best_params

    @property
    def cv_score(self) -> float:
        """Mean cross-validated ``cv_metric`` of the chosen candidate, the value the search ranked it by."""
        return self.search.cv_score


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


@functools.cache
def _visible_gpus() -> int:
    """The GPUs CatBoost sees, asked once per process: without a CUDA driver CatBoost prints a line to stderr
    every time it is asked."""
    return get_gpu_device_count()


def _task_type(use_gpu: bool) -> tuple[str, str]:
    """(CatBoost task_type, device label). The GPUs are used when asked for and present (CatBoost then trains on
    every GPU the process sees); the CPU otherwise."""
    if not use_gpu:
        return "CPU", "CPU"
    gpu_count = _visible_gpus()
    if gpu_count == 0:
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


def search_catboost_params(
    train: pd.DataFrame,
    params: CatBoostSearchParams,
    on_candidate: CandidateCallback | None = None,
    *,
    split: str = "development",
    where: str | None = None,
) -> CatBoostSearchResult:
    """CatBoost's own cross-validated search (``grid_search`` or ``randomized_search``) over ``params.param_grid``
    on ``train``, or on a stratified sample of ``params.search_max_rows`` of its cases when it holds more.

    CatBoost's custom log streams are process-wide: run one search at a time per process.
    """
    require_trainable_split(train, split=split, where=where)
    if len(train) > params.search_max_rows:
        train, _ = train_test_split(
            train, train_size=params.search_max_rows, stratify=train[TARGET].astype(int), random_state=params.seed
        )
    started = time.perf_counter()
    search_options = dict(
        X=pd.DataFrame(feature_matrix(train, split=split, where=where), columns=list(FEATURE_COLUMNS)),
        y=train[TARGET].to_numpy(dtype=int),
        cv=params.cv_folds,
        partition_random_seed=params.seed,
        search_by_train_test_split=False,  # every candidate is scored by CV
        stratified=True,
        refit=False,
        verbose=1,
        log_cout=_CandidateReporter(on_candidate, _candidate_count(params)),
        log_cerr=_WarningLog(),
    )
    searcher = _classifier(params, _task_type(params.use_gpu)[0])
    param_grid = {name: list(values) for name, values in params.param_grid.items()}
    if params.search == "grid":
        search = searcher.grid_search(param_grid, **search_options)
    else:
        search = searcher.randomized_search(param_grid, n_iter=params.n_iter, **search_options)
    return CatBoostSearchResult(
        best_params={name: _python_scalar(value) for name, value in search["params"].items()},
        # CatBoost ranks candidates by the CV mean at the iteration where CV early stopping ended.
        cv_score=float(search["cv_results"][f"test-{CV_METRIC}-mean"][-1]),
        rows=len(train),
        seconds=time.perf_counter() - started,
    )


def fit_catboost_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    params: CatBoostSearchParams,
    search: CatBoostSearchResult,
    *,
    where: str | None = None,
) -> CatBoostTrainingResult:
    """Fit ``search``'s chosen candidate on ``train`` with early stopping on ``validation``; the model keeps its
    best validation iteration. ``params.checkpoint_iterations`` are kept as checkpoints (the fit's first N
    trees), plus ``best``."""
    require_trainable_split(train, split="train", where=where)
    require_trainable_split(validation, split="validation", where=where)
    columns = list(FEATURE_COLUMNS)
    train_features = pd.DataFrame(feature_matrix(train, split="train", where=where), columns=columns)
    validation_features = pd.DataFrame(feature_matrix(validation, split="validation", where=where), columns=columns)
    train_labels = train[TARGET].to_numpy(dtype=int)
    validation_labels = validation[TARGET].to_numpy(dtype=int)
    task_type, device = _task_type(params.use_gpu)

    started = time.perf_counter()
    model = _classifier(params, task_type, **search.best_params)
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
    importance = pd.DataFrame({"feature": columns, "importance": model.get_feature_importance()})
    return CatBoostTrainingResult(
        model=model,
        search=search,
        cv_metric=CV_METRIC,
        best_iteration=best_iteration,
        seconds=time.perf_counter() - started,
        device=device,
        feature_importance=importance.sort_values("importance", ascending=False, ignore_index=True),
        checkpoints=checkpoints,
    )


def train_catboost_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    params: CatBoostSearchParams,
    on_candidate: CandidateCallback | None = None,
    *,
    where: str | None = None,
) -> CatBoostTrainingResult:
    """Search on ``train`` (``search_catboost_params``), then fit the chosen candidate (``fit_catboost_model``):
    one model, nothing cross-fitted. Its ``seconds`` count the search too."""
    search = search_catboost_params(train, params, on_candidate, split="train", where=where)
    result = fit_catboost_model(train, validation, params, search, where=where)
    return replace(result, seconds=result.seconds + search.seconds)


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
    on_candidate: CandidateCallback | None = None,
    where: str | None = None,
) -> CrossFitResult:
    """One search on the development cases (``search_catboost_params``), then one early-stopped fit of its choice
    per fold (``crossfit.cross_fit``); the result's model is their average, each fold result holds the search.

    The search cost no longer multiplies with the folds (8 candidates x 3 inner folds once, not per fold). The
    price: the chosen parameters saw every fold, so each out-of-fold score comes from a model whose few
    hyper-parameters were picked with its own case among ~20 k; the thresholds' honesty is checked on cases
    outside the development set (``benchmarks/model_quality.py``), see the README.
    """
    search = search_catboost_params(development, params, on_candidate, where=where)

    def train_fold(fit: pd.DataFrame, early_stop: pd.DataFrame, fold: int) -> CatBoostTrainingResult:
        return fit_catboost_model(fit, early_stop, params, search, where=where)

    return cross_fit(
        development, train_fold, average_models, early_stopping_fraction=early_stopping_fraction, seed=params.seed
    )
