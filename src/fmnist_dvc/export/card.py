"""The model card: what the model is, what it was trained on and how, how well it does, and
what it is not for, written beside the exports so that every registered version carries it.

Everything in it comes from the pipeline's own outputs: the recipe train logged (dvclive's
params.yaml), evaluate's test scores and per-class table, and export's parity figures. So the
card cannot drift from the model it describes. `card.json` holds the same facts for programs
(`fmnist serve` answers `GET /model` from it); `MODEL_CARD.md` is for people.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from fmnist_dvc import CLASS_NAMES, IMAGE_SHAPE
from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.core.yamlfile import read_mapping

NAME = "fashion-classifier"  # the artifact's name in dvc.yaml (the registry)
CARD_MD, CARD_JSON = "MODEL_CARD.md", "card.json"
INPUT = {
    "shape": list(IMAGE_SHAPE),
    "pixels": "grayscale 0-255 (uint8 values, sent as float32 to the model file), a light item on black",
    "output": f"{len(CLASS_NAMES)} class probabilities (softmax), in the order of 'classes'",
    "classes": list(CLASS_NAMES),
}
LIMITS = [
    "It knows 28x28 grayscale product photos of one item on a plain background, centred, as "
    "Zalando's catalogue shows them. It is not for photos of clothes being worn, several items in "
    "one picture, busy backgrounds or drawings; it answers one of its ten classes for anything, "
    "with no 'none of these'.",
    "Photos are turned grayscale, inverted when their border is light, cropped to the item and "
    "scaled to 28x28 (as the dataset was made); colour, texture finer than 28x28 and the "
    "item's real size are lost.",
    "Shirt, T-shirt/top, Pullover and Coat look alike at this size: see the per-class F1 above "
    "before relying on those classes.",
    "Probabilities are the softmax of a model trained with label smoothing where the recipe says "
    "so; they rank the classes but are not calibrated likelihoods.",
]


def build_card(recipe_file: Path, scores_file: Path, per_class_file: Path) -> dict:
    """The card's facts as one JSON-ready mapping; read before exporting, so that a missing
    input fails the stage before the slow part."""
    recipe = _read_recipe(recipe_file)
    for path in (scores_file, per_class_file):
        if not path.is_file():
            raise PipelineError(f"{path} not found; run 'dvc repro evaluate' first.")
    try:
        test = json.loads(scores_file.read_text())["test"]
        with per_class_file.open(newline="") as f:
            per_class = [
                {k: (v if k == "class" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)
            ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PipelineError(
            f"{scores_file} or {per_class_file} cannot be read ({exc}); run 'dvc repro -f evaluate'."
        ) from None
    train = recipe["train"]
    flip = bool(train["augment"]["flip"]["enabled"])
    card = {
        "name": NAME,
        "input": INPUT,
        "tta": ["none", "flip"] if flip else ["none"],  # a mirror view helps only if training saw them
        "metrics": test,
        "per_class": per_class,
        "recipe": recipe,
    }
    return card


def _read_recipe(path: Path) -> dict[str, Any]:
    recipe = read_mapping(path, "train writes it (run 'dvc repro train')", "the seed and the train section")
    if not isinstance(recipe.get("train"), dict):
        raise PipelineError(f"{path} holds no train recipe; run 'dvc repro train' again.")
    return recipe


def write_card(card: dict, export_scores: dict, folder: Path) -> None:
    """MODEL_CARD.md and card.json, with the exports' parity figures, into `folder` (the export
    stage's scratch output, which replaces the old one only once everything is written)."""
    card = {**card, "exports": export_scores}
    card["markdown"] = render(card)
    (folder / CARD_MD).write_text(card["markdown"])
    (folder / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")


def read_card(model_file: Path) -> dict | None:
    """The card beside a model file, or None when there is none (a file from elsewhere)."""
    path = Path(model_file).with_name(CARD_JSON)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def render(card: dict) -> str:
    """The card as Markdown, for people."""
    train, test = card["recipe"]["train"], card["metrics"]
    lines = [
        f"# Model card: {card['name']}",
        "",
        "Written by the pipeline's export stage from train's recipe, evaluate's test scores and",
        "export's parity checks: regenerated with every `dvc repro`.",
        "",
        "## Model",
        "",
        f"- {_architecture(train)}",
        f"- Input: {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} {INPUT['pixels']}; the model scales them itself.",
        f"- Output: {INPUT['output']}: {', '.join(CLASS_NAMES)}.",
        *[
            f"- `model.{fmt}`: {s['megabytes']} MB; same top class as the Keras model on "
            f"{s['top1_agreement']:.2%} of the test images, probabilities within {s['max_abs_diff']:.1e}."
            for fmt, s in card["exports"].items()
        ],
        "",
        "## Data",
        "",
        "[Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist) (Zalando Research, 2017,",
        "MIT licence): 70,000 28x28 grayscale images of Zalando catalogue items, ten classes of 7,000.",
        "Training used the 60,000 training images less a stratified validation split (early",
        "stopping and model choice); the 10,000 test images were used only for the scores below.",
        "",
        "## Training recipe",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in _recipe_rows(card["recipe"])],
        "",
        "## Test results (10,000 images)",
        "",
        f"- Accuracy {test['accuracy']:.4f}, top-2 accuracy {test['top2_accuracy']:.4f}, "
        f"macro F1 {test['macro_avg']['f1']:.4f}.",
    ]
    if "tta_accuracy" in test:
        lines.append(f"- With test-time augmentation (`evaluate.tta`): accuracy {test['tta_accuracy']:.4f}.")
    lines += [
        "",
        "| class | precision | recall | F1 |",
        "|---|---|---|---|",
        *[
            f"| {r['class']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} |"
            for r in card["per_class"]
        ],
        "",
        "## Intended use",
        "",
        "Sorting and tagging catalogue photos of single clothing items and accessories into these ten",
        "classes, and teaching or comparing ML pipelines on a small, real benchmark. Not for decisions",
        "about people.",
        "",
        "## Limits",
        "",
        *[f"- {limit}" for limit in LIMITS],
        "",
    ]
    return "\n".join(lines)


def _architecture(train: dict) -> str:
    if train["model"] == "mlp":
        units = " -> ".join(str(u) for u in [784, *train["mlp"]["hidden_units"], 10])
        return f"Multilayer perceptron {units} (ReLU, dropout {train['mlp']['dropout']}, softmax)."
    cnn = train["cnn"]
    blocks = " / ".join("-".join(str(f) for f in block) for block in cnn["blocks"])
    head = "flattened 7x7 features" if cnn["head"] == "flatten" else "global average pooling"
    dense = "".join(f" -> dense {u}" for u in cnn["dense_units"])
    norm = ", BatchNorm" if cnn["batch_norm"] else ""
    return (
        f"Convolutional network: {cnn['kernel_size']}x{cnn['kernel_size']} conv blocks of {blocks} "
        f"filters{norm}, ReLU, 2x2 max-pooling between blocks; {head}{dense} -> 10 (softmax)."
    )


def _recipe_rows(recipe: dict) -> list[tuple[str, Any]]:
    t = recipe["train"]
    augment = [name for name, a in t["augment"].items() if a["enabled"]]
    optimizer = t["optimizer"] + (f", weight decay {t['weight_decay']}" if t["weight_decay"] else "")
    return [
        ("optimizer", optimizer),
        ("learning rate", _schedule(t)),
        ("epochs, batch size", f"{t['epochs']} (early stopping patience {t['patience']}), {t['batch_size']}"),
        ("label smoothing", t["label_smoothing"] or "none"),
        ("augmentation", ", ".join(augment) or "none"),
        ("weight averaging (EMA)", t["ema"] or "off"),
        ("seed", recipe["seed"]),
    ]


def _schedule(t: dict) -> str:
    lr = t["learning_rate"]
    if t["schedule"] == "step":
        return f"{lr}, x{t['lr_drop_factor']} after epoch {t['lr_drop_epoch']}"
    warmup = f", {t['warmup_fraction']:.0%} warm-up" if t["warmup_fraction"] else ""
    return f"{lr} at the peak of a {t['schedule'].replace('_', '-')} schedule{warmup}"
