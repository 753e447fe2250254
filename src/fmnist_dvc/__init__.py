"""fmnist-dvc: a reproducible DVC + Keras pipeline for Fashion-MNIST."""

import os

from fmnist_dvc import cuda_probe

# TensorFlow's C++ start-up chatter (info lines) buries the stage output; warnings and errors
# still show. Set before anything imports TensorFlow. Its CUDA probe ignores the level:
# cuda_probe quiets that where there is no CUDA.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
cuda_probe.install()

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
