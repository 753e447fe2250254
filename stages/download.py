"""DVC stage `download`: the four official files, verified, into RAW (paths from dvc.yaml)."""

from pathlib import Path

from fmnist_dvc.core.errors import run_stage
from fmnist_dvc.core.params import load_section
from fmnist_dvc.data.download import download_all
from fmnist_dvc.data.params import DownloadParams


def main(raw: Path) -> None:
    params = load_section("download", DownloadParams)
    download_all(params.sources, raw, timeout=params.timeout, retries=params.retries)
    print(f"download: 4 verified files in {raw}/")


if __name__ == "__main__":
    run_stage(main)
