"""DVC stage `evaluate`: models/model.keras on the test split -> metrics/evaluate.json."""

from pathlib import Path

from fmnist_dvc.errors import run_stage

MODEL = Path("models/model.keras")
PREPARED_DIR = Path("data/prepared")
METRICS = Path("metrics/evaluate.json")


def main() -> None:
    from fmnist_dvc.evaluation import evaluate

    test = evaluate(MODEL, PREPARED_DIR, METRICS)
    print(f"Test accuracy: {test['accuracy']:.4f} (loss {test['loss']:.4f}, {test['images']} images)")


if __name__ == "__main__":
    run_stage(main)
