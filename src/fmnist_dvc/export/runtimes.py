"""Open a model file for prediction: Keras (.keras), ONNX (.onnx) or TensorFlow Lite (.tflite).

The exported formats run on onnxruntime and the LiteRT interpreter, without TensorFlow: a
one-image `fmnist predict` then starts in well under a second instead of about four. Every
opened model offers `predict_on_batch(float32 images 0-255, shape (n, 28, 28))` -> (n, 10).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fmnist_dvc import IMAGE_SHAPE, NUM_CLASSES
from fmnist_dvc.core.errors import PipelineError

EXTRA = "pip install -e '.[export]'"


class Predictor(Protocol):
    def predict_on_batch(self, images: np.ndarray) -> np.ndarray: ...


def open_model(path: Path) -> Predictor:
    """The model at `path`, by its suffix; anything but .onnx and .tflite is read as Keras."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".onnx", ".tflite") and not path.is_file():
        raise PipelineError(f"{path} not found; run 'dvc repro export' first.")
    if suffix == ".onnx":
        return OnnxModel(path)
    if suffix == ".tflite":
        return LiteRTModel(path)
    from fmnist_dvc.core.model_io import load_model  # TensorFlow loads only for a Keras file

    return load_model(path)


class OnnxModel:
    """An ONNX model on onnxruntime's CPU provider; `threads` 0 lets onnxruntime use every core."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise PipelineError(f"{path}: an ONNX model needs onnxruntime; install it: {EXTRA}") from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: a broken file is reported below, once
        options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own unexported exception types
            _unreadable(path, "ONNX", exc)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        _check_shapes(path, [i.shape for i in inputs], [o.shape for o in outputs])
        self.input = inputs[0].name

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.asarray(images, np.float32)})[0]


class LiteRTModel:
    """A TensorFlow Lite flatbuffer on the LiteRT interpreter (the ai-edge-litert package)."""

    def __init__(self, path: Path) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise PipelineError(
                f"{path}: a TensorFlow Lite model needs the LiteRT interpreter; install it: {EXTRA}"
            ) from None
        try:
            self.interpreter = Interpreter(model_path=str(path))
        except (ValueError, RuntimeError) as exc:
            _unreadable(path, "TensorFlow Lite", exc)
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        _check_shapes(
            path, [list(i["shape_signature"]) for i in inputs], [list(o["shape_signature"]) for o in outputs]
        )
        self.input, self.output = inputs[0]["index"], outputs[0]["index"]
        self.batch = -1

    def predict_on_batch(self, images: np.ndarray) -> np.ndarray:
        if len(images) != self.batch:  # the batch dimension is free; size the tensors once per size
            self.interpreter.resize_tensor_input(self.input, [len(images), *IMAGE_SHAPE])
            self.interpreter.allocate_tensors()
            self.batch = len(images)
        self.interpreter.set_tensor(self.input, np.asarray(images, np.float32))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


def _unreadable(path: Path, kind: str, exc: Exception) -> None:
    reason = " ".join(str(exc).split())[:160]
    raise PipelineError(
        f"{path} is not a readable {kind} model ({reason}); run 'dvc repro export' or fetch it again."
    ) from None


def _check_shapes(path: Path, inputs: list[list[Any]], outputs: list[list[Any]]) -> None:
    """One input of (batch, 28, 28) and one output of (batch, 10); the batch size may be free."""
    expected_in, expected_out = list(IMAGE_SHAPE), [NUM_CLASSES]
    if (
        len(inputs) == 1
        and len(outputs) == 1
        and inputs[0][1:] == expected_in
        and outputs[0][1:] == expected_out
    ):
        return
    got = f"maps {inputs} to {outputs}" if inputs and outputs else "has no input or no output"
    raise PipelineError(
        f"{path} {got}; fmnist needs one input of 28x28 images and one output of {NUM_CLASSES} "
        "class probabilities. Export a model trained by this pipeline ('dvc repro export')."
    )
