"""DVC stage `preprocess`: data/raw/ IDX files -> uint8 train/val/test arrays in data/prepared/."""

from pathlib import Path

from fmnist_dvc.errors import run_stage
from fmnist_dvc.figures import class_samples, save_png
from fmnist_dvc.params import PreprocessParams, load_section, load_seed
from fmnist_dvc.prepare import prepare
from fmnist_dvc.splits import load_split

RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")
SAMPLES = Path("metrics/data/samples.png")


def main() -> None:
    params = load_section("preprocess", PreprocessParams)
    sizes = prepare(RAW_DIR, PREPARED_DIR, params.val_fraction, params.train_limit, load_seed())
    save_png(class_samples(*load_split(PREPARED_DIR, "train")), SAMPLES)
    print("preprocess: " + ", ".join(f"{n} {split}" for split, n in sizes.items()) + " images")


if __name__ == "__main__":
    run_stage(main)
