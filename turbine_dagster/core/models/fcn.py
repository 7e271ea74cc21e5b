"""The fully connected block of the Keras model: Dense -> LayerNormalization -> ReLU (-> Dropout)."""

import keras


@keras.saving.register_keras_serializable(package="turbine")
class FCNBlock(keras.layers.Layer):
    """One hidden layer whose activations are normalised per sample before the ReLU.

    Registered with Keras, so a saved ``.keras`` model reloads with plain ``keras.models.load_model``
    once this module is imported.
    """

    def __init__(self, units: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"FCNBlock needs at least one unit, got units={units}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FCNBlock dropout must be in [0, 1), got dropout={dropout}")
        self.units = units
        self.dropout = dropout
        self.dense = keras.layers.Dense(units, name="dense")
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.relu = keras.layers.ReLU(name="relu")
        self.drop = keras.layers.Dropout(dropout, name="dropout") if dropout > 0 else None

    def build(self, input_shape):
        # Sub-layers are built here, not lazily, so their weights exist when a saved model is reloaded.
        self.dense.build(input_shape)
        self.norm.build(self.dense.compute_output_shape(input_shape))

    def normalized(self, inputs):
        """The pre-ReLU activations: Dense output after LayerNormalization."""
        return self.norm(self.dense(inputs))

    def call(self, inputs, training=None):
        outputs = self.relu(self.normalized(inputs))
        if self.drop is not None:
            outputs = self.drop(outputs, training=training)
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout}
