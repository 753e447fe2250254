import time
from pathlib import Path

import keras
import numpy as np
import pytest

from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.model_io import load_model, save_model
from fmnist_dvc.train.models import build_mlp


def _fresh_model() -> keras.Model:
    """The same seeded model as a new object, as a new training process would build it."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    return build_mlp([16, 8], 0.2)


def test_same_weights_saved_later_give_identical_bytes(tmp_path: Path) -> None:
    first, second = _fresh_model(), _fresh_model()
    first.save(tmp_path / "raw1.keras")
    save_model(first, tmp_path / "a" / "model.keras")
    time.sleep(1.1)  # Keras stamps the save time, to the second
    second.save(tmp_path / "raw2.keras")
    save_model(second, tmp_path / "b" / "model.keras")
    # Plain Keras files differ (time stamps, id()-based object numbers); ours do not.
    assert (tmp_path / "raw1.keras").read_bytes() != (tmp_path / "raw2.keras").read_bytes()
    a, b = (tmp_path / d / "model.keras" for d in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    loaded = load_model(a)
    for w1, w2 in zip(first.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)
    assert sorted(p.name for p in a.parent.iterdir()) == ["model.keras"]  # no temporary files left


def test_missing_or_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"model.keras not found; run 'dvc repro train' first"):
        load_model(tmp_path / "model.keras")
    (tmp_path / "model.keras").write_bytes(b"not a zip file")
    with pytest.raises(PipelineError, match="is not a readable Keras model"):
        load_model(tmp_path / "model.keras")
