"""Where a CNN training step's time goes: TensorFlow's own profiler over one execution of the
cnn-fast network (211 steps of batch 128), summed by layer kind and by op.

    python benchmarks/profile_cnn.py [--pool after_block|after_conv] [--cnn KEY=VALUE ...] [--top 12]

`--cnn whiten=2` or `--cnn 'blocks=[[24], [64], [128]]'` changes one `train.cnn` key (a YAML
value), to compare a variant's cost per step with the preset's.

Trains as bench.py's `cnn project` step does (the preset's network and recipe, no
augmentation): one execution to warm up, then one under the profiler. Prints the wall time
per step and each part's share of the compute threads' busy time. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench import PREPARED, _params  # the same params bench.py times

STEPS = 211  # one execution: half an epoch of the 54,000 training images at batch 128
KINDS = (  # first match wins: (substring of the op's scope, label)
    ("batch_normalization", "BatchNorm"),
    ("whiten", "whitening"),
    ("max_pooling", "max pooling"),
    ("conv2d", "convolution"),
    ("dense", "dense layers"),
    ("adam", "optimizer"),
    ("sgd", "optimizer"),
    ("re_lu", "ReLU"),
)


def profile(
    pool: str | None, cnn: dict | None = None
) -> tuple[float, collections.Counter, collections.Counter]:
    import tensorflow as tf

    from fmnist_dvc.core.splits import load_split
    from fmnist_dvc.train.dataset import make_training_dataset
    from fmnist_dvc.train.loop import set_seed, set_threads
    from fmnist_dvc.train.models import build_model, set_whitening
    from fmnist_dvc.train.optimizer import compile_model

    params = _params("cnn", 3, None)
    if pool:
        params = params.replace(cnn=params.cnn.replace(pool=pool))
    if cnn:
        params = params.replace(cnn=params.cnn.replace(**cnn))
    set_threads(params.threads)
    set_seed(42)
    x, y = load_split(PREPARED, "train")
    model = build_model(params)
    set_whitening(model, x)  # as train() does; a no-op without train.cnn.whiten
    compile_model(model, params, steps_per_epoch=STEPS)
    data = make_training_dataset(x, y, params.batch_size, 42, 2)  # 844 batches: 4 executions
    model.fit(data, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)  # warm-up
    start = time.perf_counter()  # the pace without the profiler, whose own cost is per op
    model.fit(data, initial_epoch=1, epochs=2, steps_per_epoch=STEPS, verbose=0, shuffle=False)
    wall = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        model.fit(data, initial_epoch=2, epochs=3, steps_per_epoch=STEPS, verbose=0, shuffle=False)
        tf.profiler.experimental.stop()
        by_kind, by_op = _busy_time(next(Path(logdir).rglob("*.xplane.pb")))
    return wall / STEPS, by_kind, by_op


def _busy_time(xplane: Path) -> tuple[collections.Counter, collections.Counter]:
    """Seconds of each op on TensorFlow's compute threads, by layer kind and by op name."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(xplane.read_bytes())
    by_kind: collections.Counter = collections.Counter()
    by_op: collections.Counter = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id]
                if ":" not in name or "::" in name:  # the executor's bookkeeping, not an op
                    continue
                scope, op = name.rsplit(":", 1)
                seconds = event.duration_ps / 1e12
                kind = next((label for key, label in KINDS if key in scope), "other")
                backward = "gradient_tape" in scope
                by_kind[f"{kind}, {'backward' if backward else 'forward'}"] += seconds
                by_op[f"{op} ({kind}{', backward' if backward else ''})"] += seconds
    return by_kind, by_op


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", choices=("after_block", "after_conv"), help="override the preset's")
    parser.add_argument("--cnn", action="append", default=[], metavar="KEY=VALUE", help="a train.cnn key")
    parser.add_argument("--top", type=int, default=12, help="how many single ops to list")
    args = parser.parse_args()
    import yaml

    cnn = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.cnn)}
    if not (PREPARED / "train_images.npy").is_file():
        raise SystemExit("profile_cnn: data/prepared is missing; run 'dvc repro preprocess' first.")
    per_step, by_kind, by_op = profile(args.pool, cnn)
    total = sum(by_kind.values())
    pool = args.pool or "as in the preset"
    changes = "".join(f", {k} {v}" for k, v in cnn.items())
    print(f"cnn-fast network, pool {pool}{changes}: {per_step * 1000:.1f} ms per step (wall)")
    print("\n| part | share of busy time |\n|---|---|")
    for kind, seconds in by_kind.most_common():
        print(f"| {kind} | {100 * seconds / total:.1f}% |")
    print("\n| op | share of busy time |\n|---|---|")
    for op, seconds in by_op.most_common(args.top):
        print(f"| {op} | {100 * seconds / total:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
