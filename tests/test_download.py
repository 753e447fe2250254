import gzip
import hashlib
import time
from pathlib import Path

import pytest

from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.data.download import OFFICIAL_FILES, download_all
from tests.helpers import gzip_bytes

LABELS = [f for f in OFFICIAL_FILES if "labels" in f.name]


def test_debian_files_verify_against_the_pinned_official_hashes(raw_dir: Path, debian_dir: Path) -> None:
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(f.name for f in OFFICIAL_FILES)
    for spec in OFFICIAL_FILES:
        data = (raw_dir / spec.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == spec.sha256
        assert data == gzip.decompress((debian_dir / f"{spec.name}.gz").read_bytes())


def _bad_source(tmp_path: Path, debian_dir: Path) -> Path:
    """A mirror whose train labels have one flipped byte and whose test labels are truncated."""
    bad = tmp_path / "bad"
    bad.mkdir()
    content = bytearray(gzip.decompress((debian_dir / "train-labels-idx1-ubyte.gz").read_bytes()))
    content[100] ^= 0x01
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(gzip_bytes(bytes(content)))
    good_gz = (debian_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(good_gz[: len(good_gz) // 2])
    return bad


def test_corrupted_source_is_rejected_and_the_next_one_used(
    tmp_path: Path, debian_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _bad_source(tmp_path, debian_dir)
    dest = tmp_path / "raw"
    download_all([str(bad), str(debian_dir)], dest, files=tuple(LABELS))
    for spec in LABELS:
        assert hashlib.sha256((dest / spec.name).read_bytes()).hexdigest() == spec.sha256
    out = capsys.readouterr().out
    assert f"train-labels-idx1-ubyte: verified sha256 from {debian_dir}" in out


def test_unreachable_url_is_tried_then_the_next_source_used(tmp_path: Path, debian_dir: Path) -> None:
    # Port 9 (discard) on loopback refuses at once: a real connection attempt, no internet needed.
    url = "https://127.0.0.1:9/fashion"
    with pytest.raises(PipelineError, match=rf"{url}/train-labels-idx1-ubyte.gz failed 2 time\(s\)"):
        download_all([url], tmp_path / "none", timeout=2, retries=2, files=tuple(LABELS))
    dest = tmp_path / "raw"
    download_all([url, str(debian_dir)], dest, timeout=2, retries=1, files=tuple(LABELS))
    assert sorted(p.name for p in dest.iterdir()) == sorted(f.name for f in LABELS)


def test_plain_uncompressed_files_are_accepted(tmp_path: Path, raw_dir: Path) -> None:
    dest = tmp_path / "raw"
    download_all([str(raw_dir)], dest, files=tuple(LABELS))
    assert (dest / "t10k-labels-idx1-ubyte").read_bytes() == (raw_dir / "t10k-labels-idx1-ubyte").read_bytes()


def test_all_sources_bad_lists_every_attempt_and_leaves_nothing(tmp_path: Path, debian_dir: Path) -> None:
    bad = _bad_source(tmp_path, debian_dir)
    dest = tmp_path / "data" / "raw"
    sources = [str(tmp_path / "missing"), str(bad), "http://example.invalid/fashion"]
    with pytest.raises(PipelineError) as info:
        download_all(sources, dest, files=tuple(LABELS))
    message = str(info.value)
    assert "no source supplied a valid train-labels-idx1-ubyte" in message
    assert f"{tmp_path / 'missing'}: directory not found" in message
    assert "differs from the official file" in message
    assert "only https:// URLs and local directories are allowed" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "\n" not in message
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no temporary directory left behind either


def test_failed_download_keeps_an_earlier_complete_output(tmp_path: Path, debian_dir: Path) -> None:
    dest = tmp_path / "raw"
    download_all([str(debian_dir)], dest, files=tuple(LABELS))
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    with pytest.raises(PipelineError):
        download_all([str(tmp_path / "missing")], dest, files=tuple(LABELS))
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before


def test_gzip_bomb_is_cut_off_at_the_official_size(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    # 256 gzip members of 64 MiB of zeros: 16 GiB unpacked from a 17 MB file. Unbounded,
    # this would fill the disk and take minutes; bounded, it stops just past 10,008 bytes.
    member = gzip.compress(bytes(64 << 20), compresslevel=9)
    (bomb / "t10k-labels-idx1-ubyte.gz").write_bytes(member * 256)
    spec = next(f for f in OFFICIAL_FILES if f.name == "t10k-labels-idx1-ubyte")
    start = time.perf_counter()
    with pytest.raises(PipelineError, match="larger than the official 10008 bytes"):
        download_all([str(bomb)], tmp_path / "raw", files=(spec,))
    assert time.perf_counter() - start < 20
