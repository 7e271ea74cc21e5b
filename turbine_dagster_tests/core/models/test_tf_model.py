import numpy as np
import pytest

from turbine_dagster.core.models.interface import predict_malignant_proba
from turbine_dagster.core.models.params import TFTrainingParams
from turbine_dagster.core.models.tf_model import train_tf_model
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
