"""Time the project's training against a naive seed-style loop, and the pipeline's other costs.

    python benchmarks/bench.py [--epochs 4] [--cnn-epochs 3] [--no-cnn] [--no-jax] [--json FILE]
                               [--only NAME ...] [--repeat N] [--data DIR]

Needs data/raw and data/prepared (`dvc repro preprocess`, or `--data DIR` holding both) and,
for the evaluate timing, models/model.keras (`dvc repro`). Each measurement runs in a process
of its own, so each pays its own TensorFlow import and reports its own peak RSS. Run it on a
quiet machine: it measures whatever else is running too.

(a) naive: what the seed code does - the whole set as float32 NumPy arrays, one-hot labels,
    `model.fit(x, y, batch_size=32, validation_data=...)`, default settings.
(b) project: `fmnist_dvc.train.loop.train` itself - uint8 tf.data pipeline, seeded stateless
    shuffling, steps_per_execution, pinned threads, dvclive logs, per-epoch resume snapshots,
    the saved model; on TensorFlow (the default) and, if JAX is installed, on JAX.
Both see the same images, the same seed and the same number of epochs. Their weights differ
(the shuffling differs); what must match is (b) with steps_per_execution 1 and (b) as
configured: identical weights mean the speed-up changed no arithmetic.

Each run reports its whole call (start-up, tracing and saving included) and its steady pace:
the epochs after the first, from one epoch's start to the next, so validation and every
per-epoch callback count.

It prints one markdown table of every figure, test accuracies and weight digests below it.
--repeat N runs the whole list of steps N times, round after round (so slow drift in the
machine's load hits every step alike), keeps every run in the JSON file under "runs", and
gives each figure's median, min and max over the N rounds instead of its one value.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# --data DIR (the workers inherit it through the environment): another raw/ + prepared/ pair.
DATA = Path(os.environ.get("FMNIST_BENCH_DATA", ROOT / "data"))
PREPARED, RAW, MODEL = DATA / "prepared", DATA / "raw", ROOT / "models/model.keras"
EXPORTS = ROOT / "exports"  # the export stage's model.onnx and model.tflite
# Forward + backward multiply-adds of the seed MLP per image, x2 for FLOPs, x3 for fwd+bwd.
MLP_FLOP_PER_IMAGE = 3 * 2 * (784 * 256 + 256 * 256 + 256 * 128 + 128 * 64 + 64 * 10)
Figure = tuple[str, float | None, str]  # a printed figure: name, value (None if it has none), format


# ---------------------------------------------------------------- workers (child processes)


def _params(model: str, epochs: int, steps_per_execution: int | None):
    import yaml

    from fmnist_dvc.core.params import load_section
    from fmnist_dvc.train.params import TrainParams

    params = load_section("train", TrainParams, ROOT / "params.yaml")
    if model == "cnn":  # the fast CNN preset, without augmentation (the naive loop has none)
        preset = yaml.safe_load((ROOT / "presets/cnn-fast.yaml").read_text())["train"]
        flat = {k: v for k, v in preset.items() if k not in ("cnn", "augment")}
        params = params.replace(cnn=params.cnn.replace(**preset["cnn"]), **flat)
    changes = {"epochs": epochs, "patience": 10_000}
    if steps_per_execution is not None:
        changes["steps_per_execution"] = steps_per_execution
    return params.replace(**changes)


def _digest(model) -> str:
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()[:16]


def _test_accuracy(model) -> float:
    from fmnist_dvc.core.splits import load_split
    from fmnist_dvc.train.dataset import make_dataset

    x, y = load_split(PREPARED, "test")
    probs = model.predict(make_dataset(x, y, 1000), verbose=0)
    return float((probs.argmax(axis=1) == y).mean())


def epoch_clock():
    """A Keras callback noting when each epoch starts and training ends (made in the worker,
    where Keras loads with the backend the run asked for)."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.starts: list[float] = []
            self.end = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.starts.append(time.perf_counter())

        def on_train_end(self, logs: dict | None = None) -> None:
            self.end = time.perf_counter()

    return EpochClock()


def worker(kind: str, model_name: str, epochs: int, spe: int | None, backend: str) -> dict:
    import keras

    from fmnist_dvc.core.splits import load_split
    from fmnist_dvc.train.dataset import batches_per_epoch
    from fmnist_dvc.train.loop import set_seed, train
    from fmnist_dvc.train.optimizer import compile_model, execution_steps

    seed = 42
    params = _params(model_name, epochs, spe).replace(backend=backend)
    clock = epoch_clock()
    n_train = len(load_split(PREPARED, "train")[1])
    steps = batches_per_epoch(n_train, params.batch_size)
    if kind == "naive":
        from fmnist_dvc.train.models import build_model, set_whitening

        keras.utils.set_random_seed(seed)
        x, y = load_split(PREPARED, "train")
        xv, yv = load_split(PREPARED, "val")
        x, xv = x.astype("float32"), xv.astype("float32")  # the model scales the pixels
        y, yv = keras.utils.to_categorical(y, 10), keras.utils.to_categorical(yv, 10)
        model = build_model(params)
        set_whitening(model, load_split(PREPARED, "train")[0])  # as train() does; a no-op without whiten
        naive = params.replace(steps_per_execution=1)
        compile_model(model, naive, steps_per_epoch=steps)
        start = time.perf_counter()
        model.fit(
            x,
            y,
            batch_size=params.batch_size,
            epochs=epochs,
            validation_data=(xv, yv),
            verbose=0,
            callbacks=[clock],
        )
        seconds = time.perf_counter() - start
    else:
        set_seed(seed)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            model = train(
                params,
                seed,
                PREPARED,
                Path(tmp) / "m",
                Path(tmp) / "live",
                snapshot_dir=Path(tmp) / "snap",
                extra_callbacks=[clock],
            )
            seconds = time.perf_counter() - start
    later = len(clock.starts) - 1  # the epochs after the first
    steady = (clock.end - clock.starts[1]) / later if later else None
    return {
        "backend": keras.backend.backend(),
        "seconds": seconds,
        "steady_seconds_per_epoch": steady,
        "epochs": epochs,
        "images_per_epoch": n_train,
        "images": n_train * epochs,
        "digest": _digest(model),
        "test_accuracy": _test_accuracy(model),
        "steps_per_execution": 1 if kind == "naive" else execution_steps(steps, params.steps_per_execution),
    }


def worker_stage(kind: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "preprocess":
            from fmnist_dvc.data.prepare import prepare

            start = time.perf_counter()
            prepare(RAW, Path(tmp) / "p", 0.1, None, 42)
        else:
            from fmnist_dvc.evaluate.metrics import evaluate

            start = time.perf_counter()
            evaluate(MODEL, PREPARED, Path(tmp) / "e.json", Path(tmp) / "test")
        return {"seconds": time.perf_counter() - start}


def worker_predict(path: Path) -> dict:
    """`fmnist predict`'s classify() on a model file (.keras, .onnx or .tflite): one image at a
    time (warm) and the 10,000 test images."""
    from fmnist_dvc.core.splits import load_split
    from fmnist_dvc.export.runtimes import open_model
    from fmnist_dvc.ship.predict import classify

    model = open_model(path)
    images, _ = load_split(PREPARED, "test")
    for _ in range(5):
        classify(model, images[:1])
    single = []
    for i in range(200):
        start = time.perf_counter()
        classify(model, images[i : i + 1])
        single.append(time.perf_counter() - start)
    start = time.perf_counter()
    classify(model, images)
    batch = time.perf_counter() - start
    return {"single_ms_median": 1000 * statistics.median(single), "batch_images_per_s": len(images) / batch}


def worker_matmul() -> dict:
    import tensorflow as tf

    a = tf.random.normal((2048, 2048))
    for _ in range(3):
        tf.matmul(a, a).numpy()
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            tf.matmul(a, a).numpy()
        best = max(best, 10 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return {"gflops": best}


# ---------------------------------------------------------------- the parent


def child(*args: str) -> dict:
    """Run one worker; its JSON result plus its wall time and peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if args[0] in ("naive", "project"):
        env["KERAS_BACKEND"] = args[4]  # Keras picks its backend at import
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        cmd = [sys.executable, __file__, "--worker", *args]
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, with its own resource usage
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise SystemExit(f"bench: worker {' '.join(args)} failed:\n{err.read().decode()[-2000:]}")
        result = json.loads(out.read().decode().strip().splitlines()[-1])
    result["wall_seconds"] = wall
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def predict_command(model: Path, runs: int = 5) -> float:
    """Median wall seconds of `fmnist predict one.png --model MODEL`, start-up included."""
    import numpy as np
    from PIL import Image

    fmnist = Path(sys.executable).parent / "fmnist"
    with tempfile.TemporaryDirectory() as tmp:
        Image.fromarray(np.load(PREPARED / "test_images.npy", mmap_mode="r")[0]).save(Path(tmp) / "one.png")
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(
                [fmnist, "predict", "one.png", "--model", model], cwd=tmp, check=True, capture_output=True
            )
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def noop_repro(repo: Path, runs: int = 5) -> list[float] | None:
    """Seconds of each of `runs` `dvc repro` with nothing to do, or None if the pipeline is not
    up to date."""
    dvc = str(Path(sys.executable).parent / "dvc")
    status = subprocess.run([dvc, "status"], cwd=repo, capture_output=True, text=True, check=False)
    if "up to date" not in status.stdout:
        return None
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([dvc, "repro"], cwd=repo, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def bare_project(path: Path) -> Path:
    """Two trivial stages, for the cost of DVC itself."""
    dvc = str(Path(sys.executable).parent / "dvc")
    path.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b"}
    env["GIT_COMMITTER_EMAIL"] = "b@b"
    (path / "a.txt").write_text("a\n")
    (path / "dvc.yaml").write_text(
        "stages:\n  one:\n    cmd: cp a.txt b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n"
        "  two:\n    cmd: cp b.txt c.txt\n    deps: [b.txt]\n    outs: [c.txt]\n"
    )
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "repro", "-q"]):
        subprocess.run(cmd, cwd=path, env=env, check=True, capture_output=True)
    return path


def _use_data(folder: Path) -> None:
    global PREPARED, RAW
    os.environ["FMNIST_BENCH_DATA"] = str(folder.resolve())
    PREPARED, RAW = folder / "prepared", folder / "raw"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="MLP epochs per timed run")
    parser.add_argument(
        "--cnn-epochs", type=int, default=3, help="CNN epochs per timed run (2+ for a steady pace)"
    )
    parser.add_argument("--no-cnn", action="store_true")
    parser.add_argument("--no-jax", action="store_true", help="skip the JAX runs")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results.json")
    parser.add_argument("--data", type=Path, help="a folder with raw/ and prepared/ (default: data/)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these steps (e.g. predict)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run every step N times, round after round, and print the median (min, max) of each figure",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if args.worker:
        kind, *rest = args.worker
        if kind in ("naive", "project"):
            model_name, epochs, spe, backend = rest
            result = worker(kind, model_name, int(epochs), None if spe == "-" else int(spe), backend)
        elif kind == "matmul":
            result = worker_matmul()
        elif kind == "predict":
            result = worker_predict(Path(rest[0]))
        else:
            result = worker_stage(kind)
        print(json.dumps(result))
        return 0

    if args.data:
        _use_data(args.data)
    if not (PREPARED / "train_images.npy").is_file():
        raise SystemExit(f"bench: {PREPARED} is missing; run 'dvc repro preprocess' first.")
    cpu_name, cpu = _cpu()
    results: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_name}, {os.cpu_count()} cores, {platform.platform()}",
        "cpu": cpu,
        "commit": _commit(),
        "python": platform.python_version(),
    }
    jax = not args.no_jax and importlib.util.find_spec("jax") is not None
    if not args.no_jax and not jax:
        print("bench: JAX is not installed (pip install -e '.[jax]'); skipping its runs", file=sys.stderr)
    steps = [("matmul", ("matmul",))]
    mlp, cnn = str(args.epochs), str(args.cnn_epochs)
    steps += [
        ("mlp naive", ("naive", "mlp", mlp, "-", "tensorflow")),
        ("mlp project", ("project", "mlp", mlp, "-", "tensorflow")),
        ("mlp project spe=1", ("project", "mlp", mlp, "1", "tensorflow")),
    ]
    if jax:
        steps += [("mlp project jax", ("project", "mlp", mlp, "-", "jax"))]
    if not args.no_cnn:
        steps += [
            ("cnn naive", ("naive", "cnn", cnn, "-", "tensorflow")),
            ("cnn project", ("project", "cnn", cnn, "-", "tensorflow")),
        ]
        if jax:
            steps += [("cnn project jax", ("project", "cnn", cnn, "-", "jax"))]
    steps += [("preprocess", ("preprocess",))]
    if MODEL.is_file():
        steps += [("evaluate", ("evaluate",))]
    models = {"keras": MODEL, "onnx": EXPORTS / "model.onnx", "tflite": EXPORTS / "model.tflite"}
    steps += [(f"predict {fmt}", ("predict", str(path))) for fmt, path in models.items() if path.is_file()]
    if args.only:
        steps = [step for step in steps if step[0] in args.only]
    noop = not args.only or "noop" in args.only
    runs: dict[str, list] = {name: [] for name, _ in steps}
    if noop:
        runs.update({"noop repro bare": [], "noop repro project": []})
    for round_ in range(args.repeat):
        of = f" (round {round_ + 1} of {args.repeat})" if args.repeat > 1 else ""
        for name, worker_args in steps:
            print(f"bench: {name}{of} ...", file=sys.stderr, flush=True)
            runs[name].append(child(*worker_args))
            if worker_args[0] == "predict":
                runs[name][-1]["command_seconds"] = predict_command(Path(worker_args[1]))
        if noop:
            print(f"bench: no-op dvc repro{of} ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                runs["noop repro bare"].append(noop_repro(bare_project(Path(tmp) / "bare")))
            runs["noop repro project"].append(noop_repro(ROOT))
    for name, done in runs.items():
        if name.startswith("noop"):  # the median of the five calls of each round
            results[name] = _median([statistics.median(t) if t else None for t in done])
        else:
            results[name] = done[0] if len(done) == 1 else _median_run(done)
    if args.repeat > 1:
        results["repeat"] = args.repeat
        results["runs"] = runs

    results["tensorflow"] = importlib.metadata.version("tensorflow")  # not imported here: seconds
    if jax:
        results["jax"] = importlib.metadata.version("jax")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results, runs))
    print(f"\nwritten: {args.json}")
    return 0


def _median(values: list) -> float | None:
    numbers = [v for v in values if v is not None]
    return statistics.median(numbers) if numbers else None


def _median_run(done: list[dict]) -> dict:
    """One result holding the median of every number over the runs of a step; a text field
    (backend, weights digest) is kept if every run agrees, else marked "varies"."""
    merged: dict = {}
    for key in done[0]:
        values = [run.get(key) for run in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            merged[key] = statistics.median(values)
        elif all(v is None or isinstance(v, (int, float)) for v in values):
            merged[key] = _median(values)
        else:
            merged[key] = values[0] if len(set(map(str, values))) == 1 else "varies"
    return merged


def _commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha} + uncommitted changes" if dirty else sha


def _cpu() -> tuple[str, str]:
    """The CPU's model name (for "machine"), and for "cpu" that name with its family/model numbers,
    core count and the vector instruction sets that decide which kernels oneDNN picks (AVX2,
    AVX-512, AMX)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if not fields:
        return name, f"{name}, {os.cpu_count()} cores"
    flags = set(fields.get("flags", "").split())
    isa = [flag.upper() for flag in ("avx2", "fma") if flag in flags]
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    isa.append(("AVX-512 (" + ", ".join(avx512) + ")") if avx512 else "no AVX-512")
    if any(f.startswith("amx") for f in flags):
        isa.append("AMX")
    family = fields.get("cpu family")
    model = f" (family {family}, model {fields.get('model')})" if family else ""
    return name, f"{name}{model}, {os.cpu_count()} cores, {', '.join(isa)}"


def _training_figures(run: dict, naive: dict | None, matmul: dict | None) -> list[Figure]:
    """One training run's figures, compared with the naive loop and the matmul peak of the same
    round when given (so a round's load cancels out of the ratios)."""

    def per_epoch(x: dict) -> dict[str, float | None]:
        return {"steady": x["steady_seconds_per_epoch"], "whole call": x["seconds"] / x["epochs"]}

    figures: list[Figure] = []
    for pace, seconds in per_epoch(run).items():
        speed = run["images_per_epoch"] / seconds if seconds else None
        figures.append((f"{pace} s/epoch", seconds, "{:.2f}"))
        if pace == "steady":
            figures.append(("steady images/s", speed, "{:,.0f}"))
        if naive:
            base = per_epoch(naive)[pace]
            speed_up = base / seconds if base and seconds else None
            figures.append((f"{pace} speed-up vs naive", speed_up, "{:.2f}x"))
        if matmul:
            gflops = speed and MLP_FLOP_PER_IMAGE * speed / 1e9
            share = gflops and 100 * gflops / matmul["gflops"]
            figures.append((f"{pace} GFLOP/s", gflops, "{:.1f}"))
            figures.append((f"{pace} GFLOP/s, % of the matmul peak", share, "{:.0f}%"))
    return [*figures, ("peak RSS, MB", run["peak_rss_mb"], "{:,.0f}")]


def table(r: dict, runs: dict[str, list]) -> str:
    """Every figure as one markdown table: its value after one round, or with --repeat its median,
    min and max over the rounds. A ratio (speed-up, share of the matmul peak) is taken within each
    round, then summarised, so a round's load cancels out."""
    repeat = r.get("repeat", 1)
    none: list = [None] * repeat
    rows: list[tuple[str, str, list[float], str]] = []

    def add(step: str, measure: str, values: list, fmt: str) -> None:
        values = [v for v in values if v is not None]
        if values:
            rows.append((step, measure, values, fmt))

    if "matmul" in runs:
        add(
            "matmul",
            "float32 2048x2048 matmul, GFLOP/s (best of 5)",
            [x["gflops"] for x in runs["matmul"]],
            "{:.0f}",
        )
    for model in ("mlp", "cnn"):
        for name in (f"{model} naive", f"{model} project", f"{model} project spe=1", f"{model} project jax"):
            done = runs.get(name)
            if not done:
                continue
            is_naive = name == f"{model} naive"
            naive = none if is_naive else runs.get(f"{model} naive", none)
            matmul = none if is_naive or model == "cnn" else runs.get("matmul", none)
            step = f"{name} ({done[0]['backend']}, spe {done[0]['steps_per_execution']})"
            rounds = [_training_figures(*args) for args in zip(done, naive, matmul, strict=True)]
            for figure in zip(*rounds, strict=True):  # one figure, round by round
                add(step, figure[0][0], [value for _, value, _ in figure], figure[0][2])
    for stage in ("preprocess", "evaluate"):
        if stage in runs:
            add(stage, "s in-process", [x["seconds"] for x in runs[stage]], "{:.2f}")
            add(
                stage,
                "s with Python and TensorFlow start-up",
                [x["wall_seconds"] for x in runs[stage]],
                "{:.2f}",
            )
    for name in (n for n in runs if n.startswith("predict ")):
        add(
            name,
            "fmnist predict one.png, s (start-up included, median of 5)",
            [x["command_seconds"] for x in runs[name]],
            "{:.2f}",
        )
        add(name, "ms per single image (warm)", [x["single_ms_median"] for x in runs[name]], "{:.2f}")
        add(name, "images/s, 10,000 test images", [x["batch_images_per_s"] for x in runs[name]], "{:,.0f}")
    bare = [statistics.median(t) if t else None for t in runs.get("noop repro bare", [])]
    project = [statistics.median(t) if t else None for t in runs.get("noop repro project", [])]
    add("no-op dvc repro", "project, s (median of 5)", project, "{:.2f}")
    add("no-op dvc repro", "bare two-stage project, s (median of 5)", bare, "{:.2f}")
    add(
        "no-op dvc repro",
        "project / bare",
        [p / b if p and b else None for p, b in zip(project, bare, strict=True)],
        "{:.2f}x",
    )

    jax = f", JAX {r['jax']}" if "jax" in r else ""
    columns = ["value"] if repeat == 1 else ["median", "min", "max"]
    lines = [
        f"Commit {r['commit']}, {r['date']}; {r['cpu']}; Python {r['python']}, "
        f"TensorFlow {r['tensorflow']}{jax}" + (f"; {repeat} runs of each step." if repeat > 1 else "."),
        "",
        f"| step | figure | {' | '.join(columns)} |",
        "|---" * (2 + len(columns)) + "|",
    ]
    for step, measure, values, fmt in rows:
        stats = (statistics.median(values), min(values), max(values))[: len(columns)]
        lines.append(f"| {step} | {measure} | {' | '.join(fmt.format(v) for v in stats)} |")
    notes = []
    for name, done in runs.items():
        if name.startswith(("noop", "predict")) or name in ("matmul", "preprocess", "evaluate"):
            continue
        digests = {x["digest"] for x in done}
        accuracy = ", ".join(f"{a:.4f}" for a in sorted({round(x["test_accuracy"], 4) for x in done}))
        weights = f"weights {min(digests)}" + (" in every run" if repeat > 1 else "")
        if len(digests) > 1:
            weights = f"{len(digests)} different weights"
        notes.append(f"{name}: test accuracy {accuracy}; {weights}")
    spe1, fast = runs.get("mlp project spe=1"), runs.get("mlp project")
    if spe1 and fast:
        same = {x["digest"] for x in spe1} == {x["digest"] for x in fast}
        notes.append(
            f"MLP weights with steps_per_execution 1 and {fast[0]['steps_per_execution']}: "
            f"{'identical' if same else 'DIFFERENT'}"
        )
    if bare and not any(project):
        notes.append("no-op dvc repro of the project: skipped (pipeline not up to date)")
    return "\n".join([*lines, "", *notes] if notes else lines)


if __name__ == "__main__":
    sys.exit(main())
