"""DVC stage `preprocess`: data/raw/ IDX files -> uint8 train/val/test arrays in data/prepared/."""

from pathlib import Path

from fmnist_dvc.errors import run_stage
from fmnist_dvc.params import PreprocessParams, load_section, load_seed
from fmnist_dvc.prepare import prepare

RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")


def main() -> None:
    params = load_section("preprocess", PreprocessParams)
    sizes = prepare(RAW_DIR, PREPARED_DIR, params.val_fraction, params.train_limit, load_seed())
    print("preprocess: " + ", ".join(f"{n} {split}" for split, n in sizes.items()) + " images")


if __name__ == "__main__":
    run_stage(main)
