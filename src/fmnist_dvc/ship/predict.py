"""Classify image files with the trained model: photos, PNG/JPEG, and IDX/NPY batches.

Fashion-MNIST items are light on a black background, centred, 28x28 grayscale. An ordinary
photo is the opposite (a dark item on a light background, anywhere in a larger frame), so
`to_model_input` turns it into the training data's look: grayscale; inverted when the border
is light (`invert="auto"`); cropped to the item, padded to a square and resized so that its
longer side spans all 28 pixels, as Zalando did when it made the dataset. A 28x28 image is
not cropped or resized (only inverted, if its border is light), so a test-set image saved as
PNG gets exactly the model's prediction for it. Photos with busy backgrounds are beyond this: crop them first.
"""

from __future__ import annotations

import gzip
import io
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from fmnist_dvc import CLASS_NAMES, IMAGE_SHAPE
from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.data.idx import parse_idx
from fmnist_dvc.evaluate.tta import predict_tta

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# The formats those suffixes name. Pillow would also open others (EPS through Ghostscript, ...).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
BATCH_SUFFIXES = (".npy", ".idx", ".gz", "-ubyte")
INVERT_CHOICES = ("auto", "yes", "no")
BATCH = 256  # images per model call


class TooManyPixels(PipelineError):
    """An image whose header declares more pixels than allowed: refused before decoding."""


class TooManyImages(PipelineError):
    """A batch whose header declares more images than allowed: refused before reading them."""


@dataclass
class Item:
    """One image to classify: where it came from, and its 28x28 uint8 pixels."""

    source: str
    index: int | None  # the position inside an IDX/NPY batch, None for an image file
    pixels: np.ndarray


def expand(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Files to read (directories expanded, sorted) and one error line per path that has none."""
    files: list[Path] = []
    errors: list[str] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is not None)
            if not found:
                errors.append(f"{path}: the directory holds no image, IDX or NPY files.")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            errors.append(f"{path}: no such file or directory.")
    return files, errors


def read_items(path: Path, invert: str = "auto") -> list[Item]:
    """The images in one file, ready for the model; PipelineError (one line) if it cannot be read."""
    kind = _kind(path)
    if kind == "batch":
        return [Item(str(path), i, image) for i, image in enumerate(_read_batch(path))]
    return [Item(str(path), None, image_pixels(path, str(path), invert))]


def image_pixels(
    source: Path | BinaryIO | bytes, name: str, invert: str = "auto", max_pixels: int | None = None
) -> np.ndarray:
    """One image (a path, an open file or its bytes), ready for the model; PipelineError (one line
    naming `name`) if it cannot be read, or if it declares more than `max_pixels` (checked from
    its header, before anything is decoded: `fmnist serve` refuses decompression bombs so)."""
    if isinstance(source, bytes):
        gray = _gray_png(source, name, max_pixels)
        if gray is not None:
            return gray_to_model_input(gray, invert)
        source = io.BytesIO(source)
    try:
        with Image.open(source, formats=IMAGE_FORMATS) as image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise TooManyPixels(
                    f"{name}: declares {image.width}x{image.height} pixels, more than the "
                    f"{max_pixels:,} allowed; scale it down."
                )
            image.load()
            return to_model_input(image, invert)
    except UnidentifiedImageError:
        raise PipelineError(f"{name}: not a PNG, JPEG, BMP, GIF, WebP or TIFF image.") from None
    except Image.DecompressionBombError:
        raise TooManyPixels(f"{name}: too many pixels to be a photo of one item; scale it down.") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise PipelineError(f"{name}: the image is corrupt or truncated ({exc}).") from None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _gray_png(data: bytes, name: str, max_pixels: int | None) -> np.ndarray | None:
    """An 8-bit grayscale PNG (Fashion-MNIST's own kind) decoded by libspng (pyspng), about five
    times faster than Pillow, which pays more to parse a 28x28 file's chunks than to inflate it.
    PNG is lossless, so the pixels are Pillow's. libspng (as pyspng sets it up) does not verify
    checksums, so a file whose only fault is a wrong CRC is read rather than refused. None for
    any other kind, for data libspng cannot decode, or without pyspng: Pillow then reads it and
    words any error."""
    # The IHDR chunk comes first in every PNG: width, height, bit depth, colour type (0: gray).
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if (depth, colour) != (8, 0):
        return None
    if max_pixels is None:  # no limit asked for: leave Pillow's own decompression-bomb check to it
        max_pixels = Image.MAX_IMAGE_PIXELS or 0
        if width * height > max_pixels:
            return None
    elif width * height > max_pixels:
        raise TooManyPixels(
            f"{name}: declares {width}x{height} pixels, more than the {max_pixels:,} allowed; scale it down."
        )
    try:
        import pyspng
    except ImportError:
        return None
    try:
        gray = pyspng.load(data)
    except Exception:  # libspng's own errors: Pillow reads it again and says what is wrong
        return None
    return gray if gray.dtype == np.uint8 and gray.shape == (height, width) else None


def to_model_input(image: Image.Image, invert: str = "auto") -> np.ndarray:
    """A PIL image as the training data looks: 28x28 uint8, light item on black."""
    gray = np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.uint8)  # L: no copy
    return gray_to_model_input(gray, invert)


def gray_to_model_input(gray: np.ndarray, invert: str = "auto") -> np.ndarray:
    """Grayscale pixels as the training data looks (see `to_model_input`)."""
    if _should_invert(gray, invert):
        gray = 255 - gray
    if gray.shape == IMAGE_SHAPE:
        return gray
    return _centre(gray)


def _should_invert(gray: np.ndarray, invert: str) -> bool:
    if invert != "auto":
        return invert == "yes"
    # The four edges' mean above 127 (corners counted twice), in integers: two sums, not a copy.
    edges = int(gray[[0, -1]].sum(dtype=np.int64)) + int(gray[:, [0, -1]].sum(dtype=np.int64))
    return edges > 127 * 2 * (gray.shape[0] + gray.shape[1])  # a light background: a photo


def _centre(gray: np.ndarray) -> np.ndarray:
    """Crop to the item, pad to a square (centred), resize to 28x28."""
    mask = gray > max(16, int(gray.max()) // 16)  # above the (black) background and its noise
    if mask.any():
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        gray = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = max(gray.shape)
    canvas = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - gray.shape[0]) // 2, (side - gray.shape[1]) // 2
    canvas[top : top + gray.shape[0], left : left + gray.shape[1]] = gray
    small = Image.fromarray(canvas).resize(IMAGE_SHAPE[::-1], Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if name.endswith(BATCH_SUFFIXES):
        return "batch"
    return None


def _read_batch(path: Path) -> np.ndarray:
    """(n, 28, 28) uint8 from .npy (uint8, or float in [0, 1]) or IDX (optionally gzipped)."""
    try:
        if path.name.lower().endswith(".npy"):
            array = np.load(path, allow_pickle=False)
        else:
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            try:
                array = parse_idx(data, str(path))
            except PipelineError as exc:
                raise PipelineError(str(exc).split("; ")[0] + ".") from None
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise PipelineError(f"{path}: cannot be read as an NPY or IDX batch ({exc}).") from None
    return batch_images(array, str(path))


def npy_batch(data: bytes, name: str, max_images: int | None = None) -> np.ndarray:
    """An NPY file's bytes as (n, 28, 28) uint8, checked as `fmnist predict` checks a .npy file.
    Its header is checked first (shape, at most `max_images`, and a body of the size it
    declares), so that a header claiming a huge array is refused before anything is allocated."""
    f = io.BytesIO(data)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        reader = readers.get(np.lib.format.read_magic(f))
        if reader is None:
            raise ValueError("an NPY format version other than 1.0 and 2.0")
        shape, _, dtype = reader(f)
    except (OSError, EOFError, ValueError, TypeError, SyntaxError) as exc:
        reason = " ".join(str(exc).split())[:120]
        raise PipelineError(f"{name}: cannot be read as an NPY batch ({reason}).") from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[1:] != IMAGE_SHAPE:
        raise PipelineError(f"{name}: holds an array of shape {shape}, not (n, 28, 28) images.")
    if max_images is not None and shape[0] > max_images:
        raise TooManyImages(
            f"{name}: {shape[0]} images in one request, more than the {max_images} allowed; split them."
        )
    if dtype.hasobject or len(data) - f.tell() != int(np.prod(shape)) * dtype.itemsize:
        raise PipelineError(
            f"{name}: cannot be read as an NPY batch (its data is not the size its header declares)."
        )
    return batch_images(np.load(io.BytesIO(data), allow_pickle=False), name)


def batch_images(array: object, name: str) -> np.ndarray:
    """A loaded batch as (n, 28, 28) uint8: uint8 as it is, floats in [0, 1] scaled to 0-255."""
    if not isinstance(array, np.ndarray):  # np.load returns an archive for .npz data
        raise PipelineError(f"{name}: holds several arrays (.npz data), not one batch of images.")
    if array.size == 0:
        raise PipelineError(f"{name}: holds no images.")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        raise PipelineError(f"{name}: holds an array of shape {array.shape}, not (n, 28, 28) images.")
    if array.dtype != np.uint8:
        if (
            not np.issubdtype(array.dtype, np.floating)
            or not np.isfinite(array).all()
            or array.min() < 0
            or array.max() > 1
        ):
            raise PipelineError(f"{name}: holds {array.dtype} values; expected uint8 or floats in [0, 1].")
        array = np.rint(array * 255).astype(np.uint8)
    return array


def top_k(probs: np.ndarray, k: int) -> Iterator[list[tuple[str, float]]]:
    """Per row, the k most probable class names with their probabilities, best first."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    for row, best in zip(probs, order, strict=True):
        yield [(CLASS_NAMES[i], float(row[i])) for i in best]


def classify(model: object, pixels: np.ndarray, progress: bool = False, tta: str = "none") -> np.ndarray:
    """Class probabilities for (n, 28, 28) uint8 images (the model scales them); with `tta`,
    averaged over mirrored (and shifted) views as the evaluate stage does."""

    def predict(images: np.ndarray) -> np.ndarray:
        batches = range(0, len(images), BATCH)
        out = []
        for start in tqdm(batches, desc="classifying", unit="batch", disable=not progress, file=sys.stderr):
            x = images[start : start + BATCH].astype(np.float32)
            out.append(np.asarray(model.predict_on_batch(x)))
        return np.concatenate(out)

    return predict_tta(predict, pixels, tta)
