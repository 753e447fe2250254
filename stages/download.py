"""DVC stage `download`: the four official files, verified, into RAW (paths from dvc.yaml)."""

from pathlib import Path

from fmnist_dvc.download import download_all
from fmnist_dvc.errors import run_stage
from fmnist_dvc.params import DownloadParams, load_section


def main(raw: Path) -> None:
    params = load_section("download", DownloadParams)
    download_all(params.sources, raw, timeout=params.timeout, retries=params.retries)
    print(f"download: 4 verified files in {raw}/")


if __name__ == "__main__":
    run_stage(main)
