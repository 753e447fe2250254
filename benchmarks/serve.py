"""Time `fmnist serve` over loopback against the bare onnxruntime call on the same model.

    python benchmarks/serve.py [--model exports/model.onnx] [--requests 2000] [--batch-requests 100]
                               [--json FILE]

Starts the server (one uvicorn worker, as `fmnist serve` runs by default), then sends a fixed
number of requests at concurrency 1, 4 and 16: one 28x28 PNG (a real test image) per request
as multipart/form-data, then 256 PNGs per request, then the same 256 images as JSON arrays, then
as one NPY file.
Each client thread keeps one HTTP/1.1 connection open, as a real client would. In the same run
it times `session.run` on the model alone (one image, and 256 images; same threads as the
server), so the server's cost is a ratio. Last, the server's peak memory (VmHWM).

Client and server share the machine's cores; on a 2-core machine the client's own work is part
of every figure. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pngs(n: int) -> list[bytes]:
    from fmnist_dvc.core.splits import load_split

    images, _ = load_split(ROOT / "data/prepared", "test")
    out = []
    for image in images[:n]:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def multipart(files: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def load(port: int, body: bytes | None, kind: str, requests: int, concurrency: int) -> dict:
    """`requests` POSTs of `body` (GET /health if None), `concurrency` at a time; latency
    percentiles and throughput."""
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            start = time.perf_counter()
            if body is None:
                conn.request("GET", "/health")
            else:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": kind})
            response = conn.getresponse()
            payload = response.read()
            mine.append(time.perf_counter() - start)
            assert response.status == 200, payload[:200]
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = sorted(1000 * x for x in latencies)
    return {
        "requests": len(ms),
        "concurrency": concurrency,
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3),
        "requests_per_s": round(len(ms) / wall, 1),
    }


def bare(model: Path, images: np.ndarray, repeats: int) -> dict:
    """The model alone: onnxruntime's session.run, as the server's worker sets it up."""
    from fmnist_dvc.export.runtimes import OnnxModel

    session = OnnxModel(model)
    one, batch = images[:1].astype(np.float32), images[:BATCH].astype(np.float32)
    for _ in range(50):
        session.predict_on_batch(one)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.predict_on_batch(one)
        times.append(time.perf_counter() - start)
    batch_times = []
    for _ in range(max(20, repeats // 20)):
        start = time.perf_counter()
        session.predict_on_batch(batch)
        batch_times.append(time.perf_counter() - start)
    per_batch = statistics.median(batch_times)
    return {
        "one_image_p50_ms": round(1000 * statistics.median(times), 4),
        "batch_ms": round(1000 * per_batch, 3),
        "batch_images_per_s": round(BATCH / per_batch),
    }


def decode_ms(images: list[bytes]) -> float:
    """Median time to read one 28x28 PNG as the server does (predict.image_pixels)."""
    from fmnist_dvc.ship.predict import image_pixels

    times = []
    for _ in range(4):
        for data in images:
            start = time.perf_counter()
            image_pixels(data, "x")
            times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 4)


def peak_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return round(int(next(x.split()[1] for x in status.splitlines() if x.startswith("VmHWM:"))) / 1024, 1)


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--model", type=Path, default=ROOT / "exports/model.onnx")
    parser.add_argument("--requests", type=int, default=2000, help="one-image requests per concurrency")
    parser.add_argument("--batch-requests", type=int, default=100, help="256-image requests per concurrency")
    parser.add_argument("--workers", type=int, default=1, help="fmnist serve --workers")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    images = pngs(BATCH)
    pixels = np.stack([np.asarray(Image.open(io.BytesIO(p))) for p in images])
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = ["serve", "--model", str(args.model), "--port", str(port), "--workers", str(args.workers)]
    server = subprocess.Popen(
        [sys.executable, "-m", "fmnist_dvc.ship.cli", *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(port, server)
        one_body, one_kind = multipart(images[:1])
        batch_body, batch_kind = multipart(images)
        json_body = json.dumps({"images": pixels.tolist()}).encode()
        npy = io.BytesIO()
        np.save(npy, pixels)
        load(port, None, "", 200, 1)
        runs = [{"body": "GET /health", **load(port, None, "", args.requests, 1)}]  # HTTP + FastAPI alone
        for concurrency in (1, 4, 16):
            load(port, one_body, one_kind, 200, concurrency)  # warm-up: connections, caches
            runs.append({"body": "1 PNG", **load(port, one_body, one_kind, args.requests, concurrency)})
        batches = (
            (batch_body, batch_kind, "256 PNG"),
            (json_body, "application/json", "256 JSON"),
            (npy.getvalue(), "application/x-npy", "256 NPY"),
        )
        for body, kind, name in batches:
            for concurrency in (1, 4, 16):
                load(port, body, kind, 5, concurrency)
                runs.append({"body": name, **load(port, body, kind, args.batch_requests, concurrency)})
        memory = max(peak_mb(pid) for pid in [server.pid, *_children(server.pid)])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    alone = bare(args.model, pixels, 2000)
    alone["png_decode_ms"] = decode_ms(images)
    result = {"model": str(args.model), "workers": args.workers, "cpu": _cpu(), "runs": runs, "bare": alone}
    result["server_peak_rss_mb"] = memory
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _children(pid: int) -> list[int]:
    """uvicorn's worker processes (with --workers above 1, the parent only supervises)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{pid}\n" in status.read_text():
                found.append(int(status.parent.name))
        except OSError:
            pass
    return found


def _wait(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}); run `fmnist serve` to see why")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not answer /health within 60 s")


def _cpu() -> str:
    """The model name with its family and model numbers (the name alone is often just "AMD EPYC")."""
    info = dict(
        line.split(":", 1)
        for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
        if ":" in line
    )
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = info.get("flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    name = info.get("model name", platform.machine())
    return f"{name} (family {info.get('cpu family')}, model {info.get('model')}, {simd})"


def table(r: dict) -> str:
    bare = r["bare"]
    lines = [
        f"model {r['model']}, {r['workers']} worker(s), CPU {r['cpu']}, "
        f"server peak RSS {r['server_peak_rss_mb']} MB (largest process)",
        f"bare onnxruntime: one image {bare['one_image_p50_ms']} ms; 256 images {bare['batch_ms']} ms "
        f"({bare['batch_images_per_s']} images/s); reading one 28x28 PNG {bare['png_decode_ms']} ms",
        "",
        "| body | concurrency | requests | p50 ms | p99 ms | requests/s | images/s | of bare |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        n = BATCH if run["body"].startswith("256") else 1
        rate = run["requests_per_s"] * n
        share = f"{rate / bare['batch_images_per_s']:.2f}" if n > 1 else ""
        lines.append(
            f"| {run['body']} | {run['concurrency']} | {run['requests']} | {run['p50_ms']} | {run['p99_ms']} "
            f"| {run['requests_per_s']} | {rate:.0f} | {share} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
