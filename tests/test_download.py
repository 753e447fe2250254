import gzip
import hashlib
from pathlib import Path

import pytest

from fmnist_dvc.download import OFFICIAL_FILES, download_all
from fmnist_dvc.errors import PipelineError
from tests.conftest import gzip_bytes

LABELS = [f for f in OFFICIAL_FILES if "labels" in f.name]


def test_debian_files_verify_against_the_pinned_official_hashes(raw_dir: Path, debian_dir: Path) -> None:
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(f.name for f in OFFICIAL_FILES)
    for spec in OFFICIAL_FILES:
        data = (raw_dir / spec.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == spec.sha256
        assert data == gzip.decompress((debian_dir / f"{spec.name}.gz").read_bytes())
    # The .gz files themselves are Debian's re-compression: only the content is pinned.
    debian_gz = (debian_dir / "train-labels-idx1-ubyte.gz").read_bytes()
    assert hashlib.md5(debian_gz).hexdigest() != "25c81989df183df01b3e8a0aad5dffbe"


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


def test_unreachable_url_falls_through_to_the_next_source(tmp_path: Path, debian_dir: Path) -> None:
    # Port 9 (discard) on loopback refuses at once: a real connection attempt, no internet needed.
    dest = tmp_path / "raw"
    download_all(["https://127.0.0.1:9/fashion", str(debian_dir)], dest, timeout=2, retries=1,
                 files=tuple(LABELS))
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
    # 64 MB of zeros compresses to ~64 KB; reading stops just past the 10,008 official bytes.
    (bomb / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(64 << 20), compresslevel=1))
    spec = next(f for f in OFFICIAL_FILES if f.name == "t10k-labels-idx1-ubyte")
    with pytest.raises(PipelineError, match="larger than the official 10008 bytes"):
        download_all([str(bomb)], tmp_path / "raw", files=(spec,))
