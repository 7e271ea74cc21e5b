"""Training and prediction parameters of both models, in a module without TensorFlow or CatBoost: the trainers
and the scorer take them, and the code servers read their defaults (the Launchpad's) without loading either library."""

from dataclasses import dataclass, field
from typing import Any, Literal

from turbine_dagster.core.data.cases import TRAINING_SEED
from turbine_dagster.core.models.checkpoints import checkpoint_steps


@dataclass(frozen=True)
class TFTrainingParams:
    hidden_units: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    epochs: int = 200
    batch_size: int = 32
    learning_rate: float = 1e-3
    class_weight: Literal["balanced"] | None = "balanced"
    patience: int = 20
    seed: int = TRAINING_SEED
    checkpoint_epochs: tuple[int, ...] = ()
    """1-based epochs at whose end the model is kept as a checkpoint, besides the best epoch. Epochs that
    early stopping left unreached have no checkpoint."""

    def __post_init__(self):
        object.__setattr__(self, "hidden_units", tuple(self.hidden_units))  # config systems hand over lists
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"hidden_units needs one positive width per FCN block, got {self.hidden_units}")
        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 0:
            raise ValueError(
                "need epochs >= 1, batch_size >= 1, patience >= 0; "
                f"got {self.epochs}, {self.batch_size}, {self.patience}"
            )
        object.__setattr__(
            self,
            "checkpoint_epochs",
            checkpoint_steps(self.checkpoint_epochs, self.epochs, name="checkpoint_epochs", limit_name="epochs"),
        )


def _default_param_grid() -> dict[str, list[Any]]:
    return {"depth": [4, 6], "learning_rate": [0.03, 0.1], "l2_leaf_reg": [1.0, 3.0]}


@dataclass(frozen=True)
class CatBoostSearchParams:
    search: Literal["grid", "randomized"] = "grid"
    param_grid: dict[str, list[Any]] = field(default_factory=_default_param_grid)
    n_iter: int = 10
    """Candidates sampled by the randomized search (at most the grid size); the grid search tries them all."""
    cv_folds: int = 3
    iterations: int = 500
    early_stopping_rounds: int = 50
    class_weight: Literal["balanced"] | None = "balanced"
    seed: int = TRAINING_SEED
    use_gpu: bool = False
    thread_count: int = -1
    checkpoint_iterations: tuple[int, ...] = ()
    """Tree counts at which the final model is kept as a checkpoint (its first N trees), besides the best
    iteration. Counts beyond the trees early stopping let the final fit grow have no checkpoint."""

    def __post_init__(self):
        if self.search not in ("grid", "randomized"):
            raise ValueError(f"CatBoost search must be 'grid' or 'randomized', got {self.search!r}")
        if not self.param_grid:
            raise ValueError("CatBoost param_grid is empty; give at least one parameter with candidate values")
        empty = [name for name, values in self.param_grid.items() if len(values) == 0]
        if empty:
            raise ValueError(f"CatBoost param_grid has no candidate values for {empty}")
        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        if self.cv_folds < 2 or self.n_iter < 1:
            raise ValueError(
                f"CatBoost search needs cv_folds >= 2 and n_iter >= 1, got {self.cv_folds} and {self.n_iter}"
            )
        object.__setattr__(
            self,
            "checkpoint_iterations",
            checkpoint_steps(
                self.checkpoint_iterations, self.iterations, name="checkpoint_iterations", limit_name="iterations"
            ),
        )


PREDICT_BATCH_ROWS = 8192
"""Rows per predict batch of either model kind: bounds the memory of one prediction call."""
