"""The export stage: ONNX and TensorFlow Lite copies of the model, checked against it, and
the runtimes that run them without TensorFlow."""
