"""DVC stage `evaluate`: models/model.keras on the test split -> metrics/evaluate.json, metrics/test/."""

from pathlib import Path

import pandas as pd

from fmnist_dvc.errors import run_stage
from fmnist_dvc.model_io import check_model_file
from fmnist_dvc.params import EvaluateParams, load_section

MODEL = Path("models/model.keras")
PREPARED_DIR = Path("data/prepared")
METRICS = Path("metrics/evaluate.json")
PLOTS_DIR = Path("metrics/test")


def main() -> None:
    params = load_section("evaluate", EvaluateParams)
    check_model_file(MODEL)  # a missing or damaged file fails before TensorFlow loads
    from fmnist_dvc.evaluation import evaluate

    test = evaluate(MODEL, PREPARED_DIR, METRICS, PLOTS_DIR, tta=params.tta)
    print(pd.read_csv(PLOTS_DIR / "per_class.csv").to_string(index=False, float_format="%.3f"))
    print(
        f"Test accuracy: {test['accuracy']:.4f} (top-2 {test['top2_accuracy']:.4f}, "
        f"loss {test['loss']:.4f}, macro F1 {test['macro_avg']['f1']:.4f}, {test['images']} images)"
    )
    if "tta_accuracy" in test:
        print(f"Test accuracy with test-time augmentation ({params.tta}): {test['tta_accuracy']:.4f}")


if __name__ == "__main__":
    run_stage(main)
