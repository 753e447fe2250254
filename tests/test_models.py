from pathlib import Path

import keras
import numpy as np
import pytest
from pydantic import ValidationError

from fmnist_dvc.core.params import load_section
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.train.models import build_cnn, build_model, pixel_scaling, set_whitening
from fmnist_dvc.train.optimizer import compile_model
from fmnist_dvc.train.params import TrainParams
from tests.helpers import REPO_ROOT


def test_default_cnn_is_the_280k_conv_bn_relu_net() -> None:
    cnn = load_section("train", TrainParams, REPO_ROOT / "params.yaml").cnn
    model = build_cnn(cnn)
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
    assert build_model(params.replace(model="cnn")).name == "cnn"


def test_flatten_head_keeps_positions_and_dense_layers_follow_dropout() -> None:
    params = load_section("train", TrainParams, REPO_ROOT / "params.yaml")
    cnn = params.cnn.replace(blocks=[[8], [16]], head="flatten", dense_units=[32], bn_momentum=0.6)
    model = build_cnn(cnn)
    flatten = next(layer for layer in model.layers if isinstance(layer, keras.layers.Flatten))
    assert flatten.output.shape == (None, 14 * 14 * 16)
    kinds = [type(layer).__name__ for layer in model.layers[-5:]]
    assert kinds == ["Flatten", "Dropout", "Dense", "Dropout", "Dense"]
    assert all(
        layer.momentum == 0.6 for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    )
    # conv 72 + BN 32 | conv 1,152 + BN 64 | Dense 3,136 x 32 + 32 | Dense 32 x 10 + 10
    assert model.count_params() == 72 + 32 + 1_152 + 64 + 3_136 * 32 + 32 + 330


def test_pool_after_conv_moves_pooling_before_batch_norm_with_the_same_weights() -> None:
    cnn = load_section("train", TrainParams, REPO_ROOT / "params.yaml").cnn
    late = build_cnn(cnn.replace(blocks=[[8], [16, 16], [32]]))
    early = build_cnn(cnn.replace(blocks=[[8], [16, 16], [32]], pool="after_conv"))
    kinds = [type(layer).__name__ for layer in early.layers[2:]]  # after the scaling and Reshape
    assert kinds[:9] == [
        "Conv2D", "MaxPooling2D", "BatchNormalization", "ReLU",
        "Conv2D", "MaxPooling2D", "BatchNormalization", "ReLU", "Conv2D",
    ]  # fmt: skip
    # Block 2's second convolution runs at 7x7, not 14x14; the output and weights are the same.
    assert early.layers[10].output.shape == (None, 7, 7, 16)
    assert early.output_shape == late.output_shape
    assert early.count_params() == late.count_params()


def test_models_take_raw_pixels_and_scale_them_exactly_as_division_by_255() -> None:
    params = load_section("train", TrainParams, REPO_ROOT / "params.yaml")
    pixels = np.arange(256, dtype=np.float32).reshape(1, 16, 16)
    assert np.asarray(pixel_scaling()(pixels)).tobytes() == (pixels / np.float32(255)).tobytes()
    for model in (build_model(params), build_model(params.replace(model="cnn"))):
        assert isinstance(model.layers[0], keras.layers.Normalization) and not model.layers[0].weights


def test_residual_blocks_add_the_first_convolution_to_the_last() -> None:
    cnn = load_section("train", TrainParams, REPO_ROOT / "params.yaml").cnn
    plain = build_cnn(cnn)
    residual = build_cnn(cnn.replace(residual=True))
    assert isinstance(plain, keras.Sequential) and not isinstance(residual, keras.Sequential)
    adds = [layer for layer in residual.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 2  # blocks [64, 64] and [128, 128]; [32] has one convolution
    assert residual.count_params() == plain.count_params() and residual.output_shape == (None, 10)
    assert [a.output.shape for a in adds] == [(None, 14, 14, 64), (None, 7, 7, 128)]


def test_residual_blocks_need_one_width_each() -> None:
    cnn = load_section("train", TrainParams, REPO_ROOT / "params.yaml").cnn
    with pytest.raises(ValidationError, match="each block needs one width"):
        cnn.replace(blocks=[[32], [64, 128]], residual=True)


def test_whitening_layer_decorrelates_real_patches_and_is_never_trained(prepared: Path) -> None:
    x, _ = load_split(prepared, "train")
    params = load_section("train", TrainParams, REPO_ROOT / "params.yaml")
    model = build_model(params.replace(model="cnn", cnn=params.cnn.replace(blocks=[[8], [16]], whiten=2)))
    whiten = model.get_layer("whiten")
    assert not whiten.trainable_weights and whiten.kernel.shape == (2, 2, 1, 8)
    set_whitening(model, x)
    kernel = np.asarray(whiten.kernel)
    np.testing.assert_array_equal(kernel[..., 4:], -kernel[..., :4])  # each direction, both signs
    # The layer itself (before its ReLU), run on the images: at each pixel its outputs are the
    # 2x2 patch starting there. Over all patches, the first four are uncorrelated with a second
    # moment of about 1 each (less where the eps term damps the faintest direction).
    stem = keras.Sequential(model.layers[:3])  # pixel scaling, reshape, whiten
    out = np.asarray(stem(x.astype(np.float32)))[:, :-1, :-1, :4].reshape(-1, 4)  # "same" pads the last row
    moment = out.T.astype(np.float64) @ out / len(out)
    np.testing.assert_allclose(moment - np.diag(np.diag(moment)), 0, atol=1e-4)
    assert 0.9 < moment[0, 0] <= 1 and 0.5 < moment[3, 3] <= 1
    # The first direction is overall brightness, and its sign is fixed: positive weights.
    assert (kernel[..., 0] > 0).all()
    # Training moves the other weights but not the whitening.
    compile_model(model, params.replace(model="cnn"), steps_per_epoch=1)
    model.fit(x[:64], keras.utils.to_categorical(np.zeros(64), 10), batch_size=64, verbose=0)
    np.testing.assert_array_equal(np.asarray(whiten.kernel), kernel)


def test_bn_bias_lr_speeds_up_batch_norm_biases_only() -> None:
    params = load_section("train", TrainParams, REPO_ROOT / "params.yaml")
    x = np.arange(64 * 784, dtype=np.float32).reshape(64, 28, 28) % 255
    y = keras.utils.to_categorical(np.arange(64) % 10, 10)
    steps = {}
    for factor in (1.0, 64.0):
        p = params.replace(model="cnn", cnn=params.cnn.replace(blocks=[[8], [16]]), bn_bias_lr=factor)
        keras.utils.set_random_seed(0)
        model = build_model(p)
        compile_model(model, p, steps_per_epoch=1)
        before = [np.asarray(v).copy() for v in model.trainable_variables]
        model.fit(x, y, batch_size=64, verbose=0)  # one Adam step: each weight moves about lr
        steps[factor] = [
            (v.path.rsplit("/", 1)[-1], np.abs(np.asarray(v) - b).max())
            for v, b in zip(model.trainable_variables, before, strict=True)
        ]
    names = [name for name, _ in steps[1.0]]
    assert names.count("beta") == 2 and len(names) == 8  # 2 convolutions, 2 batch norms (2 each), the Dense
    for (name, moved), (_, faster) in zip(steps[1.0], steps[64.0], strict=True):
        assert faster == pytest.approx(64 * moved if name == "beta" else moved, rel=0.01), name
