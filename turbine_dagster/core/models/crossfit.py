"""Cross-fitting: K models, each trained without one fold and scoring it (the out-of-fold scores that choose
threshold and champion), and the ensemble of all K that serves."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

from turbine_dagster.core.data.cases import EARLY_STOPPING_FRACTION, FOLD, TRAINING_SEED
from turbine_dagster.core.models.checkpoints import BEST, Checkpoint, take_checkpoint
from turbine_dagster.core.models.interface import predict_malignant_proba
from turbine_dagster.core.schema import CASE_ID, MALIGNANT, P_MALIGNANT, TARGET

FoldTrainer = Callable[[pd.DataFrame, pd.DataFrame, int], Any]
"""Trains one fold's model: (fit cases, early-stopping cases, fold number) -> a training result with
``model`` and ``checkpoints`` (each holding its model object, ``best`` last)."""
Combiner = Callable[[Sequence[Any]], Any]
"""Averages same-kind models into one model of that kind."""


@dataclass(frozen=True)
class CrossFitResult:
    model: Any
    """The ensemble of the fold models: what is stored, registered and served."""
    out_of_fold: pd.DataFrame
    """``case_id``, ``fold``, ``target``, ``p_malignant``: one row per development case."""
    fold_results: list[Any]
    """Each fold's training result, in fold order."""
    checkpoints: list[Checkpoint] = field(default_factory=list)
    """Ensembles of the fold models at each checkpoint every fold reached, then ``best`` (``model`` itself);
    metrics and threshold from their out-of-fold scores."""
    seconds: float = 0.0


def fold_cases(
    development: pd.DataFrame, fold: int, early_stopping_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(fit, early-stopping, held-out) cases of one fold."""
    held_out = development.loc[development[FOLD] == fold]
    rest = development.loc[development[FOLD] != fold]
    fit, early_stop = train_test_split(
        rest, test_size=early_stopping_fraction, stratify=rest[TARGET].astype(int), random_state=seed + fold
    )
    return fit, early_stop, held_out


def cross_fit(
    development: pd.DataFrame,
    train_fold: FoldTrainer,
    combine: Combiner,
    *,
    early_stopping_fraction: float = EARLY_STOPPING_FRACTION,
    seed: int = TRAINING_SEED,
) -> CrossFitResult:
    """Train one model per fold of ``development[FOLD]``, score each held-out fold, and combine the models."""
    if FOLD not in development.columns:
        raise ValueError(f"development cases have no '{FOLD}' column; split them with cases.development_and_holdout")
    if not 0 < early_stopping_fraction < 1:
        raise ValueError(f"early_stopping_fraction must be in (0, 1), got {early_stopping_fraction}")
    started = time.perf_counter()
    folds = sorted(int(fold) for fold in development[FOLD].unique())
    results, scored = [], []
    checkpoint_scores: dict[str, list[np.ndarray]] = {}
    for fold in folds:
        fit, early_stop, held_out = fold_cases(development, fold, early_stopping_fraction, seed)
        result = train_fold(fit, early_stop, fold)
        results.append(result)
        scored.append(
            held_out.loc[:, [CASE_ID, FOLD, TARGET]].assign(
                **{P_MALIGNANT: predict_malignant_proba(result.model, held_out)}
            )
        )
        for checkpoint in result.checkpoints:
            checkpoint_scores.setdefault(checkpoint.checkpoint_id, []).append(
                predict_malignant_proba(checkpoint.model, held_out)
            )
    out_of_fold = pd.concat(scored, ignore_index=True)
    model = combine([result.model for result in results])
    checkpoints = _ensemble_checkpoints(results, checkpoint_scores, out_of_fold, model, combine)
    return CrossFitResult(model, out_of_fold, results, checkpoints, time.perf_counter() - started)


def _ensemble_checkpoints(
    results: list[Any], scores: dict[str, list[np.ndarray]], out_of_fold: pd.DataFrame, model: Any, combine: Combiner
) -> list[Checkpoint]:
    malignant = out_of_fold[TARGET].to_numpy() == MALIGNANT
    checkpoints = []
    for first in results[0].checkpoints:
        identifier = first.checkpoint_id
        if len(scores[identifier]) < len(results):
            continue  # early stopping ended some fold before this step
        per_fold = [next(c for c in result.checkpoints if c.checkpoint_id == identifier) for result in results]
        p_malignant = np.concatenate(scores[identifier])
        if identifier == BEST:
            ensemble, step = model, int(np.median([c.step for c in per_fold]))
        else:
            ensemble, step = combine([c.model for c in per_fold]), first.step
        loss = log_loss(malignant, np.clip(p_malignant, 1e-7, 1 - 1e-7), labels=[False, True])
        checkpoints.append(take_checkpoint(first.kind, step, ensemble, malignant, p_malignant, loss))
    return checkpoints
