"""Model builders; each reads like the table of layers it implements."""

from __future__ import annotations

import keras

from fmnist_dvc import IMAGE_SHAPE, NUM_CLASSES
from fmnist_dvc.params import TrainParams


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


def build_cnn(
    blocks: list[list[int]], kernel_size: int, batch_norm: bool, dense_units: list[int], dropout: float
) -> keras.Sequential:
    """Conv blocks (Conv [+BN] + ReLU per entry) with 2x2 max-pooling between blocks, then
    global average pooling, optional Dense+ReLU layers, Dropout and a softmax.

    blocks [[32], [64, 64], [128, 128]] gives 28x28x32 | 14x14x64 x2 | 7x7x128 x2.
    """
    layers: list[keras.layers.Layer] = [
        keras.Input(shape=IMAGE_SHAPE),
        keras.layers.Reshape((*IMAGE_SHAPE, 1)),
    ]
    for i, block in enumerate(blocks):
        if i > 0:
            layers.append(keras.layers.MaxPooling2D())
        for filters in block:
            # A bias before BatchNormalization is cancelled by its mean: leave it out.
            layers.append(keras.layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batch_norm))
            if batch_norm:
                layers.append(keras.layers.BatchNormalization())
            layers.append(keras.layers.ReLU())
    layers.append(keras.layers.GlobalAveragePooling2D())
    for units in dense_units:
        layers.append(keras.layers.Dense(units, activation="relu"))
    layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name="cnn")


def build_model(params: TrainParams) -> keras.Sequential:
    """The model `train.model` names, shaped by its own params section."""
    if params.model == "cnn":
        c = params.cnn
        return build_cnn(c.blocks, c.kernel_size, c.batch_norm, c.dense_units, c.dropout)
    return build_mlp(params.mlp.hidden_units, params.mlp.dropout)
