import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from turbine_dagster.core.models.interface import predict_malignant_proba
from turbine_dagster.core.models.params import TFTrainingParams, auto_batch_size, auto_epochs
from turbine_dagster.core.models.tf_model import train_tf_model, training_batches
from turbine_dagster.core.schema import BENIGN, CASE_ID, MALIGNANT, TARGET
from turbine_dagster.presentation.training import learning_curve_markdown
from turbine_dagster_tests.core.models.helpers import mean_malignant_proba_by_class

# A high learning rate makes validation loss turn up within a few epochs, so early stopping triggers.
FAST = TFTrainingParams(hidden_units=(16, 8), epochs=12, learning_rate=0.05, patience=3)


@pytest.fixture(scope="module")
def trained(split):
    epochs_seen: list[tuple[int, dict[str, float]]] = []
    result = train_tf_model(*split, FAST, on_epoch_end=lambda epoch, logs: epochs_seen.append((epoch, logs)))
    return result, epochs_seen


def test_reports_one_callback_per_epoch_numbered_from_one(trained):
    result, epochs_seen = trained

    assert [epoch for epoch, _ in epochs_seen] == list(range(1, result.epochs_run + 1))
    assert {"loss", "val_loss", "auc", "val_auc"} <= set(epochs_seen[0][1])


def test_result_describes_the_run(trained):
    result, _ = trained

    assert result.epochs_run == len(result.history["loss"]) <= FAST.epochs
    # EarlyStopping restored the epoch with the lowest validation loss (epochs count from 1).
    assert result.best_epoch == result.history["val_loss"].index(min(result.history["val_loss"])) + 1
    assert result.best_val_loss == min(result.history["val_loss"])
    assert result.param_count == result.model.count_params() > 0
    assert result.device == "CPU" or result.device.startswith("GPU:0")
    assert result.seconds > 0


def test_early_stopping_restores_the_best_epoch_weights(trained, split):
    result, _ = trained
    _, validation = split
    assert result.best_epoch < result.epochs_run < FAST.epochs  # stopped early, after the best epoch
    features = validation.drop(columns=[CASE_ID, TARGET]).to_numpy(np.float32)
    labels = (validation[TARGET] == MALIGNANT).to_numpy(np.float32)

    loss = result.model.evaluate(features, labels, verbose=0, return_dict=True)["loss"]

    assert loss == pytest.approx(result.best_val_loss, rel=1e-5)


def test_output_is_probability_of_malignant(trained, split):
    result, _ = trained
    _, validation = split

    malignant, benign = mean_malignant_proba_by_class(result.model, validation)

    assert malignant > benign


def test_same_seed_gives_identical_predictions(trained, split):
    first, _ = trained
    _, validation = split

    second = train_tf_model(*split, FAST)

    assert second.history == first.history
    np.testing.assert_array_equal(
        predict_malignant_proba(second.model, validation), predict_malignant_proba(first.model, validation)
    )


def test_learning_curve_is_an_embedded_png(trained):
    result, _ = trained

    assert learning_curve_markdown([result.history, result.history]).startswith(
        "![Learning curve](data:image/png;base64,"
    )


def test_single_class_split_is_refused_naming_where(split):
    train, validation = split
    benign_only = validation[validation[TARGET] == BENIGN]

    with pytest.raises(ValueError, match=r"validation split for team_a\|2026-11-22 has a single class \(benign only"):
        train_tf_model(train, benign_only, FAST, where="team_a|2026-11-22")


def test_empty_split_is_refused_naming_where(split):
    train, validation = split

    with pytest.raises(ValueError, match=r"train split for team_a\|2026-11-22 is empty"):
        train_tf_model(train.iloc[:0], validation, FAST, where="team_a|2026-11-22")


def test_params_refuse_an_unknown_class_weight():
    with pytest.raises(ValueError, match="class_weight must be 'balanced' or None"):
        TFTrainingParams(class_weight="Balanced")


def test_batch_size_and_epochs_default_to_sizes_that_grow_with_the_fit_cases():
    wdbc_fold, large_fold = TFTrainingParams().sized_for(290), TFTrainingParams().sized_for(640_000)

    assert (wdbc_fold.batch_size, wdbc_fold.epochs, wdbc_fold.patience) == (32, 200, 20)
    assert large_fold.batch_size == 2048 and 20 <= large_fold.epochs < 50 and large_fold.patience == 5
    assert [auto_batch_size(rows) for rows in (10, 64_000, 10_000_000)] == [32, 256, 4096]
    assert auto_epochs(20_000) == 200 and auto_epochs(10**8) == 20
    # What is given is kept.
    assert TFTrainingParams(batch_size=8, epochs=3, patience=0).sized_for(10**6).batch_size == 8


def test_an_epoch_is_ceil_of_fit_cases_over_the_batch_size(split):
    train, validation = split
    steps: list[int] = []

    class CountSteps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)

    params = TFTrainingParams(hidden_units=(4,), epochs=1, batch_size=50)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.callbacks, "EarlyStopping", lambda **kwargs: CountSteps())
        result = train_tf_model(train, validation, params)

    assert result.batch_size == 50 and result.replicas == 1
    assert len(steps) == -(-len(train) // 50)


# TensorFlow fixes its devices at start-up: a fresh process splits the CPU into two logical devices, as a
# machine with two GPUs would show two.
TWO_DEVICES = """
import json, sys
import tensorflow as tf
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
import pandas as pd
from turbine_dagster.core.models.params import TFTrainingParams
from turbine_dagster.core.models import tf_model
from turbine_dagster.core.models.interface import predict_malignant_proba
from turbine_dagster.core.models.tf_model import train_tf_model, training_batches
train, validation = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
replicas_at_build = []
build = tf_model.build_tf_model
def recording_build(*args, **kwargs):
    model = build(*args, **kwargs)
    replicas_at_build.append(model.distribute_strategy.num_replicas_in_sync)
    return model
tf_model.build_tf_model = recording_build
params = TFTrainingParams(hidden_units=(4,), epochs=2, batch_size=16, devices=("CPU:0", "CPU:1"))
result = train_tf_model(train, validation, params)
result_default = train_tf_model(train, validation, TFTrainingParams(hidden_units=(4,), epochs=1))
print(json.dumps({"device": result.device, "replicas": result.replicas, "batch_size": result.batch_size,
                  "replicas_at_build": replicas_at_build,
                  "served_replicas": result.model.distribute_strategy.num_replicas_in_sync,
                  "scores": len(predict_malignant_proba(result.model, validation)), "cases": len(validation),
                  "default_device": result_default.device, "default_replicas": result_default.replicas}))
"""


def test_training_mirrors_the_network_across_the_configured_devices(split, tmp_path):
    files = [tmp_path / "train.parquet", tmp_path / "validation.parquet"]
    for frame, file in zip(split, files, strict=True):
        frame.to_parquet(file)

    completed = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, *map(str, files)], capture_output=True, text=True, timeout=300
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    # The network that trained had its variables mirrored on both devices; the second build is its served copy.
    assert seen["replicas"] == 2 and seen["replicas_at_build"][:2] == [2, 1]
    assert seen["device"] == "2 × CPU (CPU:0, CPU:1)"
    assert seen["batch_size"] == 32  # 16 per replica
    # What is returned (scored, averaged, stored) is the trained network on the default device: one score a case.
    assert seen["served_replicas"] == 1 and seen["scores"] == seen["cases"]
    # Without devices named and without GPUs: TensorFlow's default placement, one replica.
    assert (seen["default_device"], seen["default_replicas"]) == ("CPU", 1)


def test_training_batches_give_every_row_once_an_epoch_in_a_new_seeded_order():
    features = np.arange(20, dtype=np.float32).reshape(10, 2)
    labels, weights = np.arange(10, dtype=np.float32), np.arange(10, dtype=np.float32) / 10
    batches = training_batches(features, labels, weights, batch_size=4, seed=7)

    epochs = [[tuple(part.numpy() for part in batch) for batch in batches] for _ in range(2)]

    for epoch in epochs:
        assert [len(batch[1]) for batch in epoch] == [4, 4, 2]
        rows = np.concatenate([batch[1] for batch in epoch]).astype(int)
        assert sorted(rows) == list(range(10))
        for batch_features, batch_labels, batch_weights in epoch:  # each row's parts stay together
            np.testing.assert_array_equal(batch_features[:, 0], 2 * batch_labels)
            np.testing.assert_allclose(batch_weights, batch_labels / 10)
    orders = [np.concatenate([batch[1] for batch in epoch]).tolist() for epoch in epochs]
    assert orders[0] != orders[1]
    again = [np.concatenate([b[1].numpy() for b in training_batches(features, labels, weights, 4, seed=7)]).tolist()]
    assert again[0] == orders[0]
    unshuffled = training_batches(features, labels, None, batch_size=4)
    assert np.concatenate([batch[1].numpy() for batch in unshuffled]).tolist() == labels.tolist()


def test_the_network_normalises_log1p_of_the_features_and_reloads_in_safe_mode(trained, split, tmp_path):
    from turbine_dagster.core.storage.model_files import load_model, save_model

    result, _ = trained
    _, validation = split
    model = result.model
    log_layer, normalization = model.get_layer("log1p"), model.get_layer("feature_normalization")
    features = validation.drop(columns=[CASE_ID, TARGET]).to_numpy(np.float32)
    normalised = keras.ops.convert_to_numpy(normalization(log_layer(features)))
    # Adapted on log1p of the fit cases: the normalised log features are centred, not the raw ones.
    assert abs(float(np.mean(normalised))) < 0.5
    assert np.allclose(keras.ops.convert_to_numpy(log_layer(features)), np.log1p(features), rtol=1e-6)

    save_model(model, tmp_path / "model.keras")
    reloaded = load_model(tmp_path / "model.keras")  # keras safe_mode: the layer is registered, not a Lambda
    assert np.array_equal(predict_malignant_proba(reloaded, validation), predict_malignant_proba(model, validation))


def test_log1p_can_be_switched_off():
    from turbine_dagster.core.models.tf_model import build_tf_model

    features = np.abs(np.random.default_rng(0).normal(size=(20, 30))).astype(np.float32)
    layers = [layer.name for layer in build_tf_model(features, TFTrainingParams(log1p=False)).layers]
    assert "log1p" not in layers and "feature_normalization" in layers
