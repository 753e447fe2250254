"""DVC stage `export`: MODELS/model.keras -> EXPORTS/model.onnx and model.tflite, each checked
against the Keras model on the test split in PREPARED (the parity figures go to SCORES), and
the model card (MODEL_CARD.md, card.json) written from train's RECIPE and evaluate's TEST_SCORES
and PER_CLASS table."""

from functools import partial
from pathlib import Path

from fmnist_dvc.core.errors import run_stage
from fmnist_dvc.core.model_io import MODEL_FILE, check_model_file
from fmnist_dvc.core.params import load_section
from fmnist_dvc.export.card import build_card, write_card
from fmnist_dvc.export.params import ExportParams


def main(
    models: Path,
    prepared: Path,
    recipe: Path,
    test_scores: Path,
    per_class: Path,
    exports: Path,
    scores: Path,
) -> None:
    params = load_section("export", ExportParams)
    model = models / MODEL_FILE
    check_model_file(model)  # a missing or damaged file fails before TensorFlow loads
    card = build_card(recipe, test_scores, per_class)  # so does a missing recipe or score
    from fmnist_dvc.export.convert import export

    result = export(
        model,
        prepared,
        exports,
        scores,
        params.formats,
        params.min_agreement,
        params.max_abs_diff,
        also=partial(write_card, card),
    )
    for fmt, s in result.items():
        print(
            f"export: {exports}/{fmt} model, {s['megabytes']} MB: same top class as Keras on "
            f"{s['top1_agreement']:.2%} of the test images, probabilities within {s['max_abs_diff']:.1e}"
        )
    print(f"export: the model card is {exports}/MODEL_CARD.md")


if __name__ == "__main__":
    run_stage(main)
