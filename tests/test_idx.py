from pathlib import Path

import numpy as np
import pytest

from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.data.idx import parse_idx, read_images, read_labels, read_pair
from tests.helpers import encode_idx


def test_real_files_parse_to_the_documented_shapes(raw_dir: Path) -> None:
    images, labels = read_pair(raw_dir / "train-images-idx3-ubyte", raw_dir / "train-labels-idx1-ubyte")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert np.bincount(labels).tolist() == [6000] * 10
    test_images = read_images(raw_dir / "t10k-images-idx3-ubyte")
    assert test_images.shape == (10000, 28, 28)


def test_round_trip_keeps_real_images_bit_for_bit(raw_dir: Path) -> None:
    images = read_images(raw_dir / "t10k-images-idx3-ubyte")[:50]
    data = encode_idx(images)
    assert len(data) == 4 + 3 * 4 + 50 * 28 * 28
    np.testing.assert_array_equal(parse_idx(data), images)


def test_bad_magic_is_named(tmp_path: Path) -> None:
    data = bytearray(encode_idx(np.zeros((3, 28, 28), np.uint8)))
    data[2] = 0x0D  # float type code instead of unsigned byte
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(bytes(data))
    with pytest.raises(PipelineError, match=r"x-idx3-ubyte has bad magic number 0x00000d03"):
        read_images(path)


def test_truncated_file_is_reported_with_sizes(raw_dir: Path, tmp_path: Path) -> None:
    data = (raw_dir / "t10k-labels-idx1-ubyte").read_bytes()
    path = tmp_path / "labels"
    path.write_bytes(data[:-10])
    with pytest.raises(PipelineError, match=r"labels is truncated: header \(10000,\) needs 10008 bytes"):
        read_labels(path)


def test_header_cut_short_is_truncated(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="truncated inside its header"):
        parse_idx(encode_idx(np.zeros((2, 28, 28), np.uint8))[:9], "short")


def test_count_mismatch_between_images_and_labels(small_raw_dir: Path, tmp_path: Path) -> None:
    labels = read_labels(small_raw_dir / "train-labels-idx1-ubyte")
    (tmp_path / "labels").write_bytes(encode_idx(labels[:-1]))
    with pytest.raises(PipelineError, match=r"has 1000 images but .* has 999 labels"):
        read_pair(small_raw_dir / "train-images-idx3-ubyte", tmp_path / "labels")


def test_label_outside_0_to_9(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(encode_idx(np.array([0, 3, 10], np.uint8)))
    with pytest.raises(PipelineError, match="has label 10, outside 0-9"):
        read_labels(path)


def test_files_swapped(small_raw_dir: Path) -> None:
    with pytest.raises(PipelineError, match="is it a labels file"):
        read_images(small_raw_dir / "train-labels-idx1-ubyte")
    with pytest.raises(PipelineError, match="is it an images file"):
        read_labels(small_raw_dir / "train-images-idx3-ubyte")


def test_missing_file_says_which_stage_makes_it(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"nope not found; run the download stage"):
        read_images(tmp_path / "nope")
