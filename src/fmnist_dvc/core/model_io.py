"""Save models byte-for-byte reproducibly, and load them safely.

Keras is imported only where a model is saved or built: check_model_file() runs without
TensorFlow, so a stage can refuse a missing or damaged file in a second, with one clean line.
"""

from __future__ import annotations

import json
import os
import tempfile
import typing
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_dvc import IMAGE_SHAPE, NUM_CLASSES
from fmnist_dvc.core.errors import PipelineError

if TYPE_CHECKING:
    import keras

# The file inside the train stage's output directory (dvc.yaml's paths.models).
MODEL_FILE = "model.keras"
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def save_model(model: keras.Model, path: Path) -> None:
    """Save as .keras, atomically, with the run-specific noise taken out.

    Keras stamps the save time into metadata.json and into the weights' zip entry, and
    numbers shared objects by Python id(); without this, every retrain would change the
    file's hash in dvc.lock even when the weights are bit-identical.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, raw = tempfile.mkstemp(suffix=".keras", dir=path.parent)
    os.close(fd)
    fd, clean = tempfile.mkstemp(suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(raw)
        with zipfile.ZipFile(raw) as src, zipfile.ZipFile(clean, "w", zipfile.ZIP_DEFLATED) as dst:
            for info in sorted(src.infolist(), key=lambda i: i.filename):
                data = src.read(info)
                if info.filename == "metadata.json":
                    meta = json.loads(data)
                    meta.pop("date_saved", None)
                    data = json.dumps(meta, sort_keys=True).encode()
                elif info.filename == "config.json":
                    data = json.dumps(_renumber_shared_ids(json.loads(data))).encode()
                entry = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE)
                entry.external_attr = 0o644 << 16
                dst.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
        os.chmod(clean, 0o644)
        os.replace(clean, path)
    finally:
        Path(raw).unlink(missing_ok=True)
        Path(clean).unlink(missing_ok=True)


def _renumber_shared_ids(config: Any) -> Any:
    """Replace id()-based shared_object_id values by 1, 2, ... in order of appearance."""
    mapping: dict[int, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "shared_object_id" and isinstance(value, int):
                    out[key] = mapping.setdefault(value, len(mapping) + 1)
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(config)


KERAS_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")


def check_model_file(path: Path) -> None:
    """Refuse a missing, truncated or damaged .keras file before TensorFlow is loaded.

    A .keras file is a zip; its CRCs catch flipped bytes anywhere, weights included.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found; run 'dvc repro train' first.")
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [m for m in KERAS_MEMBERS if m not in archive.namelist()]
            damaged = archive.testzip()
            if not missing and damaged is None:
                json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        _unreadable(path, f"not a complete zip archive ({exc})")
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        _unreadable(path, "its config.json is not valid JSON")
    if missing:
        _unreadable(path, f"the archive has no {', '.join(missing)}")
    if damaged is not None:
        _unreadable(path, f"{damaged} inside it fails its CRC check")


def _unreadable(path: Path, why: str) -> typing.NoReturn:
    raise PipelineError(
        f"{path} is not a readable Keras model: {why}; run 'dvc repro -f train' to rebuild it."
    )


def load_model(path: Path) -> keras.Model:
    """Load a .keras file with safe_mode on: a shared model file cannot run arbitrary code."""
    import keras

    path = Path(path)
    check_model_file(path)
    try:
        model = keras.models.load_model(path, safe_mode=True)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise PipelineError(
            f"{path} is not a readable Keras model ({type(exc).__name__}); "
            "run 'dvc repro -f train' to rebuild it."
        ) from None
    check_model_shapes(model, path)
    return model


def check_model_shapes(model: Any, path: Path) -> None:
    """A readable model of the wrong shape would fail deep inside predict(); say so plainly."""
    expected = ((None, *IMAGE_SHAPE), (None, NUM_CLASSES))
    try:
        got = (tuple(model.input_shape), tuple(model.output_shape))
    except (AttributeError, ValueError, TypeError):  # several inputs or outputs, or none
        got = None
    if got != expected:
        shapes = f"maps {got[0]} to {got[1]}" if got else "does not have one input and one output"
        raise PipelineError(
            f"{path} {shapes}, not 28x28 images to {NUM_CLASSES} class scores; "
            "run 'dvc repro -f train' to rebuild it."
        )
