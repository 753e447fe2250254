"""DVC stage `evaluate`: MODELS/model.keras on the test split in PREPARED -> the SCORES file
and per-image and per-class plot data in TEST (paths from dvc.yaml)."""

from pathlib import Path

import pandas as pd

from fmnist_dvc.core.errors import run_stage
from fmnist_dvc.core.model_io import MODEL_FILE, check_model_file
from fmnist_dvc.core.params import load_section
from fmnist_dvc.evaluate.params import EvaluateParams


def main(models: Path, prepared: Path, scores: Path, test: Path) -> None:
    params = load_section("evaluate", EvaluateParams)
    model = models / MODEL_FILE
    check_model_file(model)  # a missing or damaged file fails before TensorFlow loads
    from fmnist_dvc.evaluate.metrics import evaluate

    result = evaluate(model, prepared, scores, test, tta=params.tta)
    print(pd.read_csv(test / "per_class.csv").to_string(index=False, float_format="%.3f"))
    print(
        f"Test accuracy: {result['accuracy']:.4f} (top-2 {result['top2_accuracy']:.4f}, "
        f"loss {result['loss']:.4f}, macro F1 {result['macro_avg']['f1']:.4f}, {result['images']} images)"
    )
    if "tta_accuracy" in result:
        print(f"Test accuracy with test-time augmentation ({params.tta}): {result['tta_accuracy']:.4f}")


if __name__ == "__main__":
    run_stage(main)
