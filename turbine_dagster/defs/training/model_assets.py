"""The models trained per team and week by cross-fitting, stored as native artifacts by the model IO managers,
with their out-of-fold scores.

The Keras and CatBoost models hold a slot of the ``gpu`` pool for their whole run (``granularity: run`` in
dagster.yaml); the logistic regression is cheap CPU work and holds none.
The trainers are imported inside the asset bodies so code servers load in seconds.
"""

from collections.abc import Callable, Iterator
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from turbine_dagster.core.data.cases import EARLY_STOPPING_FRACTION
from turbine_dagster.core.models.params import CatBoostSearchParams, LogisticParams, TFTrainingParams
from turbine_dagster.defs.code_versions import versioned
from turbine_dagster.defs.failures import asset_and_partition
from turbine_dagster.defs.partitions import partition_team_week, team_week_partitions
from turbine_dagster.defs.resources import GPU_POOL, PartitionFolders, gpu_op_tags
from turbine_dagster.defs.retries import STORAGE_RETRY_POLICY, final_unless_transient

OWNERS = ["team:data-science"]
TF_DEFAULTS = TFTrainingParams()
CATBOOST_DEFAULTS = CatBoostSearchParams()
LOGISTIC_DEFAULTS = LogisticParams()


class CrossFitConfig(dg.Config):
    """What every model's Launchpad config shares."""

    early_stopping_fraction: float = Field(
        EARLY_STOPPING_FRACTION,
        gt=0,
        lt=1,
        description="Share of each fold's training cases held back for early stopping.",
    )


class TFModelConfig(CrossFitConfig):
    hidden_units: list[int] = Field(
        list(TF_DEFAULTS.hidden_units), description="Width of each FCN block (Dense → LayerNorm → ReLU)."
    )
    dropout: float = Field(TF_DEFAULTS.dropout, ge=0, lt=1, description="Dropout after each FCN block.")
    log1p: bool = Field(
        TF_DEFAULTS.log1p,
        description="Feed log(1 + x) of the features to the input normalisation: WDBC's measurements span five "
        "orders of magnitude and are right-skewed.",
    )
    epochs: int | None = Field(
        TF_DEFAULTS.epochs,
        ge=1,
        description="Upper bound on epochs; early stopping usually ends sooner. Empty: sized to the data (200 up to "
        "20 k fit cases, fewer as epochs grow long).",
    )
    batch_size: int | None = Field(
        TF_DEFAULTS.batch_size,
        ge=1,
        description="Training cases per device per gradient step. Empty: grows with the data (32 on WDBC-sized "
        "folds, about fit cases / 256, at most 4096).",
    )
    learning_rate: float = Field(TF_DEFAULTS.learning_rate, gt=0, description="Learning rate of the Adam optimizer.")
    balanced_class_weight: bool = Field(
        TF_DEFAULTS.class_weight == "balanced", description="Weight classes inversely to their frequency."
    )
    patience: int | None = Field(
        TF_DEFAULTS.patience,
        ge=0,
        description="Epochs without a better early-stopping loss before stopping. Empty: a tenth of the epochs, "
        "at least 5.",
    )
    seed: int = Field(
        TF_DEFAULTS.seed, description="Seeds Python, NumPy and TensorFlow; CPU training is deterministic."
    )
    checkpoint_epochs: list[int] = Field(
        list(TF_DEFAULTS.checkpoint_epochs), description="Epochs kept as checkpoints besides the best one."
    )
    devices: list[str] = Field(
        list(TF_DEFAULTS.devices),
        description="TensorFlow devices each network trains on, data-parallel when several (e.g. GPU:0, GPU:1). "
        "Empty: every GPU the step sees (all it requested), else the CPU.",
    )

    def training_params(self) -> TFTrainingParams:
        return TFTrainingParams(
            class_weight=_class_weight(self.balanced_class_weight),
            **self.model_dump(exclude={"balanced_class_weight", "early_stopping_fraction"}),
        )


class CatBoostConfig(CrossFitConfig):
    search: Literal["grid", "randomized"] = Field(
        CATBOOST_DEFAULTS.search, description="CatBoost's grid_search or randomized_search."
    )
    depth: list[int] = Field(list(CATBOOST_DEFAULTS.param_grid["depth"]), description="Search space: tree depths.")
    learning_rate: list[float] = Field(
        list(CATBOOST_DEFAULTS.param_grid["learning_rate"]), description="Search space: learning rates."
    )
    l2_leaf_reg: list[float] = Field(
        list(CATBOOST_DEFAULTS.param_grid["l2_leaf_reg"]), description="Search space: L2 regularisation."
    )
    n_iter: int = Field(CATBOOST_DEFAULTS.n_iter, ge=1, description="Candidates tried by the randomized search.")
    cv_folds: int = Field(
        CATBOOST_DEFAULTS.cv_folds,
        ge=2,
        description="Folds of the search's cross-validation.",
    )
    iterations: int = Field(
        CATBOOST_DEFAULTS.iterations, ge=1, description="Upper bound on trees; early stopping usually ends sooner."
    )
    early_stopping_rounds: int = Field(
        CATBOOST_DEFAULTS.early_stopping_rounds,
        ge=1,
        description="Trees without a better early-stopping loss before stopping.",
    )
    balanced_class_weight: bool = Field(
        CATBOOST_DEFAULTS.class_weight == "balanced", description="Weight classes inversely to their frequency."
    )
    seed: int = Field(
        CATBOOST_DEFAULTS.seed,
        description="Seeds CatBoost's training, its search's folds and the early-stopping split.",
    )
    use_gpu: bool = Field(
        CATBOOST_DEFAULTS.use_gpu,
        description="task_type=GPU on every GPU the step sees, when there is one; the CPU otherwise.",
    )
    search_max_rows: int = Field(
        CATBOOST_DEFAULTS.search_max_rows,
        ge=100,
        description="The search runs once per run, on a stratified sample of at most this many development cases.",
    )
    checkpoint_iterations: list[int] = Field(
        list(CATBOOST_DEFAULTS.checkpoint_iterations),
        description="Tree counts kept as snapshots besides the best one.",
    )

    def search_params(self) -> CatBoostSearchParams:
        grid = {"depth": self.depth, "learning_rate": self.learning_rate, "l2_leaf_reg": self.l2_leaf_reg}
        settings = self.model_dump(exclude={*grid, "balanced_class_weight", "early_stopping_fraction"})
        return CatBoostSearchParams(param_grid=grid, class_weight=_class_weight(self.balanced_class_weight), **settings)


class LogisticModelConfig(CrossFitConfig):
    C: float = Field(
        LOGISTIC_DEFAULTS.C,
        gt=0,
        description="Inverse strength of the L2 penalty on the standardised features (scikit-learn's C): smaller "
        "is stronger.",
    )
    log1p: bool = Field(
        LOGISTIC_DEFAULTS.log1p, description="Fit on log1p of the features, which are skewed to the right."
    )
    balanced_class_weight: bool = Field(
        LOGISTIC_DEFAULTS.class_weight == "balanced", description="Weight classes inversely to their frequency."
    )
    max_iter: int = Field(LOGISTIC_DEFAULTS.max_iter, ge=1, description="Upper bound on the solver's iterations.")
    seed: int = Field(LOGISTIC_DEFAULTS.seed, description="Seeds the early-stopping split of each fold.")

    def training_params(self) -> LogisticParams:
        return LogisticParams(
            class_weight=_class_weight(self.balanced_class_weight),
            **self.model_dump(exclude={"balanced_class_weight", "early_stopping_fraction"}),
        )


def _class_weight(balanced: bool) -> str | None:
    return "balanced" if balanced else None


def cross_fitted_model(name: str, io_manager_key: str, kinds: set[str], description: str, *, on_gpu: bool = True):
    """The multi-asset of a cross-fitted model: the ensemble's native artifact, its checkpoints and its out-of-fold
    scores, for one team's week; ``on_gpu``: holding a slot of the GPU pool for the whole run, its step asking
    Kubernetes for the GPUs."""
    outs = {
        name: dg.AssetOut(io_manager_key=io_manager_key, kinds=kinds, owners=OWNERS, description=description),
        f"{name}_checkpoints": dg.AssetOut(
            io_manager_key="json_io_manager",
            kinds={"json"},
            owners=OWNERS,
            description=f"Checkpoints of {name} (configured steps and the best one): native artifacts, out-of-fold "
            "metrics and thresholds.",
        ),
        f"{name}_out_of_fold": dg.AssetOut(
            kinds={"pandas", "parquet"},
            owners=OWNERS,
            description=f"P(malignant) of every train_split case from the {name} fold model that neither fitted "
            "nor early-stopped on it: what the threshold and the champion are chosen on.",
        ),
    }
    return dg.multi_asset(
        name=name,
        outs=outs,
        partitions_def=team_week_partitions,
        group_name="training",
        pool=GPU_POOL if on_gpu else None,
        op_tags=gpu_op_tags() if on_gpu else None,
        retry_policy=STORAGE_RETRY_POLICY,
    )


def _cross_fit(
    context: dg.AssetExecutionContext,
    cross_fit_model: Callable[..., Any],
    train_split: pd.DataFrame,
    params: Any,
    config: CrossFitConfig,
    **on_progress: Callable[..., None],
) -> Any:
    """``cross_fit_model`` of ``params`` on the partition's development cases; its failure is final (a retry would
    train again)."""
    with final_unless_transient(asset_and_partition(context)):
        return cross_fit_model(
            train_split,
            params,
            early_stopping_fraction=config.early_stopping_fraction,
            where=context.partition_key,
            **on_progress,
        )


def _crossfit_outputs(
    context: dg.AssetExecutionContext, store: PartitionFolders, name: str, result: Any, metadata: dict[str, Any]
) -> Iterator[dg.Output]:
    from turbine_dagster.core.models.checkpoints import save_checkpoints
    from turbine_dagster.presentation.training import checkpoints_table_markdown

    team, week = partition_team_week(context)
    with final_unless_transient(f"{asset_and_partition(context)}: saving checkpoints"):
        saved = save_checkpoints(result.checkpoints, store.folder(team, week, name))
    yield dg.Output(
        result.model,
        output_name=name,
        metadata={**metadata, "folds": len(result.fold_results), "training_seconds": round(result.seconds, 2)},
    )
    yield dg.Output(
        [c.to_dict() for c in saved],
        output_name=f"{name}_checkpoints",
        metadata={"checkpoints": dg.MetadataValue.md(checkpoints_table_markdown(saved)), "count": len(saved)},
    )
    out_of_fold = result.out_of_fold
    yield dg.Output(
        out_of_fold, output_name=f"{name}_out_of_fold", metadata={"folds": int(out_of_fold["fold"].nunique())}
    )


@versioned
@cross_fitted_model(
    "tf_model",
    "keras_io_manager",
    {"tensorflow", "keras"},
    "Keras classifier, the mean of one network per cross-fitting fold: input normalisation, a stack "
    "of FCN blocks, a sigmoid P(malignant).",
)
def tf_model(
    context: dg.AssetExecutionContext,
    config: TFModelConfig,
    checkpoint_store: PartitionFolders,
    train_split: pd.DataFrame,
):
    from turbine_dagster.core.models.tf_model import cross_fit_tf_model
    from turbine_dagster.presentation.training import learning_curve_markdown

    def log_epoch(fold: int, epoch: int, logs: dict[str, float]) -> None:
        context.log.info(f"fold {fold} epoch {epoch}: loss {logs['loss']:.4f}, val_loss {logs['val_loss']:.4f}")

    result = _cross_fit(
        context, cross_fit_tf_model, train_split, config.training_params(), config, on_epoch_end=log_epoch
    )
    folds = result.fold_results
    context.log.info(
        f"cross-fitted {len(folds)} folds on {folds[0].device} (batch {folds[0].batch_size}) in "
        f"{result.seconds:.1f} s; best epochs {[fold.best_epoch for fold in folds]}"
    )
    yield from _crossfit_outputs(
        context,
        checkpoint_store,
        "tf_model",
        result,
        metadata={
            "param_count": result.model.count_params(),
            "epochs_run": sum(fold.epochs_run for fold in folds),
            "best_epochs": dg.MetadataValue.json([fold.best_epoch for fold in folds]),
            "mean_best_val_loss": float(sum(fold.best_val_loss for fold in folds) / len(folds)),
            "device": folds[0].device,
            "replicas": folds[0].replicas,
            "batch_size": folds[0].batch_size,
            "learning_curves": dg.MetadataValue.md(learning_curve_markdown([fold.history for fold in folds])),
        },
    )


@versioned
@cross_fitted_model(
    "catboost_model",
    "catboost_io_manager",
    {"catboost"},
    "CatBoost classifier, the mean of one model per cross-fitting fold, each fitted with the parameters CatBoost's "
    "own cross-validated search chose once on (a stratified sample of) the development cases, and early-stopped.",
)
def catboost_model(
    context: dg.AssetExecutionContext,
    config: CatBoostConfig,
    checkpoint_store: PartitionFolders,
    train_split: pd.DataFrame,
):
    from turbine_dagster.core.models.catboost_model import cross_fit_catboost_model, mean_feature_importance
    from turbine_dagster.presentation.training import feature_importance_markdown, feature_importance_table_markdown

    def log_candidate(line: str) -> None:
        context.log.info(f"search {line}")

    result = _cross_fit(
        context, cross_fit_catboost_model, train_split, config.search_params(), config, on_candidate=log_candidate
    )
    folds = result.fold_results
    search = folds[0].search
    importance = mean_feature_importance(folds)
    yield from _crossfit_outputs(
        context,
        checkpoint_store,
        "catboost_model",
        result,
        metadata={
            "chosen_parameters": dg.MetadataValue.json(search.best_params),
            f"search_cv_{folds[0].cv_metric}": search.cv_score,
            "search_rows": search.rows,
            "search_seconds": round(search.seconds, 2),
            "best_iterations": dg.MetadataValue.json([fold.best_iteration for fold in folds]),
            "device": folds[0].device,
            "feature_importance": dg.MetadataValue.md(
                feature_importance_table_markdown(importance) + "\n\n" + feature_importance_markdown(importance)
            ),
        },
    )


@versioned
@cross_fitted_model(
    "logistic_model",
    "logistic_io_manager",
    {"scikit-learn"},
    "Logistic regression on standardised features (log1p-transformed by default), the mean logit of one model per "
    "cross-fitting fold, stored as plain numbers in a .logreg JSON document.",
    on_gpu=False,
)
def logistic_model(
    context: dg.AssetExecutionContext,
    config: LogisticModelConfig,
    checkpoint_store: PartitionFolders,
    train_split: pd.DataFrame,
):
    from turbine_dagster.core.models.logistic_model import cross_fit_logistic_model
    from turbine_dagster.presentation.training import coefficients_table_markdown

    result = _cross_fit(context, cross_fit_logistic_model, train_split, config.training_params(), config)
    iterations = [fold.solver_iterations for fold in result.fold_results]
    if max(iterations) >= config.max_iter:
        context.log.warning(
            f"the solver stopped at max_iter={config.max_iter} before converging in some fold ({iterations}); "
            "raise max_iter or lower C"
        )
    yield from _crossfit_outputs(
        context,
        checkpoint_store,
        "logistic_model",
        result,
        metadata={
            "solver_iterations": dg.MetadataValue.json(iterations),
            "coefficients": dg.MetadataValue.md(coefficients_table_markdown(result.model.coefficient_table())),
        },
    )


model_assets = [tf_model, catboost_model, logistic_model]
