import dataclasses

import keras

from fmnist_dvc.models import build_cnn, build_model
from fmnist_dvc.params import TrainParams, load_section
from tests.conftest import REPO_ROOT


def test_default_cnn_is_the_280k_conv_bn_relu_net() -> None:
    cnn = load_section("train", TrainParams, REPO_ROOT / "params.yaml").cnn
    model = build_cnn(cnn.blocks, cnn.kernel_size, cnn.batch_norm, cnn.dense_units, cnn.dropout)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and not c.use_bias for c in convs)  # BN follows each
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 5
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 2
    # Convolutions 276,768 + batch norm 1,664 (4 per channel) + Dense 1,290 (128 x 10 + 10).
    assert model.count_params() == 279_722
    assert model.output_shape == (None, 10)


def test_build_model_follows_train_model() -> None:
    params = load_section("train", TrainParams, REPO_ROOT / "params.yaml")
    assert build_model(params).name == "seed_mlp"
    assert build_model(dataclasses.replace(params, model="cnn")).name == "cnn"
