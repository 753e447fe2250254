"""DVC stage `preprocess`: RAW IDX files -> uint8 train/val/test arrays in PREPARED, and a
SAMPLES image of each class (paths from dvc.yaml)."""

from pathlib import Path

from fmnist_dvc.core.errors import run_stage
from fmnist_dvc.core.figures import save_png
from fmnist_dvc.core.params import load_section, load_seed
from fmnist_dvc.core.splits import load_split
from fmnist_dvc.data.params import PreprocessParams
from fmnist_dvc.data.prepare import prepare
from fmnist_dvc.data.samples import class_samples


def main(raw: Path, prepared: Path, samples: Path) -> None:
    params = load_section("preprocess", PreprocessParams)
    sizes = prepare(raw, prepared, params.val_fraction, params.train_limit, load_seed())
    save_png(class_samples(*load_split(prepared, "train")), samples)
    print("preprocess: " + ", ".join(f"{n} {split}" for split, n in sizes.items()) + " images")


if __name__ == "__main__":
    run_stage(main)
