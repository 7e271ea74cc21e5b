import keras
import numpy as np
import pytest

from turbine_dagster.core.models.fcn import FCNBlock

FEATURES = 30


@pytest.fixture
def inputs() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(16, FEATURES)).astype(np.float32)


def test_output_has_one_column_per_unit(inputs):
    outputs = FCNBlock(8)(inputs)

    assert tuple(outputs.shape) == (16, 8)


def test_outputs_are_non_negative_after_relu(inputs):
    outputs = keras.ops.convert_to_numpy(FCNBlock(8)(inputs))

    assert (outputs >= 0).all()


def test_pre_relu_activations_are_normalized_per_sample(inputs):
    block = FCNBlock(32)
    block.build(inputs.shape)

    pre_relu = keras.ops.convert_to_numpy(block.normalized(inputs))

    np.testing.assert_allclose(pre_relu.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(pre_relu.std(axis=1), 1.0, atol=1e-2)  # LayerNormalization's epsilon=1e-3


def test_config_round_trip_rebuilds_an_equivalent_block(inputs):
    block = FCNBlock(8, dropout=0.2, name="fcn")
    expected = keras.ops.convert_to_numpy(block(inputs))

    rebuilt = FCNBlock.from_config(block.get_config())
    rebuilt.build(inputs.shape)
    rebuilt.set_weights(block.get_weights())

    assert rebuilt.get_config() == block.get_config()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rebuilt(inputs)), expected)


def test_saved_model_reloads_without_custom_objects(inputs, tmp_path):
    model_input = keras.Input(shape=(FEATURES,))
    model = keras.Model(model_input, keras.layers.Dense(1)(FCNBlock(8, dropout=0.1)(model_input)))
    model.save(tmp_path / "fcn.keras")

    reloaded = keras.models.load_model(tmp_path / "fcn.keras")

    assert any(isinstance(layer, FCNBlock) for layer in reloaded.layers)
    np.testing.assert_array_equal(reloaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0))


@pytest.mark.parametrize("units, dropout", [(0, 0.0), (8, 1.0), (8, -0.1)])
def test_invalid_sizes_are_refused(units, dropout):
    with pytest.raises(ValueError, match="FCNBlock"):
        FCNBlock(units, dropout=dropout)
