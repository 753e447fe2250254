"""`fmnist serve` as users run it: uvicorn in a subprocess on a free loopback port, answering a
real HTTP client (httpx), raw sockets where a client would hide the behaviour, and headless
Chromium on the page. The model is a real one: the train, evaluate and export stages run on
real images (the seed MLP trained on mirrored images, so the model card offers tta=flip)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist_dvc import CLASS_NAMES
from fmnist_dvc.core.splits import load_split
from tests.helpers import REPO_ROOT, run_stage

pytestmark = pytest.mark.slow

httpx = pytest.importorskip("httpx")
FMNIST = [sys.executable, "-c", "import sys; from fmnist_dvc.ship.cli import main; sys.exit(main())"]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
MAX_IMAGES = 8
Served = tuple[str, subprocess.Popen, Path]  # the base URL, the process, its log file


@pytest.fixture(scope="module")
def pipeline(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work tree where train (2 epochs, flips), evaluate (tta flip) and export have run."""
    root = tmp_path_factory.mktemp("serve")
    (root / "data").mkdir()
    (root / "data/prepared").symlink_to(prepared)
    changes = {"train.epochs": 2, "train.augment.flip.enabled": True, "evaluate.tta": "flip"}
    for stage in ("train", "evaluate", "export"):
        proc = run_stage(stage, root, changes)
        assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture(scope="module")
def test_pngs(pipeline: Path, prepared: Path) -> list[tuple[str, bytes]]:
    images, _ = load_split(prepared, "test")
    folder = pipeline / "pngs"
    folder.mkdir(exist_ok=True)
    out = []
    for i, image in enumerate(images[:12]):
        path = folder / f"item{i:02}.png"
        Image.fromarray(image).save(path)
        out.append((path.name, path.read_bytes()))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(model: Path, *args: str) -> Iterator[Served]:
    """`fmnist serve` on a free port until /health answers; stopped by its id afterwards."""
    port = free_port()
    log = model.parent / f"serve-{port}.log"  # a file, not a pipe nobody reads (which could fill)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*FMNIST, "serve", "--model", str(model), "--port", str(port), *args],
            env=ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not come up within 60 s"
            time.sleep(0.2)
        yield url, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def server(pipeline: Path) -> Iterator[Served]:
    with serving(pipeline / "exports/model.onnx", "--max-images", str(MAX_IMAGES), "--max-body-mb", "4") as s:
        yield s


def rss_peak_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def test_health_model_and_docs(server: Served, pipeline: Path) -> None:
    url, proc, _ = server
    model_file = pipeline / "exports/model.onnx"
    version = "md5:" + hashlib.md5(model_file.read_bytes()).hexdigest()  # no dvc.lock in this tree
    assert httpx.get(f"{url}/health").json() == {
        "status": "ok",
        "name": "fashion-classifier",
        "version": version,
    }
    info = httpx.get(f"{url}/model").json()
    scores = json.loads((pipeline / "metrics/evaluate.json").read_text())["test"]
    assert info["metrics"] == scores and info["version"] == version
    assert info["input"]["classes"] == list(CLASS_NAMES) and info["tta"] == ["none", "flip"]
    assert info["recipe"]["train"]["epochs"] == 2 and info["limits"]["max_images"] == MAX_IMAGES
    assert info["card"] == (pipeline / "exports/MODEL_CARD.md").read_text()
    assert "## Limits" in info["card"] and "not for photos of clothes being worn" in info["card"]
    assert "swagger-ui" in httpx.get(f"{url}/docs").text
    body = httpx.get(f"{url}/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert sorted(body) == ["application/json", "application/x-npy", "multipart/form-data"]
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script src" not in page.text and "stylesheet" not in page.text  # nothing from elsewhere
    # The server runs onnxruntime alone: TensorFlow is not even mapped into the process.
    assert "tensorflow" not in Path(f"/proc/{proc.pid}/maps").read_text()


def test_answers_agree_with_fmnist_predict(
    server: Served, pipeline: Path, test_pngs: list[tuple[str, bytes]]
) -> None:
    url, _, _ = server
    batch = test_pngs[:MAX_IMAGES]
    files = [("file", (name, data, "image/png")) for name, data in batch]
    for tta in ("none", "flip"):
        answer = httpx.post(f"{url}/predict", params={"top_k": 3, "tta": tta}, files=files).json()
        cli = subprocess.run(
            [*FMNIST, "predict", *[f"pngs/{name}" for name, _ in batch], "--top-k", "3", "--tta", tta,
             "--model", "exports/model.onnx", "--csv", f"{tta}.csv"],
            cwd=pipeline, env=ENV, capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows = (pipeline / f"{tta}.csv").read_text().splitlines()[1:]
        assert len(answer["predictions"]) == len(rows) == len(batch), cli.stderr
        for got, row in zip(answer["predictions"], rows, strict=True):
            source, _, *ranked = row.split(",")
            assert got["file"] == Path(source).name
            assert [t["class"] for t in got["top"]] == ranked[0::2]
            assert [t["index"] for t in got["top"]] == [CLASS_NAMES.index(c) for c in ranked[0::2]]
            np.testing.assert_allclose(
                [t["probability"] for t in got["top"]], np.float64(ranked[1::2]), atol=2e-6
            )
    # The same images as JSON arrays: the same answers (a 28x28 PNG is not resized).
    arrays = [np.asarray(Image.open(io.BytesIO(data))).tolist() for _, data in batch]
    by_json = httpx.post(f"{url}/predict", json={"images": arrays}, params={"top_k": 10}).json()
    by_file = httpx.post(f"{url}/predict", files=files, params={"top_k": 10}).json()
    assert [p["top"] for p in by_json["predictions"]] == [p["top"] for p in by_file["predictions"]]
    npy = io.BytesIO()
    np.save(npy, np.asarray(arrays, np.uint8))
    by_npy = httpx.post(
        f"{url}/predict?top_k=10", content=npy.getvalue(), headers={"content-type": NPY}
    ).json()
    assert [p["top"] for p in by_npy["predictions"]] == [p["top"] for p in by_file["predictions"]]
    assert all(p["file"] is None for p in by_json["predictions"])
    assert by_json["model"]["name"] == "fashion-classifier"


def bomb_png(width: int, height: int, colour: int = 0) -> bytes:
    """A 100-byte PNG whose header declares width x height grayscale (colour 0) or RGB (2) pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def part(name: str, data: bytes, field: str = "file") -> dict:
    return {"files": [(field, (name, data, "image/png"))]}


def raw(body: bytes, kind: str) -> dict:
    return {"content": body, "headers": {"content-type": kind}}


JSON, NPY = "application/json", "application/x-npy"


def npy_header(shape: tuple[int, ...]) -> bytes:
    """Only the header of an NPY file declaring a uint8 array of `shape`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def raw_request(url: str, head: str, body_chunks: Iterable[bytes] = ()) -> tuple[int, dict]:
    """Send a request over a plain socket (headers, then the chunks while the server reads
    them) and return the status and JSON of the answer, read as soon as it comes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head.encode())
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        s.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            more = s.recv(65536)
            if not more:
                break
            data += more
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode().lower()
    return next(
        (int(line.split(":")[1]) for line in head.splitlines() if line.startswith("content-length")), 0
    )


def test_every_bad_request_gets_a_4xx_sentence_and_the_server_carries_on(
    server: Served, test_pngs: list[tuple[str, bytes]]
) -> None:
    url, proc, _ = server
    png = test_pngs[0][1]
    nan = np.zeros((1, 28, 28)).tolist()
    nan[0][3][3] = float("nan")
    many = [("file", (f"{i}.png", png, "image/png")) for i in range(MAX_IMAGES + 1)]
    cases = [
        ("not an image", part("notes.png", b"some words"), 400, "notes.png: not a PNG, JPEG, BMP, GIF, WebP"),
        ("EPS, which Pillow would hand to Ghostscript", part("a.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n"), 400,
         "a.eps: not a PNG, JPEG"),
        ("truncated PNG", part("cut.png", png[:100]), 400, "cut.png: the image is corrupt or truncated"),
        ("empty part", part("empty.png", b""), 400, "empty.png: the part is empty"),
        ("no file part", part("a.png", png, field="photo"), 400, "has no 'file' part"),
        ("empty multipart", raw(b"", "multipart/form-data; boundary=x"), 400, "has no 'file' part"),
        ("empty JSON body", raw(b"", JSON), 400, "the body is empty"),
        ("a bomb", part("bomb.png", bomb_png(30000, 30000)), 413, "bomb.png: declares 30000x30000 pixels"),
        ("an RGB bomb", part("rgb.png", bomb_png(30000, 30000, 2)), 413, "rgb.png: too many pixels"),
        ("over the pixel cap", part("big.png", bomb_png(8000, 8000)), 413,
         "big.png: declares 8000x8000 pixels, more than the 24,000,000 allowed"),
        ("wrong shape", {"json": {"images": [[1, 2, 3]]}}, 422, "must be a list of 28x28 arrays"),
        ("no images key", {"json": {"pictures": []}}, 422, 'needs a non-empty list "images"'),
        ("NaN", raw(json.dumps({"images": nan}).encode(), JSON), 422, "holds NaN or infinite values"),
        ("out of range", {"json": {"images": np.full((1, 28, 28), 256).tolist()}}, 422,
         "holds values from 256 to 256; pixels run from 0 to 255"),
        ("invalid JSON", raw(b"{images", JSON), 400, "not valid JSON"),
        ("too many files", {"files": many}, 413, f"more than {MAX_IMAGES} files in one request"),
        ("far too many files", {"files": many * 2}, 413, f"more than {MAX_IMAGES} files in one request"),
        ("JSON fractions", {"json": {"images": np.full((1, 28, 28), 0.5).tolist()}}, 422,
         "holds fractions; JSON pixels are whole numbers from 0 to 255"),
        ("JSON nested too deep", raw(b"[" * 100_000, JSON), 400, "not valid JSON"),
        ("JSON number too large", raw(b'{"images": [%s]}' % (b"9" * 400), JSON), 422, "must be a list of 28"),
        ("NPY header claiming 10^12 images", raw(npy_header((10**12, 28, 28)), NPY), 413,
         f"1000000000000 images in one request, more than the {MAX_IMAGES} allowed"),
        ("NPY shorter than its header", raw(npy_bytes(np.zeros((2, 28, 28), np.uint8))[:-5], NPY), 422,
         "its data is not the size its header declares"),
        ("too many arrays", {"json": {"images": np.zeros((MAX_IMAGES + 1, 28, 28), int).tolist()}}, 413,
         f"{MAX_IMAGES + 1} images in one request, more than the {MAX_IMAGES} allowed"),
        ("NPY of floats above 1", raw(npy_bytes(np.full((2, 28, 28), 2.0)), NPY), 422,
         "the NPY body: holds float64 values; expected uint8 or floats in [0, 1]"),
        ("NPY of the wrong shape", raw(npy_bytes(np.zeros((2, 32, 32), np.uint8)), NPY), 422,
         "holds an array of shape (2, 32, 32), not (n, 28, 28) images"),
        ("not NPY", raw(png, NPY), 422, "the NPY body: cannot be read as an NPY batch"),
        ("too many NPY images", raw(npy_bytes(np.zeros((MAX_IMAGES + 1, 28, 28), np.uint8)), NPY), 413,
         f"{MAX_IMAGES + 1} images in one request"),
        ("wrong content type", raw(png, "image/png"), 415, "content type 'image/png' is not accepted"),
        ("no content type", {"content": png}, 415, "content type 'none' is not accepted"),
    ]  # fmt: skip
    for name, request, status, fragment in cases:
        r = httpx.post(f"{url}/predict", **request)
        assert r.status_code == status, (name, r.text)
        message = r.json()["error"]
        assert fragment in message and message.endswith(".") and "\n" not in message, (name, message)
    checks = {
        "top_k out of range": (httpx.post(f"{url}/predict?top_k=11", json={}), 422, "top_k: Input should be"),
        "unknown tta": (httpx.post(f"{url}/predict?tta=rotate", json={}), 422, "tta: Input should be"),
        "unknown path": (httpx.get(f"{url}/nowhere"), 404, "no such path"),
        "wrong method": (httpx.get(f"{url}/predict"), 405, "does not take that method"),
        "another host name (DNS rebinding)": (
            httpx.get(f"{url}/health", headers={"host": "evil.example"}),
            421,
            "not 'evil.example'",
        ),
    }
    for name, (r, status, fragment) in checks.items():
        assert r.status_code == status and fragment in r.json()["error"], (name, r.text)
    assert checks["wrong method"][0].headers["allow"] == "POST"
    # 50 MB announced: refused from the header, before any of the body is sent.
    start = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {JSON}\r\n"
    head = start + "Content-Length: 50000000\r\n\r\n"
    status, answer = raw_request(url, head)
    assert status == 413 and "over the 4 MB limit" in answer["error"]
    # 50 MB streamed with no length: refused once 4 MB have come in; the rest is never read whole.
    head = start + "Transfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (1_000_000, b" " * 1_000_000)
    status, answer = raw_request(url, head, [chunk] * 50)
    assert status == 413 and "over the 4 MB limit" in answer["error"]
    assert httpx.get(f"{url}/health").status_code == 200
    assert proc.poll() is None
    assert rss_peak_mb(proc.pid) < 400, "the bad requests grew the server's memory"


def test_the_page_classifies_a_picked_image_in_chromium(
    server: Served, pipeline: Path, prepared: Path, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from tests.browser import chromium

    images, labels = load_split(prepared, "test")
    trousers = int(np.flatnonzero(labels == CLASS_NAMES.index("Trouser"))[0])  # the model's easiest class
    picture = tmp_path / "trouser.png"
    Image.fromarray(images[trousers]).save(picture)
    url, _, _ = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's screen
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: errors.append(req.url))
            page.goto(url + "/")
            page.wait_for_function(
                "document.getElementById('model').textContent.includes('fashion-classifier')"
            )
            assert page.is_visible("#tta-box")  # this model offers tta=flip
            page.set_input_files("#file", str(picture))
            page.wait_for_function("document.getElementById('answer').textContent.includes('%')")
            assert page.text_content("#answer").startswith("Trouser (")
            assert page.locator(".bar").count() == len(CLASS_NAMES)
            assert page.get_attribute(".bar.top", "data-class") == "Trouser"
            # A drawing: a stroke across the canvas, sent as a PNG; some class comes back.
            page.evaluate("document.getElementById('answer').textContent = ''")
            box = page.locator("#canvas").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.8, steps=8)
            page.mouse.up()
            page.click("#classify")
            page.wait_for_function("document.getElementById('answer').textContent.includes('%')")
            assert page.text_content("#answer").split(" (")[0] in CLASS_NAMES
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, "the page scrolls sideways on a phone"
            assert errors == []
        finally:
            browser.close()


def test_a_missing_or_wrong_model_gets_one_line(tmp_path: Path) -> None:
    for model, fragment in (
        ("absent.onnx", "absent.onnx not found; run 'dvc repro export' first."),
        (
            "model.keras",
            "model.keras: fmnist serve runs ONNX exports; give exports/model.onnx ('dvc repro export').",
        ),
    ):
        proc = subprocess.run(
            [*FMNIST, "serve", "--model", model, "--port", str(free_port())],
            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 1 and proc.stderr.strip() == f"error: {fragment}", proc.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_the_server_within_a_second(
    pipeline: Path, test_pngs: list[tuple[str, bytes]], workers: int
) -> None:
    with serving(pipeline / "exports/model.onnx", "--workers", str(workers)) as (url, proc, log):
        name, data = test_pngs[0]
        files = [("file", (name, data, "image/png"))]
        with httpx.Client() as client:  # an idle keep-alive connection stays open across the stop
            assert client.post(f"{url}/predict", files=files).status_code == 200
            workers_and_tracker = _children(proc.pid)  # uvicorn's worker processes, multiprocessing's tracker
            assert len(workers_and_tracker) == (0 if workers == 1 else workers + 1)
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            stopped = time.monotonic() - start
        log_text = log.read_text()
        # uvicorn shuts down gracefully, then exits by the signal it caught (-15) as a daemon should.
        assert proc.returncode in (0, -signal.SIGTERM) and "Finished server process" in log_text, log_text
        assert stopped < 1.0, f"{stopped:.2f} s"
        deadline = time.monotonic() + 2  # the tracker notices its parent's exit on its own
        while (left := [pid for pid in workers_and_tracker if _alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert left == []


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            text = status.read_text()
            ppid = int(next(line.split()[1] for line in text.splitlines() if line.startswith("PPid:")))
            name = next(line.split()[1] for line in text.splitlines() if line.startswith("Name:"))
            if ppid == pid and name.startswith("python"):
                found.append(int(status.parent.name))
    return found
