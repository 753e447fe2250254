"""The `fmnist` command: classify clothing images with the trained model, serve it over HTTP; sweep and
tune experiments on Ray.

    fmnist predict PATH... [--model models/model.keras] [--top-k 3] [--csv FILE] [--invert auto|yes|no]
                   [--tta none|flip|flip_translate]
    fmnist sweep -S KEY=V1,V2 [-S ...] [--preset presets/X.yaml] [--address HOST:PORT]
                 [--cpus-per-trial 2] [--name PREFIX]
    fmnist tune -S 'KEY=interval(A, B)' [-S ...] [--trials 20] [--preset ...] [--address ...]
                [--cpus-per-trial 2] [--name STUDY] [--pruner median] [--storage URL]
    fmnist serve [--model exports/model.onnx] [--host 127.0.0.1] [--port 8000] [--workers 1]
                 [--max-body-mb 16] [--max-images 512]

--model also takes the exports, exports/model.onnx and exports/model.tflite, which run
without TensorFlow (onnxruntime, the LiteRT interpreter).

PATH may be image files (PNG, JPEG, ...), IDX or NPY batches of 28x28 images, or directories
of them. A file that cannot be read gets one `error:` line; the others are still classified,
and the exit code is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fmnist_dvc import CLASS_NAMES
from fmnist_dvc.core.atomic import atomic_write_text
from fmnist_dvc.core.errors import PipelineError, exit_code
from fmnist_dvc.evaluate.tta import TTA_CHOICES
from fmnist_dvc.experiments.tune import OBJECTIVES, PRUNERS
from fmnist_dvc.ship.predict import BATCH, INVERT_CHOICES, Item, classify, expand, read_items, top_k


def predict_command(args: argparse.Namespace) -> int:
    files, errors = expand(args.paths)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    items: list[Item] = []
    for path in tqdm(files, desc="reading", unit="file", disable=len(files) < 100, file=sys.stderr):
        try:
            items += read_items(path, args.invert)
        except PipelineError as exc:
            errors.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
    if items:
        from fmnist_dvc.export.runtimes import (
            open_model,  # TensorFlow loads only for a .keras model with work to do
        )

        model = open_model(args.model)  # checks the file, loads it safely and checks its shapes
        pixels = np.stack([item.pixels for item in items])
        probs = classify(model, pixels, progress=len(items) > BATCH, tta=args.tta)
        rows = list(zip(items, top_k(probs, args.top_k), strict=True))
        if args.csv:
            atomic_write_text(args.csv, _csv(rows, args.top_k))
            print(f"fmnist: {len(items)} predictions written to {args.csv}")
        else:
            for item, best in rows:
                where = item.source if item.index is None else f"{item.source}[{item.index}]"
                print(f"{where}: " + ", ".join(f"{name} {p:.3f}" for name, p in best))
    if errors:
        print(f"fmnist: {len(errors)} input(s) failed, {len(items)} image(s) classified", file=sys.stderr)
    return 1 if errors else 0


def _csv(rows: list[tuple[Item, list[tuple[str, float]]]], k: int) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    ranked = [f"{col}_{rank}" for rank in range(1, k + 1) for col in ("class", "prob")]
    writer.writerow(["source", "index", *ranked])
    for item, best in rows:
        flat = [v for name, p in best for v in (name, f"{p:.6f}")]
        writer.writerow([item.source, "" if item.index is None else item.index, *flat])
    return buffer.getvalue()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmnist", description="Classify clothing images (Fashion-MNIST).")
    sub = parser.add_subparsers(dest="command", required=True)
    predict = sub.add_parser("predict", help="classify image files, IDX/NPY batches or directories")
    predict.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    predict.add_argument(
        "--model", type=Path, default=Path("models/model.keras"), help=".keras, or an export: .onnx, .tflite"
    )
    predict.add_argument("--top-k", type=int, default=3, choices=range(1, len(CLASS_NAMES) + 1), metavar="K")
    predict.add_argument("--csv", type=Path, help="write all predictions to this CSV file instead")
    predict.add_argument(
        "--invert", choices=INVERT_CHOICES, default="auto", help="auto: invert images with a light border"
    )
    predict.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        default="none",
        help="test-time augmentation: average over the mirror image (flip) and 1-px shifts (flip_translate)",
    )
    sweep = sub.add_parser("sweep", help="run a grid of DVC experiments on a Ray cluster (docs/scaling.md)")
    tune = sub.add_parser(
        "tune",
        help="search hyperparameters with Optuna, each trial a DVC experiment on Ray (docs/scaling.md)",
    )
    for command in (sweep, tune):
        command.add_argument("--preset", type=Path, help="a presets/*.yaml applied to every trial")
        command.add_argument(
            "--address", help="a running Ray cluster (HOST:PORT); default: Ray on this machine"
        )
        command.add_argument(
            "--cpus-per-trial", type=float, default=2, help="CPU cores Ray reserves per trial"
        )
    sweep.add_argument(
        "-S", "--set-param", action="append", default=[], dest="overrides", metavar="KEY=VALUES",
        help="as in dvc exp run: 'seed=1,2,3' makes three trials; several -S make a grid",
    )  # fmt: skip
    sweep.add_argument("--name", help="experiment name prefix (default: sweep-MMDD-HHMMSS)")
    tune.add_argument(
        "-S", "--set-param", action="append", default=[], dest="overrides", metavar="KEY=SPACE",
        help="'train.learning_rate=tag(log, interval(0.0003, 0.01))', choice(...), range(...), a,b; "
        "a plain KEY=VALUE is fixed for every trial",
    )  # fmt: skip
    tune.add_argument(
        "--trials", type=int, default=20, help="trials in the study, those already run included"
    )
    tune.add_argument("--name", help="the study, and its experiments' prefix (default: from the arguments)")
    tune.add_argument(
        "--objective", choices=OBJECTIVES, default=OBJECTIVES[0], help="validation accuracy to maximise"
    )
    tune.add_argument("--pruner", choices=PRUNERS, default=PRUNERS[0], help="how trials behind are stopped")
    tune.add_argument("--storage", help="an Optuna storage URL (default: sqlite:///tune/optuna.db)")
    serve = sub.add_parser(
        "serve", help="the exported model over HTTP, with a page to try it (docs/serve.md)"
    )
    serve.add_argument("--model", type=Path, default=Path("exports/model.onnx"), help="an ONNX export")
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on every interface")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="processes, each with its own model copy")
    serve.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body accepted")
    serve.add_argument("--max-images", type=int, default=512, help="most images in one request")
    return parser


def serve_command(args: argparse.Namespace) -> int:
    from fmnist_dvc.ship.serve import Service, Settings, run  # onnxruntime and FastAPI, never TensorFlow

    if args.model.suffix.lower() != ".onnx":
        raise PipelineError(
            f"{args.model}: fmnist serve runs ONNX exports; give exports/model.onnx ('dvc repro export')."
        )
    if args.workers < 1 or args.max_images < 1 or not 0 < args.max_body_mb < float("inf"):
        raise PipelineError(
            "--workers and --max-images must be at least 1, and --max-body-mb a number above 0."
        )
    settings = Settings(
        model=str(args.model), max_body_mb=args.max_body_mb, max_images=args.max_images, host=args.host
    )
    Service(settings)  # a missing or broken model: one line here, not a traceback per worker
    run(settings, args.port, args.workers)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sweep":
        from fmnist_dvc.experiments.sweep import sweep as run_sweep

        return exit_code(run_sweep, args.overrides, args.preset, args.address, args.cpus_per_trial, args.name)
    if args.command == "tune":
        from fmnist_dvc.experiments.tune import tune as run_tune

        return exit_code(
            run_tune, args.overrides, args.preset, args.trials, args.address, args.cpus_per_trial,
            args.name, args.objective, args.storage, args.pruner,
        )  # fmt: skip
    if args.command == "serve":
        return exit_code(serve_command, args)
    return exit_code(predict_command, args)


if __name__ == "__main__":
    sys.exit(main())
