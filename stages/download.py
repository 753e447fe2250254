"""DVC stage `download`: the four official files, verified, into data/raw/."""

from pathlib import Path

from fmnist_dvc.download import download_all
from fmnist_dvc.errors import run_stage
from fmnist_dvc.params import DownloadParams, load_section

RAW_DIR = Path("data/raw")


def main() -> None:
    params = load_section("download", DownloadParams)
    download_all(params.sources, RAW_DIR, timeout=params.timeout, retries=params.retries)
    print(f"download: 4 verified files in {RAW_DIR}/")


if __name__ == "__main__":
    run_stage(main)
