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
from sklearn.utils.class_weight import compute_sample_weight

from turbine_dagster.core.data.cases import EARLY_STOPPING_FRACTION
from turbine_dagster.core.models.checkpoints import BEST, Checkpoint, take_checkpoint
from turbine_dagster.core.models.crossfit import CrossFitResult, cross_fit
from turbine_dagster.core.models.fcn import FCNBlock
from turbine_dagster.core.models.feature_transform import Log1p
from turbine_dagster.core.models.interface import feature_matrix, predict_malignant_proba, require_trainable_split
from turbine_dagster.core.models.params import PREDICT_BATCH_ROWS, TFTrainingParams
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
    """"CPU", e.g. "GPU:0 (NVIDIA H100 80GB HBM3)", or the replicas it trained on, e.g. "2 × GPU (GPU:0, GPU:1)"."""
    replicas: int
    """Devices the network trained on at once (``MirroredStrategy`` replicas)."""
    batch_size: int
    """Training cases per gradient step over all replicas."""
    seconds: float
    checkpoints: list[Checkpoint] = field(default_factory=list)
    """One per configured epoch that training reached, in epoch order, then ``best`` (whose model is
    ``model`` itself). Each holds its own model object and the validation P(malignant) it gave."""


def distribution_strategy(devices: Sequence[str] = ()) -> tf.distribute.Strategy:
    """Where a network trains: ``MirroredStrategy`` (one replica per device, gradients summed) over ``devices``,
    or over every GPU TensorFlow sees when none are named and there are several; one named device, or TensorFlow's
    default placement (the first GPU, else the CPU), otherwise."""
    names = list(devices) or [device.name for device in tf.config.list_logical_devices("GPU")]
    if len(names) > 1:
        return tf.distribute.MirroredStrategy(names)
    if names and devices:
        return tf.distribute.OneDeviceStrategy(names[0])
    return tf.distribute.get_strategy()


def device_label(strategy: tf.distribute.Strategy) -> str:
    """The device label: "CPU", "GPU:0 (NVIDIA H100 80GB HBM3)", or the replicas, e.g. "2 × GPU (GPU:0, GPU:1)"."""
    is_default = strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy()
    replicas = [] if is_default else [name.rsplit("device:", 1)[-1] for name in strategy.extended.worker_devices]
    if len(replicas) > 1:
        return f"{len(replicas)} × {replicas[0].split(':')[0]} ({', '.join(replicas)})"
    if replicas:
        return replicas[0]
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


def balanced_sample_weight(labels: np.ndarray) -> np.ndarray:
    """Per case, the weight that gives each class the same total weight (scikit-learn's "balanced"), as float32."""
    return compute_sample_weight("balanced", labels.astype(int)).astype(np.float32)


def training_batches(
    features: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, batch_size: int, seed: int | None = None
) -> tf.data.Dataset:
    """Batches of (features, labels[, weights]) as a ``tf.data`` pipeline, prefetched; reshuffled every epoch
    (seeded) when ``seed`` is given. Keras splits each batch across the strategy's replicas.

    The shuffle permutes row numbers and each batch gathers its rows from the arrays, held once as tensors: a
    shuffle buffer of the rows themselves held every row a second time, one small tensor each (+1 GB at 640 k)."""
    arrays = (features, labels) if weights is None else (features, labels, weights)
    rows = tf.data.Dataset.range(len(features))
    if seed is not None:
        rows = rows.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    # The arrays travel beside each batch of row numbers rather than being captured by the map function, so they
    # are freed with the pipeline.
    whole = tf.data.Dataset.from_tensors(arrays).repeat()
    return (
        tf.data.Dataset.zip(rows.batch(batch_size), whole)
        .map(
            lambda batch, columns: tuple(tf.gather(column, batch) for column in columns),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


class _EpochCheckpoints(keras.callbacks.Callback):
    """At the end of each configured epoch: the model saved as ``.keras``, with its validation loss."""

    def __init__(self, epochs: tuple[int, ...], folder: Path):
        super().__init__()
        self._epochs = set(epochs)
        self._folder = folder
        self.taken: list[tuple[int, Path, float]] = []
        """(epoch, saved file, val_loss) per checkpoint, in epoch order."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        number = epoch + 1
        if number not in self._epochs:
            return
        # A file, not a copy of the weights: it is the native artifact, and a clone with copied weights
        # loses the adapted Normalization state.
        file = self._folder / f"epoch-{number:04d}.keras"
        self.model.save(file)
        self.taken.append((number, file, float((logs or {})["val_loss"])))


def build_tf_model(train_features: np.ndarray, params: TFTrainingParams, name: str = "turbine_fcn") -> keras.Model:
    """The network, its input normalisation adapted on the (log1p of the) training features only."""
    normalization = keras.layers.Normalization(name="feature_normalization")
    inputs = keras.Input(shape=(len(FEATURE_COLUMNS),), name="features")
    if params.log1p:
        normalization.adapt(np.log1p(train_features))
        hidden = normalization(Log1p(name="log1p")(inputs))
    else:
        normalization.adapt(train_features)
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
    params = params.sized_for(len(train_features))

    _grow_gpu_memory_on_demand()
    keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()
    strategy = distribution_strategy(params.devices)
    replicas = strategy.num_replicas_in_sync
    batch_size = params.batch_size * replicas

    started = time.perf_counter()
    with strategy.scope():
        model = build_tf_model(train_features, params, model_name)
    weights = balanced_sample_weight(train_labels) if params.class_weight == "balanced" else None
    with tempfile.TemporaryDirectory(prefix="turbine-checkpoints-") as scratch:
        epoch_checkpoints = _EpochCheckpoints(params.checkpoint_epochs, Path(scratch))
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
            training_batches(train_features, train_labels, weights, batch_size, params.seed),
            validation_data=training_batches(validation_features, validation_labels, None, PREDICT_BATCH_ROWS),
            epochs=params.epochs,
            callbacks=callbacks,
            shuffle=False,  # the dataset reshuffles every epoch
            verbose=0,
        )
        history = {name: [float(value) for value in values] for name, values in fit.history.items()}
        best_index = int(np.argmin(history["val_loss"]))
        is_malignant = validation_labels == 1.0
        # Loaded back from the saved files (outside any strategy), so each checkpoint holds exactly what the
        # registry will store.
        checkpoints = []
        for epoch, file, val_loss in epoch_checkpoints.taken:
            snapshot = keras.models.load_model(file)
            p_malignant = predict_malignant_proba(snapshot, validation_features)
            checkpoints.append(take_checkpoint("epoch", epoch, snapshot, is_malignant, p_malignant, val_loss))
    # What is scored, averaged and stored is a fresh copy of the trained network on the default device: the trained
    # one keeps its training pipeline (the fit cases as tensors) alive as long as it lives, and mirrored variables
    # serve only inside their strategy (predict_on_batch outside it returns every replica's output).
    trained, model = model, build_tf_model(train_features, params, model_name)
    model.set_weights(trained.get_weights())
    del trained
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
        device=device_label(strategy),
        replicas=replicas,
        batch_size=batch_size,
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
