"""Training and prediction parameters of every model kind, in a module without TensorFlow, CatBoost or a trainer: the
trainers and the scorer take them, and the code servers read their defaults (the Launchpad's) without loading any."""

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from turbine_dagster.core.data.cases import TRAINING_SEED
from turbine_dagster.core.models.checkpoints import checkpoint_steps


@dataclass(frozen=True)
class TFTrainingParams:
    hidden_units: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    log1p: bool = True
    """Feed log(1 + x) of the features to the input normalisation (``feature_transform.Log1p``)."""
    epochs: int | None = None
    """Upper bound on epochs; None: ``auto_epochs`` of the fit cases (200 up to 20 k, fewer as epochs grow long)."""
    batch_size: int | None = None
    """Training cases per device per gradient step; None: ``auto_batch_size`` of the fit cases (32 on
    WDBC-sized folds, growing with the rows so an epoch stays a few hundred steps)."""
    learning_rate: float = 1e-3
    class_weight: Literal["balanced"] | None = "balanced"
    patience: int | None = None
    """Epochs without a better validation loss before stopping; None: a tenth of the epoch bound, at least 5."""
    seed: int = TRAINING_SEED
    checkpoint_epochs: tuple[int, ...] = ()
    """1-based epochs at whose end the model is kept as a checkpoint, besides the best epoch. Epochs that
    early stopping left unreached have no checkpoint."""
    devices: tuple[str, ...] = ()
    """TensorFlow devices to train each network on, data-parallel (``MirroredStrategy``) when more than one,
    e.g. ``("GPU:0", "GPU:1")``; empty: every GPU the process sees, else the CPU."""

    def __post_init__(self):
        object.__setattr__(self, "hidden_units", tuple(self.hidden_units))  # config systems hand over lists
        object.__setattr__(self, "devices", tuple(self.devices))
        if not self.hidden_units or min(self.hidden_units) < 1:
            raise ValueError(f"hidden_units needs one positive width per FCN block, got {self.hidden_units}")
        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        if (
            (self.epochs is not None and self.epochs < 1)
            or (self.batch_size is not None and self.batch_size < 1)
            or (self.patience is not None and self.patience < 0)
        ):
            raise ValueError(
                "need epochs >= 1, batch_size >= 1, patience >= 0 (or None: sized to the data); "
                f"got {self.epochs}, {self.batch_size}, {self.patience}"
            )
        object.__setattr__(
            self,
            "checkpoint_epochs",
            checkpoint_steps(
                self.checkpoint_epochs, self.epochs or MAX_AUTO_EPOCHS, name="checkpoint_epochs", limit_name="epochs"
            ),
        )

    def sized_for(self, fit_rows: int) -> "TFTrainingParams":
        """These parameters with every None (epochs, batch size, patience) sized for ``fit_rows`` fit cases."""
        epochs = self.epochs or auto_epochs(fit_rows)
        return replace(
            self,
            epochs=epochs,
            batch_size=self.batch_size or auto_batch_size(fit_rows),
            patience=self.patience if self.patience is not None else max(MIN_AUTO_PATIENCE, epochs // 10),
            checkpoint_epochs=tuple(epoch for epoch in self.checkpoint_epochs if epoch <= epochs),
        )


MAX_AUTO_EPOCHS = 200
AUTO_EPOCHS_FULL_UP_TO = 20_000
MIN_AUTO_EPOCHS, MIN_AUTO_PATIENCE = 20, 5


def auto_epochs(fit_rows: int) -> int:
    """200 epochs up to 20 k fit cases, then fewer in proportion to the square root of the rows (at least 20):
    an epoch of 640 k cases (a 1 M-row team's fold) already shows the network 2,000 WDBC epochs of cases."""
    scale = math.sqrt(AUTO_EPOCHS_FULL_UP_TO / max(fit_rows, AUTO_EPOCHS_FULL_UP_TO))
    return max(MIN_AUTO_EPOCHS, round(MAX_AUTO_EPOCHS * scale))


AUTO_BATCH_ROWS_PER_STEP = 256
"""``auto_batch_size``: about this many fit cases per gradient step of an epoch, until the largest batch."""
MIN_AUTO_BATCH, MAX_AUTO_BATCH = 32, 4096


def auto_batch_size(fit_rows: int) -> int:
    """A power of two between 32 and 4096, about ``fit_rows / 256``: 32 for WDBC-sized folds (what the models
    were tuned at), 256 at 64 k fit cases, 4096 from 1 M on, where batch 32 would take ~30 k steps an epoch."""
    wanted = max(fit_rows, 1) / AUTO_BATCH_ROWS_PER_STEP
    return int(min(MAX_AUTO_BATCH, max(MIN_AUTO_BATCH, 2 ** round(math.log2(max(wanted, 1))))))


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
    use_gpu: bool = True
    """CatBoost's ``task_type="GPU"`` on every GPU the process sees, when there is one; the CPU otherwise."""
    thread_count: int = -1
    search_max_rows: int = 20_000
    """The search runs once per cross-fitting, on a stratified sample of at most this many development cases;
    each fold's model is then fitted with the chosen parameters."""
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
        if self.search_max_rows < 100:
            raise ValueError(f"CatBoost search_max_rows must be at least 100, got {self.search_max_rows}")
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


@dataclass(frozen=True)
class LogisticParams:
    C: float = 1.0
    """Inverse strength of the L2 penalty on the standardised features (scikit-learn's ``C``): smaller is stronger."""
    log1p: bool = True
    """Fit on log1p of the features (sizes and counts, skewed to the right) rather than on the features themselves."""
    class_weight: Literal["balanced"] | None = None
    max_iter: int = 1000
    """Upper bound on the lbfgs solver's iterations."""
    seed: int = TRAINING_SEED
    """Seeds the early-stopping split of each fold (the solver itself is deterministic)."""

    def __post_init__(self):
        if not (math.isfinite(self.C) and self.C > 0):
            raise ValueError(f"logistic regression C must be a positive number, got {self.C!r}")
        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        if self.max_iter < 1:
            raise ValueError(f"logistic regression max_iter must be at least 1, got {self.max_iter}")


PREDICT_BATCH_ROWS = 8192
"""Rows per predict batch of every model kind: bounds the memory of one prediction call."""
