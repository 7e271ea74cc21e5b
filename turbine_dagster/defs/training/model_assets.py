"""The two models trained per team and week, stored as native artifacts by the model IO managers.

Both hold a slot of the ``gpu`` pool for their whole run (``granularity: run`` in dagster.yaml).
TensorFlow and CatBoost are imported inside the asset bodies so code servers load in seconds.
"""

from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from turbine_dagster.defs.partitions import team_week_partitions
from turbine_dagster.defs.resources import GPU_POOL, gpu_op_tags

OWNERS = ["team:data-science"]


class TFModelConfig(dg.Config):
    hidden_units: list[int] = Field([64, 32], description="Width of each FCN block (Dense → LayerNorm → ReLU).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each FCN block.")
    epochs: int = Field(200, ge=1, description="Upper bound on epochs; early stopping usually ends sooner.")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    balanced_class_weight: bool = Field(True, description="Weight classes inversely to their frequency.")
    patience: int = Field(20, ge=0, description="Epochs without a better validation loss before stopping.")
    seed: int = Field(42, description="Seeds Python, NumPy and TensorFlow; CPU training is deterministic.")


class CatBoostConfig(dg.Config):
    search: Literal["grid", "randomized"] = Field("grid", description="CatBoost's grid_search or randomized_search.")
    depth: list[int] = Field([4, 6], description="Search space: tree depths.")
    learning_rate: list[float] = Field([0.03, 0.1], description="Search space: learning rates.")
    l2_leaf_reg: list[float] = Field([1.0, 3.0], description="Search space: L2 regularisation.")
    n_iter: int = Field(10, ge=1, description="Candidates tried by the randomized search.")
    cv_folds: int = Field(3, ge=2)
    iterations: int = Field(500, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    balanced_class_weight: bool = Field(True, description="Weight classes inversely to their frequency.")
    seed: int = Field(42)
    use_gpu: bool = Field(False, description="task_type=GPU when a GPU is present; CPU otherwise.")

    def search_params(self) -> Any:
        from turbine_dagster.core.catboost_model import CatBoostSearchParams

        grid = {"depth": self.depth, "learning_rate": self.learning_rate, "l2_leaf_reg": self.l2_leaf_reg}
        settings = self.model_dump(exclude={"depth", "learning_rate", "l2_leaf_reg", "balanced_class_weight"})
        return CatBoostSearchParams(param_grid=grid, class_weight=_class_weight(self.balanced_class_weight), **settings)


def _class_weight(balanced: bool) -> str | None:
    return "balanced" if balanced else None


def _training_failure(context: dg.AssetExecutionContext, error: ValueError) -> dg.Failure:
    return dg.Failure(description=f"{context.asset_key.to_user_string()} for {context.partition_key}: {error}",
                      allow_retries=False)


@dg.asset(
    partitions_def=team_week_partitions,
    group_name="training",
    kinds={"tensorflow", "keras"},
    owners=OWNERS,
    pool=GPU_POOL,
    op_tags=gpu_op_tags(),
    io_manager_key="keras_io_manager",
    description="Keras classifier: input normalisation, a stack of FCN blocks, a sigmoid P(malignant).",
)
def tf_model(context: dg.AssetExecutionContext, config: TFModelConfig, train_split: pd.DataFrame,
             validation_split: pd.DataFrame) -> dg.Output[Any]:
    from turbine_dagster.core.tf_model import TFTrainingParams, learning_curve_markdown, train_tf_model

    def log_epoch(epoch: int, logs: dict[str, float]) -> None:
        context.log.info(f"epoch {epoch}/{config.epochs}: loss {logs['loss']:.4f}, val_loss {logs['val_loss']:.4f}")

    try:
        result = train_tf_model(train_split, validation_split, TFTrainingParams(
            class_weight=_class_weight(config.balanced_class_weight),
            **config.model_dump(exclude={"balanced_class_weight"})), log_epoch,
                                where=context.partition_key)
    except ValueError as error:
        raise _training_failure(context, error) from error
    context.log.info(f"trained on {result.device} in {result.seconds:.1f} s; best epoch {result.best_epoch}")
    return dg.Output(result.model, metadata={
        "param_count": result.param_count,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "training_seconds": round(result.seconds, 2),
        "device": result.device,
        "learning_curves": dg.MetadataValue.md(learning_curve_markdown(result.history)),
    })


@dg.asset(
    partitions_def=team_week_partitions,
    group_name="training",
    kinds={"catboost"},
    owners=OWNERS,
    pool=GPU_POOL,
    op_tags=gpu_op_tags(),
    io_manager_key="catboost_io_manager",
    description="CatBoost classifier tuned by CatBoost's own cross-validated search, early-stopped on validation.",
)
def catboost_model(context: dg.AssetExecutionContext, config: CatBoostConfig, train_split: pd.DataFrame,
                   validation_split: pd.DataFrame) -> dg.Output[Any]:
    from turbine_dagster.core.catboost_model import feature_importance_markdown, train_catboost_model

    try:
        result = train_catboost_model(train_split, validation_split, config.search_params(),
                                      context.log.info, where=context.partition_key)
    except ValueError as error:
        raise _training_failure(context, error) from error
    top = result.feature_importance.head(10)
    return dg.Output(result.model, metadata={
        "chosen_parameters": dg.MetadataValue.json(result.best_params),
        f"cv_{result.cv_metric}": result.cv_score,
        "best_iteration": result.best_iteration,
        "training_seconds": round(result.seconds, 2),
        "device": result.device,
        "feature_importance": dg.MetadataValue.md(
            top.to_markdown(index=False) + "\n\n" + feature_importance_markdown(result.feature_importance)
        ),
    })


model_assets = [tf_model, catboost_model]
