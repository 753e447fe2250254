"""params.yaml's evaluate section."""

from __future__ import annotations

from fmnist_dvc.core.params import Params
from fmnist_dvc.evaluate.tta import Tta


class EvaluateParams(Params):
    tta: Tta
