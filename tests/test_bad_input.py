"""The bad-input catalogue (docs/bad-input.md) for data and model files, stage by stage.

Each case runs the real stage script on real files, starting from the outputs of an earlier
good run, and checks what a user sees: exit 1, one `error:` line that is the message the
catalogue's row shows (looked up by its id), no partial output, and the earlier outputs exactly
as they were. Bad params.yaml cases are in test_stage_errors.py.
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

from fmnist_dvc.data.download import OFFICIAL_FILES
from fmnist_dvc.data.idx import read_images, read_labels
from tests.catalogue import assert_catalogued_error, cases, message
from tests.helpers import encode_idx, gzip_bytes, run_stage, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory, small_raw_dir: Path) -> Path:
    """A workspace after a good run on real data: data/raw (a real 1,000 + 500 image subset),
    data/prepared and metrics/data from the preprocess stage, a model saved by the project's
    save_model (untrained: evaluation only needs a real file), and what evaluate made of it."""
    import keras

    from fmnist_dvc.core.model_io import save_model
    from fmnist_dvc.train.models import build_mlp

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
    ("case", "make"),
    cases(
        ("truncated-gz", truncated_gz),
        ("checksum-mismatch", one_flipped_bit),
        ("valid-gzip-wrong-file", t10k_labels_instead),
        ("gzip-bomb", gzip_bomb),
    ),
)
def test_bad_gz_in_the_only_source_fails_and_keeps_earlier_data(
    work: Path, debian_dir: Path, case: str, make: Callable[[Path], bytes]
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
    assert_catalogued_error(proc, case, mirror=mirror)
    assert "train-images-idx3-ubyte: verified sha256" in proc.stdout  # verified, yet not kept
    assert snapshot(work / "data") == before


def test_missing_source_directory_fails_and_keeps_earlier_data(work: Path) -> None:
    before = snapshot(work / "data")
    proc = run_stage("download", work, {"download.sources": [str(work / "nowhere")]})
    assert_catalogued_error(proc, "missing-source-directory", work=work)
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


@pytest.mark.parametrize(
    ("case", "port_fixture"),
    cases(("only-source-refused", "closed_port"), ("only-source-timeout", "silent_port")),
)
def test_unreachable_url_alone_fails_naming_it(
    work: Path, request: pytest.FixtureRequest, case: str, port_fixture: str
) -> None:
    port = request.getfixturevalue(port_fixture)
    before = snapshot(work / "data")
    changes = {
        "download.sources": [f"https://127.0.0.1:{port}/fashion"],
        "download.timeout": 0.5,
        "download.retries": 2,
    }
    assert_catalogued_error(run_stage("download", work, changes), case, port=port)
    assert snapshot(work / "data") == before


@pytest.mark.parametrize(
    ("case", "port_fixture"),
    cases(("next-source-refused", "closed_port"), ("next-source-timeout", "silent_port")),
)
def test_unreachable_url_then_the_next_source_is_used(
    work: Path,
    debian_dir: Path,
    raw_dir: Path,
    request: pytest.FixtureRequest,
    case: str,
    port_fixture: str,
) -> None:
    port = request.getfixturevalue(port_fixture)
    changes = {
        "download.sources": [f"https://127.0.0.1:{port}/fashion", str(debian_dir)],
        "download.timeout": 0.5,
        "download.retries": 1,
    }
    proc = run_stage("download", work, changes)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    line = message(case, port=port)  # the catalogue shows the line for train-images
    assert f" from {debian_dir} " in line
    for spec in OFFICIAL_FILES:
        assert line.replace("train-images-idx3-ubyte", spec.name) in proc.stdout
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
    ("case", "target", "make"),
    cases(
        ("bad-magic", IMAGES, bad_magic),
        ("truncated-idx", IMAGES, cut_short),
        ("wrong-dimensions", IMAGES, flattened),
        ("labels-file-as-images", IMAGES, labels_file),
        ("count-mismatch", LABELS, one_label_short),
        ("label-outside-0-9", LABELS, label_10),
    ),
)
def test_damaged_raw_file_stops_preprocess_and_keeps_earlier_output(
    work: Path, case: str, target: str, make: Callable[[Path], bytes]
) -> None:
    (work / target).write_bytes(make(work))
    before = {d: snapshot(work / d) for d in ("data/prepared", "metrics")}
    assert_catalogued_error(run_stage("preprocess", work), case)
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
    ("case", "make"),
    cases(
        ("model-missing", removed),
        ("not-a-zip", lfs_pointer),
        ("empty-model", empty),
        ("truncated-model", truncated_model),
        ("flipped-weight-byte", flipped_weight_byte),
        ("no-weights-inside", without_weights),
    ),
)
def test_missing_or_damaged_model_stops_evaluate_and_keeps_earlier_metrics(
    work: Path, case: str, make: Callable[[Path], bytes | None]
) -> None:
    data = make(work)
    if data is None:
        (work / MODEL).unlink()
    else:
        (work / MODEL).write_bytes(data)
    before = {d: snapshot(work / d) for d in ("models", "metrics")}
    proc = run_stage("evaluate", work)
    line = assert_catalogued_error(proc, case)
    assert proc.stderr == line + "\n"  # refused before TensorFlow loads and logs its start-up
    assert {d: snapshot(work / d) for d in before} == before


def test_model_of_the_wrong_shape_stops_evaluate_and_keeps_earlier_metrics(work: Path) -> None:
    import keras

    from fmnist_dvc.core.model_io import save_model

    keras.utils.set_random_seed(0)
    five_classes = keras.Sequential(
        [keras.Input(shape=(28, 28)), keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")]
    )
    save_model(five_classes, work / MODEL)
    before = snapshot(work / "metrics")
    assert_catalogued_error(run_stage("evaluate", work), "wrong-shape")
    assert snapshot(work / "metrics") == before
