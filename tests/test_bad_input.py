"""The bad-input catalogue (docs/bad-input.md) for data and model files, stage by stage.

Each case runs the real stage script on real files, starting from the outputs of an earlier
good run, and checks what a user sees: exit 1, one `error:` line that names the file and what
to do, no partial output, and the earlier outputs exactly as they were. Bad params.yaml
cases are in test_stage_errors.py.
"""

from __future__ import annotations

import gzip
import shutil
import socket
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fmnist_dvc.download import OFFICIAL_FILES
from fmnist_dvc.idx import encode_idx, read_images, read_labels
from tests.conftest import assert_one_line_error, gzip_bytes, run_stage, snapshot

FETCH_HINT = "apt-get install dataset-fashion-mnist"
REFETCH = "run 'dvc repro -f download' to fetch the official files again."
REBUILD = "run 'dvc repro -f train' to rebuild it."


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory, small_raw_dir: Path) -> Path:
    """A workspace after a good run on real data: data/raw (a real 1,000 + 500 image subset),
    data/prepared and metrics/data from the preprocess stage, a model saved by the project's
    save_model (untrained: evaluation only needs a real file), and what evaluate made of it."""
    import keras

    from fmnist_dvc.model_io import save_model
    from fmnist_dvc.models import build_mlp

    work = tmp_path_factory.mktemp("good_run")
    shutil.copytree(small_raw_dir, work / "data" / "raw")
    assert run_stage("preprocess", work).returncode == 0
    keras.utils.set_random_seed(0)
    save_model(build_mlp([32], 0.2), work / "models" / "model.keras")
    proc = run_stage("evaluate", work)
    assert proc.returncode == 0, proc.stderr
    assert (work / "metrics" / "evaluate.json").is_file() and (work / "metrics" / "test").is_dir()
    return work


@pytest.fixture
def work(good_run: Path, tmp_path: Path) -> Path:
    """A private copy of the good run for one test to damage."""
    dest = tmp_path / "work"
    shutil.copytree(good_run, dest)
    return dest


# --- download: a bad file in a source -----------------------------------------------------

BAD = "train-labels-idx1-ubyte"  # fetched second: train-images is verified first, then dropped
BAD_SIZE = next(f.size for f in OFFICIAL_FILES if f.name == BAD)


def official_gz(debian_dir: Path, name: str = BAD) -> bytes:
    return (debian_dir / f"{name}.gz").read_bytes()


def truncated_gz(debian_dir: Path) -> bytes:
    gz = official_gz(debian_dir)
    return gz[: len(gz) // 2]


def one_flipped_bit(debian_dir: Path) -> bytes:
    # Label 100 changes class; the file still parses, only the sha256 shows the damage.
    content = bytearray(gzip.decompress(official_gz(debian_dir)))
    content[100] ^= 0x01
    return gzip_bytes(bytes(content))


def t10k_labels_instead(debian_dir: Path) -> bytes:
    return official_gz(debian_dir, "t10k-labels-idx1-ubyte")


def gzip_bomb(debian_dir: Path) -> bytes:
    # 256 gzip members of 64 MiB of zeros: 16 GiB unpacked from a 17 MB file.
    return gzip.compress(bytes(64 << 20), compresslevel=9) * 256


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(
            truncated_gz,
            f"{BAD}.gz is not a complete gzip file (Compressed file ended before the end-of-stream "
            "marker was reached)",
            id="truncated-gz",
        ),
        pytest.param(
            one_flipped_bit,
            f"{BAD}.gz is corrupted: sha256 66952a48b1fb... differs from the official file",
            id="checksum-mismatch",
        ),
        pytest.param(
            t10k_labels_instead,
            f"{BAD}.gz unpacks to 10008 bytes, not the official {BAD_SIZE}: it is a different file",
            id="valid-gzip-wrong-file",
        ),
        pytest.param(
            gzip_bomb,
            f"{BAD}.gz unpacks to content larger than the official {BAD_SIZE} bytes; reading stopped there",
            id="gzip-bomb",
        ),
    ],
)
def test_bad_gz_in_the_only_source_fails_and_keeps_earlier_data(
    work: Path, debian_dir: Path, make: Callable[[Path], bytes], reason: str
) -> None:
    mirror = work.parent / "mirror"  # Debian's four files, one of them replaced
    mirror.mkdir()
    for gz in debian_dir.glob("*.gz"):
        (mirror / gz.name).symlink_to(gz)
    (mirror / f"{BAD}.gz").unlink()
    (mirror / f"{BAD}.gz").write_bytes(make(debian_dir))
    before = snapshot(work / "data")
    start = time.perf_counter()
    proc = run_stage("download", work, {"download.sources": [str(mirror)]})
    assert time.perf_counter() - start < 60  # the bomb is cut off at 60,009 bytes, not unpacked
    assert_one_line_error(proc, f"no source supplied a valid {BAD} (tried {mirror}: {reason}); ", FETCH_HINT)
    assert "train-images-idx3-ubyte: verified sha256" in proc.stdout  # verified, yet not kept
    assert snapshot(work / "data") == before


def test_missing_source_directory_fails_and_keeps_earlier_data(work: Path) -> None:
    before = snapshot(work / "data")
    proc = run_stage("download", work, {"download.sources": [str(work / "nowhere")]})
    assert_one_line_error(
        proc,
        f"no source supplied a valid train-images-idx3-ubyte (tried {work / 'nowhere'}: directory not found)",
        FETCH_HINT,
    )
    assert snapshot(work / "data") == before


# --- download: a mirror that cannot be reached -------------------------------------------


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port whose connections the kernel accepts and nobody ever answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


UNREACHABLE = [
    pytest.param("closed_port", "[Errno 111] Connection refused", id="refused"),
    pytest.param("silent_port", "no answer within 0.5 s (download.timeout)", id="timeout"),
]


@pytest.mark.parametrize(("port_fixture", "reason"), UNREACHABLE)
def test_unreachable_url_alone_fails_naming_it(
    work: Path, request: pytest.FixtureRequest, port_fixture: str, reason: str
) -> None:
    url = f"https://127.0.0.1:{request.getfixturevalue(port_fixture)}/fashion"
    before = snapshot(work / "data")
    changes = {"download.sources": [url], "download.timeout": 0.5, "download.retries": 2}
    proc = run_stage("download", work, changes)
    assert_one_line_error(
        proc,
        f"no source supplied a valid train-images-idx3-ubyte (tried {url}: "
        f"{url}/train-images-idx3-ubyte.gz failed 2 time(s), last: {reason}); ",
        FETCH_HINT,
    )
    assert snapshot(work / "data") == before


@pytest.mark.parametrize(("port_fixture", "reason"), UNREACHABLE)
def test_unreachable_url_then_the_next_source_is_used(
    work: Path,
    debian_dir: Path,
    raw_dir: Path,
    request: pytest.FixtureRequest,
    port_fixture: str,
    reason: str,
) -> None:
    url = f"https://127.0.0.1:{request.getfixturevalue(port_fixture)}/fashion"
    changes = {"download.sources": [url, str(debian_dir)], "download.timeout": 0.5, "download.retries": 1}
    proc = run_stage("download", work, changes)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    for spec in OFFICIAL_FILES:
        assert (
            f"{spec.name}: verified sha256 from {debian_dir} "
            f"(skipped {url}: {url}/{spec.name}.gz failed 1 time(s), last: {reason})"
        ) in proc.stdout
        assert (work / "data" / "raw" / spec.name).read_bytes() == (raw_dir / spec.name).read_bytes()
    assert sorted(p.name for p in (work / "data").iterdir()) == ["prepared", "raw"]


# --- preprocess: a damaged IDX file in data/raw ------------------------------------------


def _real(work: Path, name: str) -> bytes:
    return (work / "data" / "raw" / name).read_bytes()


def bad_magic(work: Path) -> bytes:
    data = bytearray(_real(work, "train-images-idx3-ubyte"))
    data[2] = 0x0D  # the type code of 32-bit floats, not unsigned bytes
    return bytes(data)


def cut_short(work: Path) -> bytes:
    return _real(work, "train-images-idx3-ubyte")[:-100]


def flattened(work: Path) -> bytes:
    images = read_images(work / "data" / "raw" / "train-images-idx3-ubyte")
    return encode_idx(images.reshape(len(images), -1))  # (1000, 784): the right bytes, wrong dimensions


def labels_file(work: Path) -> bytes:
    return _real(work, "train-labels-idx1-ubyte")


def one_label_short(work: Path) -> bytes:
    return encode_idx(read_labels(work / "data" / "raw" / "train-labels-idx1-ubyte")[:-1])


def label_10(work: Path) -> bytes:
    labels = read_labels(work / "data" / "raw" / "train-labels-idx1-ubyte").copy()
    labels[500] = 10
    return encode_idx(labels)


IMAGES, LABELS = "data/raw/train-images-idx3-ubyte", "data/raw/train-labels-idx1-ubyte"


@pytest.mark.parametrize(
    ("target", "make", "message"),
    [
        pytest.param(
            IMAGES,
            bad_magic,
            f"{IMAGES} has bad magic number 0x00000d03 (expected 0x000008 followed by the dimension "
            "count); it is not an unsigned-byte IDX file",
            id="bad-magic",
        ),
        pytest.param(
            IMAGES,
            cut_short,
            f"{IMAGES} is truncated: header (1000, 28, 28) needs 784016 bytes, file has 783916",
            id="truncated",
        ),
        pytest.param(
            IMAGES,
            flattened,
            f"{IMAGES} holds an array of shape (1000, 784), not (n, 28, 28) images; ",
            id="wrong-dimensions",
        ),
        pytest.param(
            IMAGES,
            labels_file,
            f"{IMAGES} holds an array of shape (1000,), not (n, 28, 28) images (is it a labels file?)",
            id="labels-file-as-images",
        ),
        pytest.param(
            LABELS,
            one_label_short,
            f"{IMAGES} has 1000 images but {LABELS} has 999 labels; the two files do not belong together",
            id="count-mismatch",
        ),
        pytest.param(
            LABELS,
            label_10,
            f"{LABELS} has label 10, outside 0-9, at position 500; it is not a Fashion-MNIST labels file",
            id="label-outside-0-9",
        ),
    ],
)
def test_damaged_raw_file_stops_preprocess_and_keeps_earlier_output(
    work: Path, target: str, make: Callable[[Path], bytes], message: str
) -> None:
    (work / target).write_bytes(make(work))
    before = {d: snapshot(work / d) for d in ("data/prepared", "metrics")}
    assert_one_line_error(run_stage("preprocess", work), message, REFETCH)
    assert {d: snapshot(work / d) for d in before} == before
    assert sorted(p.name for p in (work / "data").iterdir()) == ["prepared", "raw"]


# --- evaluate: models/model.keras missing or damaged -------------------------------------

MODEL = "models/model.keras"


def _model(work: Path) -> bytes:
    return (work / MODEL).read_bytes()


def _member_offset(work: Path, member: str) -> int:
    """Where `member`'s compressed bytes start inside the .keras zip."""
    with zipfile.ZipFile(work / MODEL) as archive:
        info = archive.getinfo(member)
    header = _model(work)[info.header_offset : info.header_offset + 30]
    name_len, extra_len = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


def lfs_pointer(work: Path) -> bytes:
    # What a clone without the model's real content holds: a text pointer, not the model.
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:0123abcd\nsize 373000\n"


def empty(work: Path) -> bytes:
    return b""


def truncated_model(work: Path) -> bytes:
    data = _model(work)
    return data[: len(data) // 2]


def flipped_weight_byte(work: Path) -> bytes:
    data = bytearray(_model(work))
    data[_member_offset(work, "model.weights.h5") + 2000] ^= 0xFF
    return bytes(data)


def without_weights(work: Path) -> bytes:
    target = work.parent / "no-weights.keras"
    with zipfile.ZipFile(work / MODEL) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            if info.filename != "model.weights.h5":
                dst.writestr(info, src.read(info))
    return target.read_bytes()


def removed(work: Path) -> None:
    return None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(removed, f"{MODEL} not found; run 'dvc repro train' first.", id="missing"),
        pytest.param(
            lfs_pointer,
            f"{MODEL} is not a readable Keras model: not a complete zip archive (File is not a zip file); "
            + REBUILD,
            id="not-a-zip",
        ),
        pytest.param(
            empty,
            f"{MODEL} is not a readable Keras model: not a complete zip archive (File is not a zip file); "
            + REBUILD,
            id="empty",
        ),
        pytest.param(
            truncated_model,
            f"{MODEL} is not a readable Keras model: not a complete zip archive (File is not a zip file); "
            + REBUILD,
            id="truncated",
        ),
        pytest.param(
            flipped_weight_byte,
            f"{MODEL} is not a readable Keras model: model.weights.h5 inside it fails its CRC check; "
            + REBUILD,
            id="flipped-weight-byte",
        ),
        pytest.param(
            without_weights,
            f"{MODEL} is not a readable Keras model: the archive has no model.weights.h5; " + REBUILD,
            id="no-weights-inside",
        ),
    ],
)
def test_missing_or_damaged_model_stops_evaluate_and_keeps_earlier_metrics(
    work: Path, make: Callable[[Path], bytes | None], message: str
) -> None:
    data = make(work)
    if data is None:
        (work / MODEL).unlink()
    else:
        (work / MODEL).write_bytes(data)
    before = {d: snapshot(work / d) for d in ("models", "metrics")}
    proc = run_stage("evaluate", work)
    line = assert_one_line_error(proc, message)
    assert proc.stderr == line + "\n"  # refused before TensorFlow loads and logs its start-up
    assert {d: snapshot(work / d) for d in before} == before


def test_model_of_the_wrong_shape_stops_evaluate_and_keeps_earlier_metrics(work: Path) -> None:
    import keras

    from fmnist_dvc.model_io import save_model

    keras.utils.set_random_seed(0)
    five_classes = keras.Sequential(
        [keras.Input(shape=(28, 28)), keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")]
    )
    save_model(five_classes, work / MODEL)
    before = snapshot(work / "metrics")
    assert_one_line_error(
        run_stage("evaluate", work),
        f"{MODEL} maps (None, 28, 28) to (None, 5), not 28x28 images to 10 class scores; " + REBUILD,
    )
    assert snapshot(work / "metrics") == before
