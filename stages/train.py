"""DVC stage `train`: PREPARED -> MODELS/model.keras, per-epoch logs in LIVE and wall-clock
times in TIME; RESUME holds per-epoch snapshots while it runs (paths from dvc.yaml)."""

from pathlib import Path

from fmnist_dvc.core.errors import run_stage
from fmnist_dvc.core.model_io import MODEL_FILE
from fmnist_dvc.core.params import load_section, load_seed
from fmnist_dvc.train.backend import use_backend
from fmnist_dvc.train.params import TrainParams


def main(prepared: Path, models: Path, live: Path, time: Path, resume: Path) -> None:
    params = load_section("train", TrainParams)
    seed = load_seed()
    use_backend(params.backend)  # before Keras is imported
    from fmnist_dvc.train.loop import train  # TensorFlow loads only after params are valid

    train(params, seed, prepared, models, live, snapshot_dir=resume, time_dir=time)
    print(f"train: saved {models / MODEL_FILE}, per-epoch logs in {live}/")


if __name__ == "__main__":
    run_stage(main)
