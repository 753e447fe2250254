"""Read the IDX format Fashion-MNIST ships in, checking every header field.

Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions,
then one big-endian uint32 per dimension, then the data in C order.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from fmnist_dvc import IMAGE_SHAPE, NUM_CLASSES
from fmnist_dvc.core.errors import PipelineError

UBYTE = 0x08
# data/raw/ is the download stage's output: a damaged file there is fixed by fetching it again.
REFETCH = "run 'dvc repro -f download' to fetch the official files again"


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes into a uint8 array; `name` says which file a fault is in."""
    if len(data) < 4:
        raise PipelineError(f"{name} is too short to be an IDX file ({len(data)} bytes); {REFETCH}.")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != UBYTE or ndim == 0:
        raise PipelineError(
            f"{name} has bad magic number 0x{data[:4].hex()} (expected 0x000008 followed by "
            f"the dimension count); it is not an unsigned-byte IDX file; {REFETCH}."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise PipelineError(f"{name} is truncated inside its header; {REFETCH}.")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise PipelineError(
            f"{name} is {what}: header {shape} needs {expected} bytes, file has {len(data)}; {REFETCH}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_images(path: Path) -> np.ndarray:
    """Images as (n, 28, 28) uint8."""
    images = parse_idx(_read(path), str(path))
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        guess = " (is it a labels file?)" if images.ndim == 1 else ""
        raise PipelineError(
            f"{path} holds an array of shape {images.shape}, not (n, 28, 28) images{guess}; {REFETCH}."
        )
    return images


def read_labels(path: Path) -> np.ndarray:
    """Labels as (n,) uint8 in 0-9."""
    labels = parse_idx(_read(path), str(path))
    if labels.ndim != 1:
        guess = " (is it an images file?)" if labels.ndim == 3 else ""
        raise PipelineError(
            f"{path} holds an array of shape {labels.shape}, not a list of labels{guess}; {REFETCH}."
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        where = int(np.argmax(labels >= NUM_CLASSES))
        raise PipelineError(
            f"{path} has label {int(labels[where])}, outside 0-{NUM_CLASSES - 1}, at position {where}; "
            f"it is not a Fashion-MNIST labels file; {REFETCH}."
        )
    return labels


def read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels that belong together: their counts must agree."""
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise PipelineError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} "
            f"labels; the two files do not belong together; {REFETCH}."
        )
    return images, labels


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run the download stage (dvc repro download).") from None
