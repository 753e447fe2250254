"""Random image augmentation for training batches, inside the tf.data pipeline.

Every op is stateless and takes its randomness from a per-batch seed pair, and those pairs
come from a seeded `Dataset.random`: the same params.yaml seed gives the same augmented
batches on every run, different ones each epoch. Images are float32 [batch, 28, 28] of pixel
values 0-255 (the model scales them); the background is black (0), so whatever an op uncovers
is filled with 0.
"""

from __future__ import annotations

import tensorflow as tf

from fmnist_dvc.train.params import AugmentParams

SIDE = 28


def augment_batch(
    images: tf.Tensor, seed: tf.Tensor, params: AugmentParams, flips: tf.Tensor | None = None
) -> tf.Tensor:
    """Apply the enabled ops, each with its own seed derived from the batch's `seed`; `flips`
    (one bool per image) decides the flip instead of a coin, for `flip.mode: alternate`."""
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    if params.flip.enabled:
        images = random_flip(images, seeds[0]) if flips is None else flip_where(images, flips)
    if params.zoom.enabled:
        images = random_zoom(images, seeds[1], params.zoom.factor)
    if params.translate.enabled:
        images = random_translate(images, seeds[2], params.translate.pixels)
    if params.erase.enabled:
        images = random_erase(images, seeds[3], params.erase.size, params.erase.probability)
    return images


def random_flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mirror about half of the images left-right (clothes are mostly symmetric)."""
    return flip_where(images, tf.random.stateless_uniform([tf.shape(images)[0]], seed) < 0.5)


def flip_where(images: tf.Tensor, flips: tf.Tensor) -> tf.Tensor:
    """Mirror left-right the images whose entry in `flips` is true."""
    return tf.where(flips[:, None, None], tf.reverse(images, axis=[2]), images)


def random_translate(images: tf.Tensor, seed: tf.Tensor, pixels: int) -> tf.Tensor:
    """Shift each image by up to `pixels` in x and y (zero padding, then a per-image crop)."""
    if pixels == 0:
        return images
    n = tf.shape(images)[0]
    offsets = tf.random.stateless_uniform([n, 2], seed, minval=0, maxval=2 * pixels + 1, dtype=tf.int32)
    padded = tf.pad(images, [[0, 0], [pixels, pixels], [pixels, pixels]])
    grid = tf.range(SIDE)
    rows = offsets[:, :1] + grid[None, :]
    cols = offsets[:, 1:] + grid[None, :]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, cols, axis=2, batch_dims=1)


def random_zoom(images: tf.Tensor, seed: tf.Tensor, factor: float) -> tf.Tensor:
    """Scale each image about its centre by a factor in [1 - factor, 1 + factor]."""
    n = tf.shape(images)[0]
    scale = tf.random.stateless_uniform([n], seed, minval=1 - factor, maxval=1 + factor)
    half = 0.5 / scale  # box half-size in normalised coordinates; > 0.5 zooms out
    boxes = tf.stack([0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half], axis=1)
    zoomed = tf.image.crop_and_resize(
        images[..., None], boxes, tf.range(n), (SIDE, SIDE), extrapolation_value=0.0
    )
    return zoomed[..., 0]


def random_erase(images: tf.Tensor, seed: tf.Tensor, size: int, probability: float) -> tf.Tensor:
    """Cutout: with `probability`, black out a size x size square at a random centre."""
    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    centres = tf.random.stateless_uniform([n, 2], seeds[0], minval=0, maxval=SIDE, dtype=tf.int32)
    apply = tf.random.stateless_uniform([n], seeds[1]) < probability
    grid = tf.range(SIDE)
    low = centres - size // 2
    in_rows = (grid[None, :] >= low[:, :1]) & (grid[None, :] < low[:, :1] + size)
    in_cols = (grid[None, :] >= low[:, 1:]) & (grid[None, :] < low[:, 1:] + size)
    square = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return tf.where(square, tf.zeros_like(images), images)
