"""Augmentation ops on real test images: what each one does, and that seeds make it repeatable."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fmnist_dvc.core.params import load_section
from fmnist_dvc.data.idx import read_pair
from fmnist_dvc.train import dataset
from fmnist_dvc.train.augment import augment_batch, random_erase, random_flip, random_translate, random_zoom
from fmnist_dvc.train.dataset import as_arrays, batches_per_epoch, make_dataset, make_training_dataset
from fmnist_dvc.train.params import AugmentParams, TrainParams
from tests.helpers import write_params

SEED = tf.constant([7, 11], tf.int64)


@pytest.fixture(scope="module")
def batch(small_raw_dir: Path) -> tf.Tensor:
    images, _ = read_pair(small_raw_dir / "t10k-images-idx3-ubyte", small_raw_dir / "t10k-labels-idx1-ubyte")
    return tf.constant(images[:64], tf.float32)  # pixel values 0-255, as the input pipeline gives them


def test_flip_mirrors_about_half_and_leaves_the_rest(batch: tf.Tensor) -> None:
    out = random_flip(batch, SEED).numpy()
    mirrored = [np.array_equal(o, b[:, ::-1]) for o, b in zip(out, batch.numpy(), strict=True)]
    kept = [np.array_equal(o, b) for o, b in zip(out, batch.numpy(), strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 16 <= sum(mirrored) <= 48


def test_translate_shifts_each_image_by_at_most_the_limit(batch: tf.Tensor) -> None:
    out = random_translate(batch, SEED, 2).numpy()
    assert out.shape == (64, 28, 28)
    shifts = set()
    for o, b in zip(out, batch.numpy(), strict=True):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(o, np.roll(np.pad(b, 2), (dy, dx), axis=(0, 1))[2:-2, 2:-2])
        ]
        assert matches, "every output must be its input shifted by at most 2 pixels"
        shifts.add(matches[0])
    assert len(shifts) > 5  # offsets differ from image to image


def test_erase_blacks_out_one_square_on_about_half(batch: tf.Tensor) -> None:
    out = random_erase(batch, SEED, size=8, probability=0.5).numpy()
    changed = [not np.array_equal(o, b) for o, b in zip(out, batch.numpy(), strict=True)]
    assert 16 <= sum(changed) <= 48
    diff = out != batch.numpy()
    assert diff.sum(axis=(1, 2)).max() <= 64  # never more than one 8x8 square
    assert (out[diff] == 0).all()


def test_zoom_keeps_shape_and_range(batch: tf.Tensor) -> None:
    out = random_zoom(batch, SEED, 0.2).numpy()
    assert out.shape == (64, 28, 28) and out.min() >= 0 and out.max() <= 255 * (1 + 1e-6)
    assert not np.allclose(out, batch.numpy())


def test_same_seed_same_batch_other_seed_other_batch(batch: tf.Tensor, tmp_path: Path) -> None:
    params = load_section(
        "train",
        TrainParams,
        write_params(
            tmp_path, {f"train.augment.{op}.enabled": True for op in ("flip", "translate", "erase", "zoom")}
        ),
    ).augment
    a = augment_batch(batch, SEED, params).numpy()
    b = augment_batch(batch, SEED, params).numpy()
    c = augment_batch(batch, tf.constant([7, 12], tf.int64), params).numpy()
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_only_training_batches_are_augmented(small_raw_dir: Path, tmp_path: Path) -> None:
    images, labels = read_pair(
        small_raw_dir / "t10k-images-idx3-ubyte", small_raw_dir / "t10k-labels-idx1-ubyte"
    )
    augment = load_section(
        "train", TrainParams, write_params(tmp_path, {"train.augment.flip.enabled": True})
    ).augment
    plain = np.concatenate([x for x, _ in make_dataset(images, labels, 100).as_numpy_iterator()])
    assert np.array_equal(plain, images.astype(np.float32))  # validation data: untouched, in order

    def epochs(first: int = 0, augment: AugmentParams | None = augment) -> list[list[np.ndarray]]:
        ds = make_training_dataset(images, labels, 100, seed=1, epochs=2, first_epoch=first, augment=augment)
        batches = [x for x, _ in ds.as_numpy_iterator()]
        per_epoch = batches_per_epoch(len(labels), 100)
        return [batches[i : i + per_epoch] for i in range(0, len(batches), per_epoch)]

    epoch1, epoch2 = epochs()
    assert len(epoch1) == len(epoch2) == batches_per_epoch(len(labels), 100)
    ink = np.concatenate(epoch1).astype(np.int64).sum(axis=(1, 2))  # a flip keeps it
    assert np.array_equal(np.sort(ink), np.sort(images.astype(np.int64).sum(axis=(1, 2))))  # each image once
    assert all(np.array_equal(a, b) for a, b in zip(epoch1, epochs()[0], strict=True))  # same seed, same
    assert all(np.array_equal(a, b) for a, b in zip(epoch2, epochs(first=1)[0], strict=True))  # resumable
    assert not all(np.array_equal(a, b) for a, b in zip(epoch1, epoch2, strict=True))  # new each epoch
    # Same order, some images mirrored: augmentation really ran on the training batches.
    flipped = [
        np.array_equal(a, b[:, ::-1]) and not np.array_equal(a, b)
        for x, p in zip(epoch1, epochs(augment=None)[0], strict=True)
        for a, b in zip(x, p, strict=True)
    ]
    assert 0.3 < sum(flipped) / len(labels) < 0.7


@pytest.mark.parametrize("batch_size", [7, 32, 500])
def test_loading_a_chunk_at_a_time_gives_the_batches_of_one_at_a_time(
    small_raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int
) -> None:
    images, labels = read_pair(
        small_raw_dir / "t10k-images-idx3-ubyte", small_raw_dir / "t10k-labels-idx1-ubyte"
    )
    # 64 images a chunk: 500 images make several chunks, the last one and the last batch short.
    monkeypatch.setattr(dataset, "CHUNK_IMAGES", 64)
    # An enabled augmentation that never fires keeps the one-batch-at-a-time path: the reference.
    never = load_section(
        "train",
        TrainParams,
        write_params(tmp_path, {"train.augment.erase.enabled": True, "train.augment.erase.probability": 0.0}),
    ).augment

    def batches(ds: tf.data.Dataset) -> list[tuple[np.ndarray, np.ndarray]]:
        return list(ds.as_numpy_iterator())

    chunked = batches(make_training_dataset(images, labels, batch_size, seed=3, epochs=3, first_epoch=1))
    one_by_one = batches(
        make_training_dataset(images, labels, batch_size, seed=3, epochs=3, first_epoch=1, augment=never)
    )
    assert len(chunked) == len(one_by_one) == 2 * batches_per_epoch(len(labels), batch_size)
    for (x, y), (x_ref, y_ref) in zip(chunked, one_by_one, strict=True):
        assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)
    validation = batches(make_dataset(images, labels, batch_size))
    # Keras reads the batch count of validation data; an unknown one made it warn of running out.
    assert make_dataset(images, labels, batch_size).cardinality() == len(validation)
    assert [len(y) for _, y in validation] == [len(y) for _, y in chunked[: len(validation)]]
    assert np.array_equal(np.concatenate([x for x, _ in validation]), images.astype(np.float32))
    assert np.array_equal(np.concatenate([y for _, y in validation]).argmax(axis=1), labels)
    # The arrays Keras on JAX validates on hold the same values, bit for bit.
    x_all, y_all = as_arrays(images, labels)
    assert np.concatenate([x for x, _ in validation]).tobytes() == x_all.tobytes()
    assert np.concatenate([y for _, y in validation]).tobytes() == y_all.tobytes()


def test_alternating_flip_mirrors_each_image_in_every_other_epoch(
    small_raw_dir: Path, tmp_path: Path
) -> None:
    images, labels = read_pair(
        small_raw_dir / "t10k-images-idx3-ubyte", small_raw_dir / "t10k-labels-idx1-ubyte"
    )
    changes = {"train.augment.flip.enabled": True, "train.augment.flip.mode": "alternate"}
    augment = load_section("train", TrainParams, write_params(tmp_path, changes)).augment

    def flipped_per_epoch(first: int = 0) -> list[dict[int, bool]]:
        """Per epoch, each image (by index) and whether it came out mirrored."""
        ds = make_training_dataset(images, labels, 100, seed=1, epochs=3, first_epoch=first, augment=augment)
        plain = make_training_dataset(images, labels, 100, seed=1, epochs=3, first_epoch=first)
        per_epoch = batches_per_epoch(len(labels), 100) * 100
        out = [x for b, _ in ds.as_numpy_iterator() for x in b]
        ref = [x for b, _ in plain.as_numpy_iterator() for x in b]  # the same order, unflipped
        index = {images[i].astype(np.float32).tobytes(): i for i in range(len(images))}
        seen = [{} for _ in range(len(out) // per_epoch)]
        for k, (a, b) in enumerate(zip(out, ref, strict=True)):
            seen[k // per_epoch][index[b.tobytes()]] = not np.array_equal(a, b)
        return seen

    e0, e1, e2 = flipped_per_epoch()
    assert 0.3 < sum(e0.values()) / len(e0) < 0.7  # epoch 0: each image's own coin
    assert all(e1[i] != e0[i] for i in e0) and e2 == e0  # then every other epoch
    assert flipped_per_epoch(first=1)[0] == e1  # the same after a resume
