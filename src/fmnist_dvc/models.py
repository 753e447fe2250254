"""Model builders; each reads like the table of layers it implements."""

from __future__ import annotations

import keras

from fmnist_dvc import IMAGE_SHAPE, NUM_CLASSES


def build_mlp(hidden_units: list[int], dropout: float) -> keras.Sequential:
    """The seed MLP: Flatten, then Dense+ReLU and Dropout per hidden layer, softmax out.

    With hidden_units [256, 256, 128, 64] and 28x28 inputs: 308,554 parameters.
    """
    layers: list[keras.layers.Layer] = [keras.Input(shape=IMAGE_SHAPE), keras.layers.Flatten()]
    for units in hidden_units:
        layers.append(keras.layers.Dense(units, activation="relu"))
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name="seed_mlp")
