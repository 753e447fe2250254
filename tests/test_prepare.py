from pathlib import Path

import numpy as np
import pytest

from fmnist_dvc import CLASS_NAMES
from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.data.prepare import allocate, prepare, stratified_split
from tests.helpers import real_labels


def test_allocate_is_proportional_and_exact() -> None:
    assert allocate(np.array([6000] * 10), 2000).tolist() == [200] * 10
    share = allocate(np.array([5, 3, 2]), 7)
    assert share.sum() == 7 and share.tolist() == [4, 2, 1]


def test_stratified_split_is_disjoint_complete_and_balanced(raw_dir: Path) -> None:
    labels = real_labels(raw_dir)
    first, rest = stratified_split(labels, 6000, np.random.default_rng(0))
    assert len(first) == 6000 and len(rest) == 54000
    assert np.intersect1d(first, rest).size == 0
    assert np.array_equal(np.sort(np.concatenate([first, rest])), np.arange(60000))
    assert np.bincount(labels[first]).tolist() == [600] * 10


def test_full_split_sizes_dtype_and_seed(raw_dir: Path, tmp_path: Path) -> None:
    sizes = prepare(raw_dir, tmp_path / "a", val_fraction=0.1, train_limit=None, seed=1)
    assert sizes == {"train": 54000, "val": 6000, "test": 10000}
    x_val, y_val = load_split(tmp_path / "a", "val")
    assert x_val.dtype == np.uint8 and x_val.shape == (6000, 28, 28)
    assert np.bincount(y_val).tolist() == [600] * 10
    # The test split is the official t10k set, untouched.
    x_test, _ = load_split(tmp_path / "a", "test")
    assert x_test.shape == (10000, 28, 28)
    total = sum(p.stat().st_size for p in (tmp_path / "a").iterdir())
    assert total < 70_000 * (784 + 1) * 1.01  # uint8: one byte a pixel or label


def test_same_seed_same_bytes_other_seed_other_split(small_raw_dir: Path, tmp_path: Path) -> None:
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        prepare(small_raw_dir, tmp_path / name, val_fraction=0.2, train_limit=None, seed=seed)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(f"{s}_{k}.npy" for s in ("train", "val", "test") for k in ("images", "labels"))
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / "val_labels.npy").read_bytes() != (
        tmp_path / "c" / "val_labels.npy"
    ).read_bytes()


def test_train_limit_takes_a_stratified_subset(raw_dir: Path, tmp_path: Path) -> None:
    sizes = prepare(raw_dir, tmp_path / "p", val_fraction=0.1, train_limit=2000, seed=3)
    assert sizes == {"train": 1800, "val": 200, "test": 10000}
    _, y_train = load_split(tmp_path / "p", "train")
    assert np.bincount(y_train).tolist() == [180] * 10


def test_missing_prepared_split_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"train_images.npy not found; run 'dvc repro preprocess'"):
        load_split(tmp_path, "train")


def test_the_samples_figure_shows_the_first_images_of_each_class_in_its_row(prepared: Path) -> None:
    from fmnist_dvc.core.figures import plt
    from fmnist_dvc.data.samples import class_samples

    images, labels = load_split(prepared, "train")
    fig = class_samples(images, labels, per_class=3)
    (ax,) = fig.axes
    mosaic = ax.get_images()[0].get_array()
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASS_NAMES)
    step = 28 + 2  # an image and the gap after it
    assert mosaic.shape == (len(CLASS_NAMES) * step - 2, 3 * step - 2)
    for c in range(len(CLASS_NAMES)):
        for i, index in enumerate(np.flatnonzero(labels == c)[:3]):
            assert np.array_equal(mosaic[c * step : c * step + 28, i * step : i * step + 28], images[index])
    plt.close(fig)
