"""Portable copies of the trained model, each checked against the Keras model before it is kept.

Keras writes the TensorFlow Lite file (`Model.export`), tf2onnx the ONNX file; both are read
back with the runtimes `fmnist predict` uses (onnxruntime, the LiteRT interpreter) and must give
the Keras model's answers on all 10,000 test images.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fmnist_dvc import IMAGE_SHAPE
from fmnist_dvc.core.atomic import atomic_dir, atomic_write_text
from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.model_io import load_model
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.export.runtimes import EXTRA, open_model

FILES = {"onnx": "model.onnx", "tflite": "model.tflite"}  # export.formats -> the file in the stage's output
BATCH = 1000


def export(
    model_path: Path,
    data_dir: Path,
    out_dir: Path,
    metrics_path: Path,
    formats: list[str],
    min_agreement: float,
    max_abs_diff: float,
    also: Callable[[dict, Path], None] | None = None,
) -> dict:
    """Write each format to `out_dir` and its parity with the Keras model to `metrics_path`;
    `also(scores, folder)` adds files of its own to `out_dir` (the model card).

    A format whose top-1 class agrees with Keras on fewer than `min_agreement` of the test
    images, or whose probabilities differ by more than `max_abs_diff` anywhere, is an error
    and nothing is written.
    """
    model = load_model(model_path)
    images, _ = load_split(data_dir, "test")
    x = images.astype(np.float32)  # the model scales the pixels itself
    reference = _predict(model, x)
    scores: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="fmnist-export-") as tmp:
        for fmt in formats:
            path = Path(tmp) / FILES[fmt]
            _write(model, fmt, path)
            probs = _predict(open_model(path), x)
            agreement = float(np.mean(probs.argmax(axis=1) == reference.argmax(axis=1)))
            diff = float(np.max(np.abs(probs - reference)))
            if agreement < min_agreement or diff > max_abs_diff:
                raise PipelineError(
                    f"the {fmt} export differs from the Keras model: same top class on {agreement:.2%} of "
                    f"the test images (export.min_agreement {min_agreement}), probabilities up to {diff:.2e} "
                    f"apart (export.max_abs_diff {max_abs_diff}); nothing was written."
                )
            scores[fmt] = {
                "top1_agreement": round(agreement, 6),
                "max_abs_diff": float(f"{diff:.3e}"),
                "megabytes": round(path.stat().st_size / 1e6, 3),
            }
        with atomic_dir(out_dir) as folder:
            for fmt in formats:
                shutil.copy2(Path(tmp) / FILES[fmt], folder / FILES[fmt])
            if also is not None:
                also(scores, folder)
    atomic_write_text(metrics_path, json.dumps({"export": scores}, indent=2) + "\n")
    return scores


def _write(model: object, fmt: str, path: Path) -> None:
    if fmt == "onnx":
        try:
            import tf2onnx  # noqa: F401
        except ImportError:
            raise PipelineError(f"exporting onnx needs tf2onnx; install it: {EXTRA}") from None
    with contextlib.redirect_stdout(io.StringIO()):  # the converters' chatter; errors still raise
        if fmt == "tflite":
            model.export(str(path), format="litert", verbose=False)
        else:
            _write_onnx(model, path)


def _write_onnx(model: object, path: Path) -> None:
    """tf2onnx on the frozen forward pass. Keras' own `export(format="onnx")` hands tf2onnx
    every captured tensor as an input, and the pixel-scaling layer's constants are captured
    tensors: the file then asks for three inputs. Freezing first makes them constants."""
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    forward = tf.function(lambda images: model(images, training=False))
    spec = tf.TensorSpec((None, *IMAGE_SHAPE), tf.float32, name="images")
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function(spec))
    tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(),
        input_names=[t.name for t in frozen.inputs],
        output_names=[t.name for t in frozen.outputs],
        output_path=str(path),
    )


def _predict(model: object, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.predict_on_batch(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])
