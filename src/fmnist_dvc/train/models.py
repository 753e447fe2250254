"""Model builders; each reads like the table of layers it implements."""

from __future__ import annotations

import keras
import numpy as np

from fmnist_dvc import IMAGE_SHAPE, NUM_CLASSES
from fmnist_dvc.train.params import CnnParams, TrainParams


def pixel_scaling() -> keras.layers.Layer:
    """The model's first layer: pixel values 0-255 in, 0-1 out, so a saved model takes raw
    images and nothing outside it (predict, the benchmark, an export) repeats the scaling.

    Normalization with mean 0 and variance 255**2 divides by exactly 255. Rescaling(1/255)
    would multiply by the rounded reciprocal, which moves 126 of the 256 pixel values by one
    float32 step and with them every trained weight; this keeps the results of a scaling
    that used to happen in the input pipeline, bit for bit. It adds no weights.
    """
    return keras.layers.Normalization(mean=0.0, variance=255.0**2, name="pixel_scaling")


def build_mlp(hidden_units: list[int], dropout: float) -> keras.Sequential:
    """The seed MLP: pixel scaling and Flatten, then Dense+ReLU and Dropout per hidden layer, softmax out.

    With hidden_units [256, 256, 128, 64] and 28x28 inputs: 308,554 parameters.
    """
    layers: list[keras.layers.Layer] = [
        keras.Input(shape=IMAGE_SHAPE),
        pixel_scaling(),
        keras.layers.Flatten(),
    ]
    for units in hidden_units:
        layers.append(keras.layers.Dense(units, activation="relu"))
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name="seed_mlp")


def build_cnn(c: CnnParams) -> keras.Model:
    """Conv blocks (Conv [+BN] + ReLU per entry) with 2x2 max-pooling between blocks; a head
    that pools globally (`gap`) or keeps the positions (`flatten`); Dropout before each Dense
    layer and before the softmax.

    blocks [[32], [64, 64], [128, 128]] gives 28x28x32 | 14x14x64 x2 | 7x7x128 x2. `pool:
    after_conv` pools inside each block but the last, straight after its first convolution (as
    airbench does): the same output shape, but BatchNorm, ReLU and the block's other convolutions
    run at the lower resolution, which on two cores saves about 15% of a training step. `flatten`
    costs few FLOPs (one matrix product) but many parameters: where a garment's parts sit is
    much of what tells a shirt from a coat, and global pooling throws it away. `residual` adds
    each block's first convolution's output to its last one's (blocks of two or more). `whiten: k`
    puts a frozen kxk convolution with 2k^2 filters and a ReLU in front (see `whitening_filters`).
    """
    stem: list[keras.layers.Layer] = [pixel_scaling(), keras.layers.Reshape((*IMAGE_SHAPE, 1))]
    if c.whiten:
        # Set from the training images by set_whitening() before training; never trained.
        whiten = keras.layers.Conv2D(2 * c.whiten**2, c.whiten, padding="same", use_bias=False, name="whiten")
        whiten.trainable = False
        stem += [whiten, keras.layers.ReLU()]
    segments: list[tuple[list[keras.layers.Layer], bool]] = [(stem, False)]  # (layers, add a skip?)
    last = len(c.blocks) - 1
    for i, block in enumerate(c.blocks):
        if i > 0 and c.pool == "after_block":
            segments[-1][0].append(keras.layers.MaxPooling2D())
        for j, filters in enumerate(block):
            if j == 1:  # the rest of the block: a segment of its own, summed with its input if residual
                segments.append(([], c.residual))
            # A bias before BatchNormalization is cancelled by its mean: leave it out.
            conv = [keras.layers.Conv2D(filters, c.kernel_size, padding="same", use_bias=not c.batch_norm)]
            if c.pool == "after_conv" and j == 0 and i < last:
                conv.append(keras.layers.MaxPooling2D())
            if c.batch_norm:
                conv.append(keras.layers.BatchNormalization(momentum=c.bn_momentum))
            segments[-1][0].extend([*conv, keras.layers.ReLU()])
        segments.append(([], False))
    head = segments[-1][0]
    head.append(keras.layers.Flatten() if c.head == "flatten" else keras.layers.GlobalAveragePooling2D())
    for units in c.dense_units:
        head += [keras.layers.Dropout(c.dropout), keras.layers.Dense(units, activation="relu")]
    head += [keras.layers.Dropout(c.dropout), keras.layers.Dense(NUM_CLASSES, activation="softmax")]
    return _wire(segments, "cnn")


def whitening_filters(images: np.ndarray, size: int, eps: float = 5e-4) -> np.ndarray:
    """Filters that whiten the images' size x size patches (airbench's first layer), shaped for
    Conv2D: (size, size, 1, 2 size^2).

    Each eigenvector of the patches' second-moment matrix (not mean-centred: the first is the
    overall brightness), divided by the square root of its eigenvalue plus `eps` times the
    pixels' variance (so the faintest directions are not blown up into noise), and its negative:
    after the ReLU, each direction's both signs pass. The first layer then starts from
    decorrelated features of equal strength instead of having to learn them. Pixels are scaled
    to 0-1, as the model scales them. The sums are exact integers and each eigenvector's sign is
    fixed (its largest entry positive), so the filters, and their order, do not depend on the
    order of the arithmetic or on which sign LAPACK returns.
    """
    pixels = np.asarray(images, dtype=np.int64)
    moment = np.zeros((size * size, size * size), dtype=np.int64)
    for start in range(0, len(pixels), 500):  # 500 images at a time: a few MB, not hundreds
        windows = np.lib.stride_tricks.sliding_window_view(
            pixels[start : start + 500], (size, size), axis=(1, 2)
        )
        patches = windows.reshape(-1, size * size)
        moment += patches.T @ patches
    count = len(pixels) * (pixels.shape[1] - size + 1) * (pixels.shape[2] - size + 1)
    total, squares = int(pixels.sum()), int((pixels * pixels).sum())
    variance = (squares / pixels.size - (total / pixels.size) ** 2) / 255.0**2
    values, vectors = np.linalg.eigh(moment / (count * 255.0**2))
    values, vectors = values[::-1], vectors[:, ::-1]  # strongest first
    largest = vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])]
    vectors = vectors * np.where(largest < 0, -1.0, 1.0)
    scaled = vectors / np.sqrt(values + eps * variance)
    filters = np.concatenate([scaled, -scaled], axis=1)
    return filters.reshape(size, size, 1, 2 * size * size).astype(np.float32)


def set_whitening(model: keras.Model, images: np.ndarray, sample: int = 5000) -> None:
    """Set the frozen `whiten` layer, if the model has one, from the first `sample` training
    images (the training split's own order: deterministic, and every class is there)."""
    layer = next((layer for layer in model.layers if layer.name == "whiten"), None)
    if layer is not None:
        layer.set_weights([whitening_filters(images[:sample], layer.kernel_size[0])])


def _wire(segments: list[tuple[list[keras.layers.Layer], bool]], name: str) -> keras.Model:
    """The layers in a row, as a Sequential model; with skips, as a functional model where each
    skip segment's output is added to its input."""
    inputs = keras.Input(shape=IMAGE_SHAPE)
    if not any(skip for _, skip in segments):
        return keras.Sequential([inputs, *(layer for layers, _ in segments for layer in layers)], name=name)
    x = inputs
    for layers, skip in segments:
        y = x
        for layer in layers:
            y = layer(y)
        x = keras.layers.Add()([x, y]) if skip else y
    return keras.Model(inputs, x, name=name)


def build_model(params: TrainParams) -> keras.Model:
    """The model `train.model` names, shaped by its own params section."""
    if params.model == "cnn":
        return build_cnn(params.cnn)
    return build_mlp(params.mlp.hidden_units, params.mlp.dropout)
