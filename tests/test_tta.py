import numpy as np
import pytest

from fmnist_dvc.evaluate.tta import predict_tta, shift, views


def test_shift_moves_pixels_and_fills_with_black() -> None:
    images = np.arange(1, 10, dtype=np.uint8).reshape(1, 3, 3)
    assert shift(images, 1, 1)[0].tolist() == [[0, 0, 0], [0, 1, 2], [0, 4, 5]]
    assert shift(images, -1, -1)[0].tolist() == [[5, 6, 0], [8, 9, 0], [0, 0, 0]]
    assert shift(images, 0, 0).tolist() == images.tolist()


@pytest.mark.parametrize(("mode", "count"), [("none", 1), ("flip", 2), ("flip_translate", 6)])
def test_views_weights_sum_to_one_and_include_the_mirror(mode: str, count: int) -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    pairs = views(images, mode)
    assert len(pairs) == count and sum(w for w, _ in pairs) == pytest.approx(1.0)
    if mode != "none":
        assert any(np.array_equal(v, images[:, :, ::-1]) for _, v in pairs)


def test_flip_averages_the_two_answers() -> None:
    # A "model" that only looks at the left half: a mirrored image gives another answer.
    images = np.zeros((2, 28, 28), np.uint8)
    images[0, :, :14] = 255  # bright on the left
    images[1, :, 14:] = 255  # bright on the right

    def predict(x: np.ndarray) -> np.ndarray:
        left = x[:, :, :14].mean(axis=(1, 2)) / 255
        return np.stack([left, 1 - left], axis=1)

    np.testing.assert_allclose(predict_tta(predict, images, "none"), [[1, 0], [0, 1]])
    np.testing.assert_allclose(predict_tta(predict, images, "flip"), [[0.5, 0.5], [0.5, 0.5]])


def test_known_plain_probabilities_are_not_recomputed() -> None:
    images = np.random.default_rng(1).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    calls: list[np.ndarray] = []

    def predict(x: np.ndarray) -> np.ndarray:
        calls.append(x)
        return np.tile(x[:, 0, :2].astype(np.float64), 1)

    plain = predict(images)
    calls.clear()
    with_plain = predict_tta(predict, images, "flip", plain=plain)
    assert len(calls) == 1 and np.array_equal(calls[0], images[:, :, ::-1])
    np.testing.assert_array_equal(with_plain, predict_tta(predict, images, "flip"))
