"""The tf.data input pipelines of training: shuffled (and augmented) batches, and the validation split."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from fmnist_dvc import NUM_CLASSES
from fmnist_dvc.train.augment import augment_batch
from fmnist_dvc.train.params import AugmentParams

# Images gathered and converted per call of the input pipeline, then cut into batches. At batch 32
# a tf.data call per batch costs more than the conversion itself (README, "Performance").
CHUNK_IMAGES = 2048


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batches of (float32 pixel values 0-255, one-hot) in file order, for the validation split.

    The model scales the pixels itself (models.pixel_scaling). Converting chunk by chunk
    avoids a float32 copy of the whole set (188 MB for 60k images).
    """
    chunk = _chunk_batches(batch_size)
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size * chunk)
    ds = ds.map(_cast_and_encode).rebatch(batch_size)
    # rebatch hides the batch count, and Keras would warn that the data ran out early.
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches_per_epoch(len(labels), batch_size)))
    return _lean(ds.prefetch(chunk))


def as_arrays(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """make_dataset's values as two NumPy arrays (float32 images, one-hot labels), file order.

    For the validation split on JAX (6,000 images, 19 MB): Keras slices arrays into batches
    itself, where a dataset costs an eager TensorFlow call per batch.
    """
    x, y = _cast_and_encode(tf.constant(images), tf.constant(labels))
    return x.numpy(), y.numpy()


def batches_per_epoch(num_images: int, batch_size: int) -> int:
    return math.ceil(num_images / batch_size)


def make_training_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    epochs: int,
    first_epoch: int = 0,
    augment: AugmentParams | None = None,
) -> tf.data.Dataset:
    """Shuffled (and optionally augmented) batches for epochs `first_epoch`..`epochs - 1`, back to back.

    Each epoch's order and each batch's augmentation come from stateless ops keyed by
    (seed, epoch, batch), not from a generator that advances as it is used: epoch 7 looks the
    same whether training started at epoch 0 or resumed at epoch 5 after a crash. Pass
    `batches_per_epoch(len(labels), batch_size)` as `steps_per_epoch` to `fit` with this dataset.
    """
    n = len(labels)
    images_t, labels_t = tf.constant(images), tf.constant(labels)
    key = tf.constant([seed, 0], tf.int64)
    augmented = augment is not None and augment.any_enabled
    chunk = _chunk_batches(batch_size)
    # airbench's alternating flip: each image's own coin in epoch 0, the opposite in epoch 1, ...
    alternate = augmented and augment.flip.enabled and augment.flip.mode == "alternate"
    if alternate:
        first_flips = tf.random.stateless_uniform([n], tf.random.experimental.stateless_fold_in(key, 2)) < 0.5

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        epoch_key = tf.random.experimental.stateless_fold_in(key, epoch)
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), tf.random.experimental.stateless_fold_in(epoch_key, 0)
        )
        if not augmented:
            indices = tf.data.Dataset.from_tensor_slices(order).batch(batch_size * chunk)
            return indices.map(gather).rebatch(batch_size)
        batch_keys = tf.random.experimental.stateless_fold_in(epoch_key, 1)
        batches = (
            tf.data.Dataset.from_tensor_slices(order)
            .batch(batch_size)
            .enumerate()
            .map(lambda i, idx: (idx, tf.random.experimental.stateless_fold_in(batch_keys, i)))
        )
        if alternate:
            odd = epoch % 2 == 1
            batches = batches.map(
                lambda idx, k: (idx, k, tf.math.logical_xor(tf.gather(first_flips, idx), odd))
            )
        return batches

    def gather(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return _cast_and_encode(tf.gather(images_t, idx), tf.gather(labels_t, idx))

    def load_augmented(
        idx: tf.Tensor, batch_key: tf.Tensor, flips: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = gather(idx)
        return augment_batch(x, batch_key, augment, flips), y

    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
    if not augmented:
        return _lean(ds.prefetch(chunk))
    return _lean(ds.map(load_augmented).prefetch(2))


def numpy_batches(ds: tf.data.Dataset, group: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches of `ds`, in the same order, as NumPy arrays: the training input for Keras on JAX.

    Keras on JAX draws a tf.data dataset one batch at a time through eager TensorFlow, which
    costs about as much as a whole training step of the seed MLP. Drawing `group` batches at
    once (ragged: an epoch's last batch may be short) and splitting them here removes most of it.
    """
    for images, labels in ds.ragged_batch(group).prefetch(1):
        yield from zip(_split(images), _split(labels), strict=True)


def _split(batches: tf.Tensor | tf.RaggedTensor) -> list[np.ndarray]:
    if isinstance(batches, tf.RaggedTensor):
        splits = batches.row_splits.numpy()
        return np.split(batches.values.numpy(), splits[1:-1])
    return list(batches.numpy())


def _chunk_batches(batch_size: int) -> int:
    return max(1, CHUNK_IMAGES // batch_size)


def _lean(ds: tf.data.Dataset) -> tf.data.Dataset:
    """One tf.data thread and no autotuning: the pipeline is a few cheap ops per batch, and on
    two cores tf.data's own threads and tuning take time from the training step (with autotuned
    parallel augmentation a cnn-fast step took 205 ms, without 134 ms: docs/performance.md)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    return ds.with_options(options)


def _cast_and_encode(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(images, tf.float32), tf.one_hot(tf.cast(labels, tf.int32), NUM_CLASSES)
