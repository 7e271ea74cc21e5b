"""Build and train the Keras model: normalised features -> FCN blocks -> sigmoid P(malignant).

``train_tf_model`` fits one network; ``cross_fit_tf_model`` fits one per cross-fitting fold and serves
their average (see ``crossfit``).
"""

import functools
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from turbine_dagster.core.data.cases import EARLY_STOPPING_FRACTION
from turbine_dagster.core.models.checkpoints import BEST, Checkpoint, take_checkpoint
from turbine_dagster.core.models.crossfit import CrossFitResult, cross_fit
from turbine_dagster.core.models.fcn import FCNBlock
from turbine_dagster.core.models.interface import feature_matrix, predict_malignant_proba, require_trainable_split
from turbine_dagster.core.models.params import TFTrainingParams
from turbine_dagster.core.schema import FEATURE_COLUMNS, MALIGNANT, TARGET

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called after every epoch with the 1-based epoch number and that epoch's metrics."""


@dataclass(frozen=True)
class TFTrainingResult:
    model: keras.Model
    history: dict[str, list[float]]
    """Per-epoch metrics: loss, auc, recall and their ``val_`` twins; recall is malignant recall."""
    epochs_run: int
    best_epoch: int
    """1-based epoch whose weights the model holds (EarlyStopping restores them)."""
    best_val_loss: float
    param_count: int
    device: str
    """"CPU" or e.g. "GPU:0 (NVIDIA H100 80GB HBM3)"."""
    seconds: float
    checkpoints: list[Checkpoint] = field(default_factory=list)
    """One per configured epoch that training reached, in epoch order, then ``best`` (whose model is
    ``model`` itself). Each holds its own model object and the validation P(malignant) it gave."""


def training_device() -> str:
    """The device Keras places the model on: the first GPU TensorFlow sees, else the CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "unknown")
    return f"GPU:0 ({name})"


def _grow_gpu_memory_on_demand() -> None:
    """TensorFlow otherwise reserves all memory of every GPU it sees, starving other runs sharing them."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # initialised by an earlier training in this process: the setting can no longer change


def malignant_labels(frame: pd.DataFrame) -> np.ndarray:
    """1.0 for malignant, 0.0 for benign: the sigmoid output is P(malignant)."""
    return (frame[TARGET].to_numpy() == MALIGNANT).astype(np.float32)


def balanced_class_weight(labels: np.ndarray) -> dict[int, float]:
    """Weights that give each class the same total weight (scikit-learn's "balanced"), as Keras takes them."""
    classes = np.unique(labels.astype(int))
    weights = compute_class_weight("balanced", classes=classes, y=labels.astype(int))
    return dict(zip(classes.tolist(), weights.tolist(), strict=True))


class _EpochCheckpoints(keras.callbacks.Callback):
    """At the end of each configured epoch: the model saved as ``.keras`` and its validation P(malignant)."""

    def __init__(self, epochs: tuple[int, ...], folder: Path, validation_features: np.ndarray):
        super().__init__()
        self._epochs = set(epochs)
        self._folder = folder
        self._validation_features = validation_features
        self.taken: list[tuple[int, Path, np.ndarray, float]] = []
        """(epoch, saved file, validation P(malignant), val_loss) per checkpoint, in epoch order."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        number = epoch + 1
        if number not in self._epochs:
            return
        # A file, not a copy of the weights: it is the native artifact, and a clone with copied weights
        # loses the adapted Normalization state.
        file = self._folder / f"epoch-{number:04d}.keras"
        self.model.save(file)
        p_malignant = predict_malignant_proba(self.model, self._validation_features)
        self.taken.append((number, file, p_malignant, float((logs or {})["val_loss"])))


def build_tf_model(train_features: np.ndarray, params: TFTrainingParams, name: str = "turbine_fcn") -> keras.Model:
    """The network, its input normalisation adapted on the training features only."""
    normalization = keras.layers.Normalization(name="feature_normalization")
    normalization.adapt(train_features)

    inputs = keras.Input(shape=(len(FEATURE_COLUMNS),), name="features")
    hidden = normalization(inputs)
    for index, units in enumerate(params.hidden_units):
        hidden = FCNBlock(units, dropout=params.dropout, name=f"fcn_{index}")(hidden)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="p_malignant")(hidden)

    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.Recall(name="recall")],
    )
    return model


def train_tf_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    params: TFTrainingParams,
    on_epoch_end: EpochCallback | None = None,
    *,
    where: str | None = None,
    model_name: str = "turbine_fcn",
) -> TFTrainingResult:
    """Train with early stopping on the validation loss; the returned model holds the best epoch's weights.

    ``params.checkpoint_epochs`` are kept as checkpoints (saved at the end of the epoch, reloaded after
    training), plus ``best``; an epoch after early stopping ended training has none.

    On the CPU a fixed seed gives identical models. Op determinism is switched on for the whole process
    (TensorFlow offers no way back), which slows some GPU kernels.
    """
    require_trainable_split(train, split="train", where=where)
    require_trainable_split(validation, split="validation", where=where)
    train_features = feature_matrix(train, split="train", where=where)
    validation_features = feature_matrix(validation, split="validation", where=where)
    train_labels = malignant_labels(train)
    validation_labels = malignant_labels(validation)

    _grow_gpu_memory_on_demand()
    device = training_device()
    keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()

    started = time.perf_counter()
    model = build_tf_model(train_features, params, model_name)
    with tempfile.TemporaryDirectory(prefix="turbine-checkpoints-") as scratch:
        epoch_checkpoints = _EpochCheckpoints(params.checkpoint_epochs, Path(scratch), validation_features)
        callbacks: list[keras.callbacks.Callback] = [
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience, restore_best_weights=True)
        ]
        if params.checkpoint_epochs:
            callbacks.append(epoch_checkpoints)
        if on_epoch_end is not None:
            callbacks.append(
                keras.callbacks.LambdaCallback(
                    on_epoch_end=lambda epoch, logs: on_epoch_end(
                        epoch + 1, {name: float(value) for name, value in (logs or {}).items()}
                    )
                )
            )
        fit = model.fit(
            train_features,
            train_labels,
            validation_data=(validation_features, validation_labels),
            epochs=params.epochs,
            batch_size=params.batch_size,
            class_weight=balanced_class_weight(train_labels) if params.class_weight == "balanced" else None,
            callbacks=callbacks,
            verbose=0,
        )
        history = {name: [float(value) for value in values] for name, values in fit.history.items()}
        best_index = int(np.argmin(history["val_loss"]))
        is_malignant = validation_labels == 1.0
        # Loaded back from the saved files, so each checkpoint holds exactly what the registry will store.
        checkpoints = [
            take_checkpoint("epoch", epoch, keras.models.load_model(file), is_malignant, p_malignant, val_loss)
            for epoch, file, p_malignant, val_loss in epoch_checkpoints.taken
        ]
    # EarlyStopping restored the best epoch's weights: the best checkpoint is the returned model.
    checkpoints.append(
        take_checkpoint(
            BEST,
            best_index + 1,
            model,
            is_malignant,
            predict_malignant_proba(model, validation_features),
            history["val_loss"][best_index],
        )
    )
    seconds = time.perf_counter() - started

    return TFTrainingResult(
        model=model,
        history=history,
        epochs_run=len(history["val_loss"]),
        best_epoch=best_index + 1,
        best_val_loss=history["val_loss"][best_index],
        param_count=model.count_params(),
        device=device,
        seconds=seconds,
        checkpoints=checkpoints,
    )


def average_models(models: Sequence[keras.Model]) -> keras.Model:
    """One Keras model whose output is the mean of ``models``' P(malignant): the cross-fitted ensemble,
    saved and loaded as a single native ``.keras`` file. Model names must differ (``model_name``)."""
    if len(models) == 1:
        return models[0]
    inputs = keras.Input(shape=(len(FEATURE_COLUMNS),), name="features")
    mean = keras.layers.Average(name="mean_p_malignant")([model(inputs) for model in models])
    return keras.Model(inputs, mean, name="turbine_fcn_ensemble")


def cross_fit_tf_model(
    development: pd.DataFrame,
    params: TFTrainingParams,
    *,
    early_stopping_fraction: float = EARLY_STOPPING_FRACTION,
    on_epoch_end: Callable[[int, int, dict[str, float]], None] | None = None,
    where: str | None = None,
) -> CrossFitResult:
    """One Keras model per fold (``crossfit.cross_fit``); the result's model is their average.

    ``on_epoch_end(fold, epoch, logs)`` is called after every epoch of every fold (fold 0-based, epoch 1-based).
    """

    def train_fold(fit: pd.DataFrame, early_stop: pd.DataFrame, fold: int) -> TFTrainingResult:
        callback = None if on_epoch_end is None else functools.partial(on_epoch_end, fold)
        return train_tf_model(fit, early_stop, params, callback, where=where, model_name=f"fold_{fold}")

    return cross_fit(
        development, train_fold, average_models, early_stopping_fraction=early_stopping_fraction, seed=params.seed
    )
