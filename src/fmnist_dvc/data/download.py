"""Fetch the four official Fashion-MNIST files from the first source that has them intact.

A source is a local directory or an https:// base URL holding `<name>.gz` (a directory
may also hold the plain `<name>`). We pin the sha256 of the *decompressed* bytes, not
of the .gz: Debian re-gzipped the files, so only the content is the same everywhere.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from fmnist_dvc.core.atomic import atomic_dir
from fmnist_dvc.core.errors import PipelineError


@dataclass(frozen=True)
class OfficialFile:
    name: str
    sha256: str
    size: int


# Decompressed content of the files published by Zalando Research (github.com/zalandoresearch/
# fashion-mnist); the same bytes are inside Debian's dataset-fashion-mnist package.
OFFICIAL_FILES: tuple[OfficialFile, ...] = (
    OfficialFile(
        "train-images-idx3-ubyte",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        47_040_016,
    ),
    OfficialFile(
        "train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60_008
    ),
    OfficialFile(
        "t10k-images-idx3-ubyte",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        7_840_016,
    ),
    OfficialFile(
        "t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10_008
    ),
)

CHUNK = 1 << 20
FIX_HINT = (
    "install Debian's copy with 'apt-get install dataset-fashion-mnist', or add a directory "
    "or https:// mirror holding the .gz files to download.sources in params.yaml"
)


class SourceError(Exception):
    """This source cannot supply this file; the next source is tried."""


def download_all(
    sources: list[str],
    dest: Path,
    timeout: float = 30.0,
    retries: int = 3,
    files: tuple[OfficialFile, ...] = OFFICIAL_FILES,
) -> None:
    """Write every file, verified, into `dest`; all or nothing."""
    with atomic_dir(dest) as tmp:
        for spec in files:
            failures = []
            for source in sources:
                try:
                    fetch_verified(source, spec, tmp / spec.name, timeout, retries)
                    # Say why earlier sources were passed over: a dead mirror should not go unnoticed.
                    skipped = f" (skipped {'; '.join(failures)})" if failures else ""
                    print(f"{spec.name}: verified sha256 from {source}{skipped}")
                    break
                except SourceError as exc:
                    (tmp / spec.name).unlink(missing_ok=True)
                    failures.append(f"{source}: {exc}")
            else:
                tried = "; ".join(failures)
                raise PipelineError(f"no source supplied a valid {spec.name} (tried {tried}); {FIX_HINT}.")


def fetch_verified(source: str, spec: OfficialFile, out: Path, timeout: float, retries: int) -> None:
    """Decompress one file from one source into `out`, or raise SourceError."""
    if source.startswith("https://"):
        url = f"{source.rstrip('/')}/{spec.name}.gz"
        with tempfile.TemporaryFile() as gz:
            _http_get(url, gz, timeout, retries)
            gz.seek(0)
            _decompress_verified(gz, spec, out)
        return
    if "://" in source:
        raise SourceError("only https:// URLs and local directories are allowed")
    folder = Path(source)
    if not folder.is_dir():
        raise SourceError("directory not found")
    packed, plain = folder / f"{spec.name}.gz", folder / spec.name
    try:
        if packed.is_file():
            with packed.open("rb") as fh:
                _decompress_verified(fh, spec, out)
        elif plain.is_file():
            with plain.open("rb") as fh:
                _copy_verified(fh, spec, out, spec.name)
        else:
            raise SourceError(f"neither {spec.name}.gz nor {spec.name} is there")
    except PermissionError as exc:
        raise SourceError(f"cannot read {exc.filename}: permission denied") from None


def _decompress_verified(gz: BinaryIO, spec: OfficialFile, out: Path) -> None:
    try:
        with gzip.GzipFile(fileobj=gz, mode="rb") as stream:
            _copy_verified(stream, spec, out, f"{spec.name}.gz")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise SourceError(f"{spec.name}.gz is not a complete gzip file ({exc})") from None


def _copy_verified(stream: BinaryIO, spec: OfficialFile, out: Path, label: str) -> None:
    """Copy at most size+1 bytes (a gzip bomb cannot fill the disk), then check the hash.

    `label` names the file read (e.g. train-labels-idx1-ubyte.gz) in the messages.
    """
    digest, written = hashlib.sha256(), 0
    with out.open("wb") as fh, _bar(spec.name, spec.size) as bar:
        while chunk := stream.read(min(CHUNK, spec.size + 1 - written)):
            digest.update(chunk)
            try:
                fh.write(chunk)
            except OSError as exc:  # disk full or read-only: no other source can help
                raise PipelineError(
                    f"cannot write {out}: {exc.strerror}; free some space or fix the permissions."
                ) from None
            written += len(chunk)
            bar.update(len(chunk))
            if written > spec.size:
                raise SourceError(
                    f"{label} unpacks to content larger than the official {spec.size} bytes; "
                    "reading stopped there"
                )
    if written != spec.size:
        raise SourceError(
            f"{label} unpacks to {written} bytes, not the official {spec.size}: it is a different file"
        )
    if digest.hexdigest() != spec.sha256:
        raise SourceError(
            f"{label} is corrupted: sha256 {digest.hexdigest()[:12]}... differs from the official file"
        )


def _http_get(url: str, out: BinaryIO, timeout: float, retries: int) -> None:
    last = ""
    for attempt in range(1, retries + 1):
        out.seek(0)
        out.truncate()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                received = 0
                with _bar(url.rsplit("/", 1)[-1], total) as bar:
                    while chunk := resp.read(CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            if total is None or received == total:
                return
            last = f"connection dropped after {received} of {total} bytes"
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise SourceError(f"{url} answered 404 Not Found") from None
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                last = f"no answer within {timeout:g} s (download.timeout)"
            else:
                last = str(reason) or type(exc).__name__
        if attempt < retries:
            time.sleep(min(2 ** (attempt - 1), 8))
    raise SourceError(f"{url} failed {retries} time(s), last: {last}")


def _bar(label: str, total: int | None) -> tqdm:
    return tqdm(total=total, desc=label, unit="B", unit_scale=True, leave=False, disable=None)
