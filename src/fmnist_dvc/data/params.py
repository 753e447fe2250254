"""params.yaml's download and preprocess sections."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fmnist_dvc.core.params import AtLeast1, Params


class DownloadParams(Params):
    sources: Annotated[list[str], Field(min_length=1)]
    timeout: Annotated[float, Field(gt=0)]  # seconds
    retries: AtLeast1


class PreprocessParams(Params):
    val_fraction: Annotated[float, Field(gt=0, lt=1)]
    train_limit: Annotated[int | None, Field(ge=20, description="null = all images")]
