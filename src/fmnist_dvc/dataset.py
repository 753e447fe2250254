"""The tf.data input pipeline shared by training and evaluation."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fmnist_dvc import NUM_CLASSES
from fmnist_dvc.augment import augment_batch
from fmnist_dvc.params import AugmentParams


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None = None,
    augment: AugmentParams | None = None,
) -> tf.data.Dataset:
    """Batches of (float32 in [0, 1], one-hot) built from uint8, scaled per batch.

    Scaling per batch avoids a float32 copy of the whole set (188 MB for 60k images).
    Augmentation, when given, needs `shuffle_seed`: it is for training batches only.
    """
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(_scale_and_encode, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None and augment.any_enabled:
        if shuffle_seed is None:
            raise ValueError("augmentation is for shuffled training batches: pass shuffle_seed")
        # One seed pair per batch; new pairs each epoch, the same pairs on every run.
        seeds = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, seed: (augment_batch(batch[0], seed, augment), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def _scale_and_encode(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(images, tf.float32) / 255.0, tf.one_hot(tf.cast(labels, tf.int32), NUM_CLASSES)
