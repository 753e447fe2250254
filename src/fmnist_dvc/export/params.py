"""params.yaml's export section."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from fmnist_dvc.core.params import Params


class ExportParams(Params):
    formats: Annotated[list[Literal["onnx", "tflite"]], Field(min_length=1)]
    min_agreement: Annotated[float, Field(ge=0, le=1, description="share of test images")]
    max_abs_diff: Annotated[float, Field(ge=0)]
