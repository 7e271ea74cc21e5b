"""The two models trained per team and week, stored as native artifacts by the model IO managers.

Both hold a slot of the ``gpu`` pool for their whole run (``granularity: run`` in dagster.yaml).
TensorFlow and CatBoost are imported inside the asset bodies so code servers load in seconds.
"""

from collections.abc import Iterator
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from turbine_dagster.defs.partitions import team_and_week, team_week_partitions
from turbine_dagster.defs.resources import GPU_POOL, PartitionFolders, gpu_op_tags

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
    checkpoint_epochs: list[int] = Field([], description="Epochs kept as checkpoints besides the best one.")


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
    checkpoint_iterations: list[int] = Field([], description="Tree counts kept as snapshots besides the best one.")

    def search_params(self) -> Any:
        from turbine_dagster.core.catboost_model import CatBoostSearchParams

        grid = {"depth": self.depth, "learning_rate": self.learning_rate, "l2_leaf_reg": self.l2_leaf_reg}
        settings = self.model_dump(exclude={"depth", "learning_rate", "l2_leaf_reg", "balanced_class_weight"})
        return CatBoostSearchParams(param_grid=grid, class_weight=_class_weight(self.balanced_class_weight), **settings)


def model_outs(name: str, io_manager_key: str, kinds: set[str], description: str) -> dict[str, dg.AssetOut]:
    """A model and its checkpoints: the native artifact, and the checkpoint list the champion registers."""
    return {
        name: dg.AssetOut(io_manager_key=io_manager_key, kinds=kinds, owners=OWNERS, description=description),
        f"{name}_checkpoints": dg.AssetOut(
            io_manager_key="json_io_manager", kinds={"json"}, owners=OWNERS,
            description=f"Checkpoints of {name} (configured steps and the best one): native artifacts and "
                        "validation metrics."),
    }


def _with_checkpoints(context: dg.AssetExecutionContext, store: PartitionFolders, name: str, result: Any,
                      metadata: dict[str, Any]) -> Iterator[dg.Output]:
    from turbine_dagster.core.checkpoints import save_checkpoints

    team, week = team_and_week(context)
    saved = save_checkpoints(result.checkpoints, store.folder(team, week, name))
    table = pd.DataFrame([{"checkpoint": c.checkpoint_id, "step": c.step, "threshold": round(c.threshold, 4),
                           **{k: round(v, 4) for k, v in c.metrics.items()}} for c in saved])
    yield dg.Output(result.model, output_name=name, metadata=metadata)
    yield dg.Output([c.to_dict() for c in saved], output_name=f"{name}_checkpoints",
                    metadata={"checkpoints": dg.MetadataValue.md(table.to_markdown(index=False)), "count": len(saved)})


def _class_weight(balanced: bool) -> str | None:
    return "balanced" if balanced else None


def _training_failure(context: dg.AssetExecutionContext, model: str, error: ValueError) -> dg.Failure:
    return dg.Failure(description=f"{model} for {context.partition_key}: {error}", allow_retries=False)


@dg.multi_asset(
    name="tf_model",
    outs=model_outs("tf_model", "keras_io_manager", {"tensorflow", "keras"},
                    "Keras classifier: input normalisation, a stack of FCN blocks, a sigmoid P(malignant)."),
    partitions_def=team_week_partitions,
    group_name="training",
    pool=GPU_POOL,
    op_tags=gpu_op_tags(),
)
def tf_model(context: dg.AssetExecutionContext, config: TFModelConfig, checkpoint_store: PartitionFolders,
             train_split: pd.DataFrame, validation_split: pd.DataFrame):
    from turbine_dagster.core.tf_model import TFTrainingParams, learning_curve_markdown, train_tf_model

    def log_epoch(epoch: int, logs: dict[str, float]) -> None:
        context.log.info(f"epoch {epoch}/{config.epochs}: loss {logs['loss']:.4f}, val_loss {logs['val_loss']:.4f}")

    try:
        result = train_tf_model(train_split, validation_split, TFTrainingParams(
            class_weight=_class_weight(config.balanced_class_weight),
            **config.model_dump(exclude={"balanced_class_weight"})), log_epoch,
                                where=context.partition_key)
    except ValueError as error:
        raise _training_failure(context, "tf_model", error) from error
    context.log.info(f"trained on {result.device} in {result.seconds:.1f} s; best epoch {result.best_epoch}")
    yield from _with_checkpoints(context, checkpoint_store, "tf_model", result, metadata={
        "param_count": result.param_count,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "training_seconds": round(result.seconds, 2),
        "device": result.device,
        "learning_curves": dg.MetadataValue.md(learning_curve_markdown(result.history)),
    })


@dg.multi_asset(
    name="catboost_model",
    outs=model_outs("catboost_model", "catboost_io_manager", {"catboost"},
                    "CatBoost classifier tuned by CatBoost's own cross-validated search, early-stopped on validation."),
    partitions_def=team_week_partitions,
    group_name="training",
    pool=GPU_POOL,
    op_tags=gpu_op_tags(),
)
def catboost_model(context: dg.AssetExecutionContext, config: CatBoostConfig, checkpoint_store: PartitionFolders,
                   train_split: pd.DataFrame, validation_split: pd.DataFrame):
    from turbine_dagster.core.catboost_model import feature_importance_markdown, train_catboost_model

    try:
        result = train_catboost_model(train_split, validation_split, config.search_params(),
                                      context.log.info, where=context.partition_key)
    except ValueError as error:
        raise _training_failure(context, "catboost_model", error) from error
    top = result.feature_importance.head(10)
    yield from _with_checkpoints(context, checkpoint_store, "catboost_model", result, metadata={
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
