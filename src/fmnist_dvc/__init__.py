"""fmnist-dvc: a reproducible DVC + Keras pipeline for Fashion-MNIST."""

import os

# TensorFlow's C++ start-up chatter (CUDA probes on a CPU machine) buries the stage output;
# warnings and errors still show. Set before anything imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28)
