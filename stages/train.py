"""DVC stage `train`: data/prepared/ -> models/model.keras and per-epoch logs in metrics/train/."""

from pathlib import Path

from fmnist_dvc.backend import use_backend
from fmnist_dvc.errors import run_stage
from fmnist_dvc.params import TrainParams, load_section, load_seed

PREPARED_DIR = Path("data/prepared")
MODEL_DIR = Path("models")
LIVE_DIR = Path("metrics/train")
TIME_DIR = Path("metrics/time")
RESUME_DIR = Path("build/train-resume")  # not an output: DVC would delete it before a rerun


def main() -> None:
    params = load_section("train", TrainParams)
    seed = load_seed()
    use_backend(params.backend)  # before Keras is imported
    from fmnist_dvc.training import train  # TensorFlow loads only after params are valid

    train(params, seed, PREPARED_DIR, MODEL_DIR, LIVE_DIR, snapshot_dir=RESUME_DIR, time_dir=TIME_DIR)
    print(f"train: saved {MODEL_DIR / 'model.keras'}, per-epoch logs in {LIVE_DIR}/")


if __name__ == "__main__":
    run_stage(main)
