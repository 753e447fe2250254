"""The PNG fast path (libspng through pyspng) reads exactly what Pillow reads."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.ship.predict import TooManyPixels, _gray_png, image_pixels

pytest.importorskip("pyspng", reason="the serve extra: pip install -e '.[serve]'")


def png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def test_gray_pngs_take_the_fast_path_and_match_pillow(prepared: Path) -> None:
    images, _ = load_split(prepared, "test")
    big = Image.fromarray(np.kron(255 - images[1], np.ones((5, 3), np.uint8)))  # light background, 140x84
    cases = [Image.fromarray(image) for image in images[:20]] + [big]
    for case in cases:
        for data in (png(case), png(case, compress_level=9), png(case, transparency=0)):
            assert _gray_png(data, "x", None) is not None  # libspng decoded it
            np.testing.assert_array_equal(image_pixels(data, "x"), image_pixels(io.BytesIO(data), "x"))
    assert image_pixels(png(big), "x").shape == (28, 28)  # inverted, cropped and resized as before


def test_other_pngs_and_damaged_ones_go_to_pillow(prepared: Path) -> None:
    image = Image.fromarray(load_split(prepared, "test")[0][0])
    others = [image.convert("RGB"), image.convert("LA"), image.convert("I;16"), image.convert("P")]
    for other in others:
        data = png(other)
        assert _gray_png(data, "x", None) is None
        np.testing.assert_array_equal(image_pixels(data, "x"), image_pixels(io.BytesIO(data), "x"))
    truncated = png(image)[:60]
    with pytest.raises(PipelineError, match="corrupt or truncated"):
        image_pixels(truncated, "cut.png")
    bomb = png(Image.new("L", (3000, 3000)))
    with pytest.raises(TooManyPixels, match="3000x3000"):
        image_pixels(bomb, "bomb.png", max_pixels=1_000_000)
