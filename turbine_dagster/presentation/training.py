"""Training as people read it: learning curves of the Keras folds, CatBoost's feature importance (a table and a
PNG), the logistic regression's coefficients, and the checkpoints kept with their metrics."""

from collections.abc import Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from turbine_dagster.core.models.checkpoints import Checkpoint
from turbine_dagster.presentation.figures import figure_markdown
from turbine_dagster.presentation.tables import padded_markdown_table


def learning_curve_markdown(histories: Sequence[dict[str, list[float]]]) -> str:
    """Loss (and AUC when recorded) per epoch for train and early-stopping data, one line per fold, as a
    Markdown PNG; a dashed line marks each fold's best epoch."""
    panels = [name for name in ("loss", "auc") if name in histories[0]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for axis, name in zip(axes[0], panels, strict=True):
        for fold, history in enumerate(histories):
            epochs = np.arange(1, len(history[name]) + 1)
            (line,) = axis.plot(epochs, history[name], alpha=0.5, label=f"fold {fold} train")
            if f"val_{name}" in history:
                axis.plot(epochs, history[f"val_{name}"], color=line.get_color(), label=f"fold {fold} early-stopping")
            if name == "loss" and "val_loss" in history:
                axis.axvline(
                    int(np.argmin(history["val_loss"])) + 1, color=line.get_color(), linestyle="--", linewidth=1
                )
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
    axes[0][0].legend(fontsize="x-small")
    fig.suptitle("Learning curves (dashed: best epoch per fold)")
    return figure_markdown(fig, "Learning curve")


def feature_importance_markdown(feature_importance: pd.DataFrame, top: int = 15) -> str:
    """Horizontal bar plot of the ``top`` most important features, as a Markdown PNG."""
    shown = feature_importance.nlargest(top, "importance").iloc[::-1]  # largest bar at the top
    fig, axis = plt.subplots(figsize=(6, 0.3 * len(shown) + 1))
    axis.barh(shown["feature"], shown["importance"])
    axis.set_xlabel("importance (prediction values change)")
    axis.set_title(f"Top {len(shown)} features")
    return figure_markdown(fig, "Feature importance")


def feature_importance_table_markdown(feature_importance: pd.DataFrame, top: int = 10) -> str:
    """The first ``top`` rows of a feature-importance table (most important first), as a Markdown table."""
    return padded_markdown_table(feature_importance.head(top))


def coefficients_table_markdown(coefficients: pd.DataFrame, top: int = 10) -> str:
    """The ``top`` rows of a coefficient table (``feature``, ``coefficient``; largest |coefficient| first) as a
    Markdown table, with the direction each coefficient pushes P(malignant)."""
    shown = coefficients.head(top).assign(
        towards=lambda table: np.where(table["coefficient"] > 0, "malignant", "benign"),
        coefficient=lambda table: table["coefficient"].round(4),
    )
    return padded_markdown_table(shown)


def checkpoints_table_markdown(checkpoints: Iterable[Checkpoint]) -> str:
    """One row per checkpoint: its id, step, threshold and validation metrics, rounded to 4 decimals."""
    rows = [
        {
            "checkpoint": c.checkpoint_id,
            "step": c.step,
            "threshold": round(c.threshold, 4),
            **{k: round(v, 4) for k, v in c.metrics.items()},
        }
        for c in checkpoints
    ]
    return padded_markdown_table(pd.DataFrame(rows))
