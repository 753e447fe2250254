"""The export stage and the exported models: ONNX and TensorFlow Lite copies of real trained
models (the seed MLP and a small CNN, briefly trained on real images), checked against Keras;
`fmnist predict` on them without TensorFlow; broken and foreign export files."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from fmnist_dvc import CLASS_NAMES
from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.model_io import load_model
from fmnist_dvc.core.params import load_section
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.export.convert import export
from fmnist_dvc.train.loop import train
from fmnist_dvc.train.params import TrainParams
from tests.catalogue import assert_catalogued_error
from tests.helpers import REPO_ROOT, run_stage

pytestmark = pytest.mark.slow

FMNIST = Path(sys.executable).parent / "fmnist"


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def exported(
    request: pytest.FixtureRequest, prepared: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """The seed MLP (2 epochs) or a small CNN (1 epoch) trained on 1,000 real images, exported."""
    params = load_section("train", TrainParams, REPO_ROOT / "params.yaml")
    params = params.replace(model=request.param, epochs=2 if request.param == "mlp" else 1)
    if request.param == "cnn":
        params = params.replace(cnn=params.cnn.replace(blocks=[[8], [16]]))
    root = tmp_path_factory.mktemp(f"export-{request.param}")
    keras.backend.clear_session()
    train(params, 1, prepared, root / "models", root / "live")
    model = root / "models/model.keras"
    scores = export(model, prepared, root / "exports", root / "export.json", ["onnx", "tflite"], 0.999, 1e-4)
    return {"root": root, "model": model, "exports": root / "exports", "scores": scores}


def fmnist(*args: str | Path, cwd: Path, expect: int = 0, code: str = "") -> subprocess.CompletedProcess[str]:
    """The fmnist command; `code` runs first in the same interpreter (to block an import)."""
    main = "import sys; from fmnist_dvc.ship.cli import main; rc = main(sys.argv[1:]); "
    check = "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'; sys.exit(rc)"
    proc = subprocess.run(
        [sys.executable, "-c", code + main + check, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_each_export_agrees_with_keras_and_reports_it(exported: dict) -> None:
    assert sorted(p.name for p in exported["exports"].iterdir()) == ["model.onnx", "model.tflite"]
    written = json.loads((exported["root"] / "export.json").read_text())["export"]
    assert written == exported["scores"] and sorted(written) == ["onnx", "tflite"]
    for figures in written.values():
        assert 0.999 <= figures["top1_agreement"] <= 1
        assert 0 <= figures["max_abs_diff"] <= 1e-4
        assert figures["megabytes"] > 0.001


def test_predict_runs_each_export_without_tensorflow(exported: dict, prepared: Path, tmp_path: Path) -> None:
    images = load_split(prepared, "test")[0][:5]
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"item{i}.png")
    keras_model = load_model(exported["model"])
    expected = [
        CLASS_NAMES[i] for i in keras_model.predict(images.astype(np.float32), verbose=0).argmax(axis=1)
    ]
    for name in ("model.onnx", "model.tflite"):
        pngs = [f"item{i}.png" for i in range(len(images))]
        proc = fmnist("predict", *pngs, "--model", exported["exports"] / name, "--top-k", "1", cwd=tmp_path)
        got = [line.split(": ", 1)[1].rsplit(" ", 1)[0] for line in proc.stdout.splitlines()]
        assert got == expected, name


def test_an_export_that_disagrees_writes_nothing(exported: dict, prepared: Path, tmp_path: Path) -> None:
    out, scores = tmp_path / "exports", tmp_path / "export.json"
    with pytest.raises(
        PipelineError, match=r"the onnx export differs from the Keras model: .*nothing was written"
    ):
        export(exported["model"], prepared, out, scores, ["onnx"], 0.999, -1.0)  # no difference is below 0
    assert not out.exists() and not scores.exists()


def test_broken_or_foreign_export_files_get_one_line(exported: dict, tmp_path: Path) -> None:
    Image.new("L", (28, 28)).save(tmp_path / "one.png")
    onnx_bytes = (exported["exports"] / "model.onnx").read_bytes()
    cases = {
        "truncated.onnx": (onnx_bytes[: len(onnx_bytes) // 2], "is not a readable ONNX model"),
        "noise.tflite": (np.random.default_rng(0).bytes(4096), "is not a readable TensorFlow Lite model"),
        "empty.onnx": (b"", "is not a readable ONNX model"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        proc = fmnist("predict", "one.png", "--model", name, cwd=tmp_path, expect=1)
        assert (
            [line for line in proc.stderr.splitlines() if line.startswith("error:")]
            == [line for line in proc.stderr.splitlines() if line.startswith(f"error: {name} {message} (")]
            != []
        ), proc.stderr
    proc = fmnist("predict", "one.png", "--model", "absent.tflite", cwd=tmp_path, expect=1)
    assert "absent.tflite not found; run 'dvc repro export' first." in proc.stderr


def test_a_model_of_other_shapes_is_refused(tmp_path: Path) -> None:
    other = keras.Sequential([keras.Input((32, 32)), keras.layers.Flatten(), keras.layers.Dense(5)])
    other(np.zeros((1, 32, 32), np.float32))  # Keras exports only a model that has been called
    other.export(str(tmp_path / "other.onnx"), format="onnx", verbose=False)
    Image.new("L", (28, 28)).save(tmp_path / "one.png")
    proc = fmnist("predict", "one.png", "--model", "other.onnx", cwd=tmp_path, expect=1)
    line = next(line for line in proc.stderr.splitlines() if line.startswith("error:"))
    assert re.fullmatch(
        r"error: other\.onnx maps \[\[.+, 32, 32\]\] to \[\[.+, 5\]\]; fmnist needs one input of 28x28 "
        r"images and one output of 10 class probabilities\. Export a model trained by this pipeline "
        r"\('dvc repro export'\)\.",
        line,
    ), line


def test_a_missing_runtime_names_the_extra(exported: dict, tmp_path: Path) -> None:
    Image.new("L", (28, 28)).save(tmp_path / "one.png")
    block = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('onnxruntime', 'ai_edge_litert'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    for name, package in (("model.onnx", "onnxruntime"), ("model.tflite", "the LiteRT interpreter")):
        proc = fmnist(
            "predict", "one.png", "--model", exported["exports"] / name, cwd=tmp_path, expect=1, code=block
        )
        assert f"needs {package}; install it: pip install -e '.[export]'" in proc.stderr


@pytest.mark.parametrize("exported", ["mlp"], indirect=True)  # export() itself runs on both, above
def test_the_stage_writes_its_outputs_and_the_model_card(
    exported: dict, prepared: Path, tmp_path: Path
) -> None:
    (tmp_path / "models").mkdir()
    shutil.copy2(exported["model"], tmp_path / "models/model.keras")
    (tmp_path / "data").mkdir()
    (tmp_path / "data/prepared").symlink_to(prepared)
    (tmp_path / "metrics/train").mkdir(parents=True)
    shutil.copy2(
        exported["root"] / "live/params.yaml", tmp_path / "metrics/train/params.yaml"
    )  # train's recipe
    proc = run_stage("export", tmp_path)
    assert_catalogued_error(proc, "card-scores-missing")  # evaluate has not run: nothing is exported
    assert not (tmp_path / "exports").exists() and not (tmp_path / "metrics/export.json").exists()
    assert run_stage("evaluate", tmp_path).returncode == 0
    proc = run_stage("export", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == [
        "MODEL_CARD.md",
        "card.json",
        "model.onnx",
        "model.tflite",
    ]
    scores = json.loads((tmp_path / "metrics/export.json").read_text())["export"]
    assert sorted(scores) == ["onnx", "tflite"] and all(s["top1_agreement"] >= 0.999 for s in scores.values())
    assert [line.split(",")[0] for line in proc.stdout.splitlines() if line.startswith("export: ")][:2] == [
        "export: exports/onnx model",
        "export: exports/tflite model",
    ]
    # The card says what the pipeline's own files say: the recipe, the test scores, the parity.
    card = json.loads((tmp_path / "exports/card.json").read_text())
    test = json.loads((tmp_path / "metrics/evaluate.json").read_text())["test"]
    per_class = (tmp_path / "metrics/test/per_class.csv").read_text().splitlines()
    assert card["metrics"] == test and card["exports"] == scores and card["tta"] == ["none"]
    assert card["recipe"]["seed"] == 1 and card["recipe"]["train"]["epochs"] == 2
    assert (
        [row["class"] for row in card["per_class"]]
        == list(CLASS_NAMES)
        == [r.split(",")[0] for r in per_class[1:]]
    )
    text = (tmp_path / "exports/MODEL_CARD.md").read_text()
    assert text == card["markdown"]
    for fragment in (
        "Multilayer perceptron 784 -> 256 -> 256 -> 128 -> 64 -> 10",
        f"- Accuracy {test['accuracy']:.4f}",
        f"| Trouser | {float(per_class[2].split(',')[1]):.3f} |",
        "| epochs, batch size | 2 (early stopping patience 10), 32 |",
        "| seed | 1 |",
        "## Intended use",
        "not for photos of clothes being worn",
    ):
        assert fragment in text, fragment
