"""A real S3-compatible server (moto's server mode) on loopback, for the DVC remote tests."""

from __future__ import annotations

import importlib
from pathlib import Path

from tests.helpers import require

BUCKET = "fmnist-dvc"
GOOD_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # what moto accepts


def require_module(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        require(f"{module} is missing ({exc}): run pip install -e '.[dev]'")


def aws_env(endpoint: str, keys: dict[str, str], empty: Path) -> dict[str, str]:
    """Everything the S3 remote needs, as environment variables only; `empty`, an empty file,
    stands in for ~/.aws/config and ~/.aws/credentials so that the host's cannot interfere."""
    return {
        **keys,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=GOOD_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=GOOD_KEYS["AWS_SECRET_ACCESS_KEY"],
    )
