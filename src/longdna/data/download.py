"""Streaming, resumable, verified downloads with the standard library (plus tqdm for the progress bar).

:func:`download` fetches ``http(s)://``, ``ftp://`` and ``file://`` URLs:

* **streaming** into ``DEST.part`` next to the destination, 1 MiB at a time, with a progress bar (bytes and
  rate) on stderr;
* **resumable**: an existing ``DEST.part`` (from an interrupted transfer, in this process or an earlier one)
  is continued with an HTTP ``Range`` request; a server that ignores the range (200) or a stale part file
  restarts the transfer from zero. ``ftp://`` and ``file://`` go through urllib, which cannot send a range,
  so they always restart;
* **retried** with exponential backoff (``backoff * 2**k`` seconds, at most ``MAX_BACKOFF``) on transient
  errors: connection resets and refusals, timeouts, a transfer that ends short of its ``Content-Length``, and
  HTTP 408/425/429/5xx. ``retries`` counts consecutive attempts that made no progress, so a long download
  over a flaky link is not abandoned while it keeps advancing. Other HTTP errors (403, 404, ...) fail at once;
* **verified** against a :class:`Checksum` (``sha256``, ``md5``, or ``bsd-sum``, the 16-bit BSD ``sum``
  that Ensembl's ``CHECKSUMS`` files list) given directly or looked up by file name in a checksum listing
  (UCSC ``md5sum.txt``, Ensembl ``CHECKSUMS``, any ``sha256sum``/``md5sum`` output) fetched from the server.
  A listing that does not exist or does not name the file only gives a warning: not every source publishes
  one;
* **atomic**: the part file is renamed to ``DEST`` only when complete and verified; a checksum mismatch
  deletes it (resuming a corrupt prefix would never succeed). The stable ``.part`` name, rather than
  :func:`longdna.io.atomic_path`'s random one, is what lets a rerun resume. A full disk stops the transfer at
  once with :class:`longdna.io.DiskFullError` naming the part file (it is not retried).

Every error names the URL (``HTTP 404 for <url>``). An existing ``DEST`` is reused without network access
(it can only exist verified); with an explicit checksum it is re-hashed first and replaced on mismatch.
:func:`download_and_read` goes further for files without a checksum: the reader that uses the file (a FASTA
parser, a BED parser) is its validation, and a cached file it rejects is removed and downloaded once more.
"""

from __future__ import annotations

import ftplib
import http.client
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from longdna.io import file_digest, reporting_disk_full

CHUNK = 1 << 20
MAX_BACKOFF = 60.0
USER_AGENT = "longdna (python urllib)"
SCHEMES = ("http", "https", "ftp", "file")
#: HTTP statuses worth retrying: timeouts, rate limiting and server-side failures
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
ALGORITHMS = ("sha256", "md5", "bsd-sum")

T = TypeVar("T")


class DownloadError(RuntimeError):
    """A download failed for good; the message names the URL."""


class ChecksumMismatchError(DownloadError):
    """The downloaded (or local) file does not match its expected checksum."""


class InvalidDownloadError(DownloadError):
    """A freshly downloaded file failed the validation of its content (not a checksum)."""


class _Transient(Exception):
    """An error worth retrying."""


@dataclass(frozen=True)
class Checksum:
    """An expected checksum: ``sha256``/``md5`` as hex, ``bsd-sum`` as ``"<sum> <1 KiB blocks>"``."""

    algorithm: str
    value: str
    source: str = "config"  # where the value came from, for error messages

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"checksum algorithm must be one of {ALGORITHMS}, not {self.algorithm!r}")
        pattern = {"sha256": r"[0-9a-fA-F]{64}", "md5": r"[0-9a-fA-F]{32}", "bsd-sum": r"\d+ \d+"}[self.algorithm]
        if not re.fullmatch(pattern, self.value):
            raise ValueError(f"{self.source}: {self.value!r} is not a valid {self.algorithm} checksum")


def compute_checksum(path: str | os.PathLike, algorithm: str) -> str:
    """The checksum of a file in :class:`Checksum`'s format."""
    if algorithm == "bsd-sum":
        return _bsd_sum(Path(path))
    return file_digest(path, algorithm)


def _bsd_sum(path: Path) -> str:
    # The BSD sum is a serial 16-bit rotate-and-add: ~100 ns per byte in Python, minutes for a genome, so it
    # runs in coreutils' ``sum -r``, present wherever the workflow runs (Linux, macOS).
    executable = shutil.which("sum")
    if executable is None:
        raise DownloadError(f"{path}: cannot verify a BSD sum checksum: the `sum` program is not installed")
    out = subprocess.run([executable, "-r", str(path)], check=True, capture_output=True, text=True).stdout.split()
    return f"{int(out[0])} {int(out[1])}"


def verify_checksum(path: str | os.PathLike, expected: Checksum, what: str) -> None:
    """Raise :class:`ChecksumMismatchError` (naming ``what``, a URL or a path) unless ``path`` matches."""
    actual = compute_checksum(path, expected.algorithm)
    if actual.lower() != expected.value.lower():
        raise ChecksumMismatchError(
            f"{expected.algorithm} mismatch for {what}: expected {expected.value} (from {expected.source}),"
            f" got {actual}"
        )


def parse_checksum_listing(text: str, filename: str, source: str) -> Checksum | None:
    """The entry for ``filename`` in an ``md5sum``/``sha256sum``-style or Ensembl ``CHECKSUMS`` listing."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("*") == filename:
            algorithm = {32: "md5", 64: "sha256"}.get(len(fields[0]))
            if algorithm and re.fullmatch(r"[0-9a-fA-F]+", fields[0]):
                return Checksum(algorithm, fields[0], source)
        if len(fields) == 3 and fields[2] == filename and fields[0].isdigit() and fields[1].isdigit():
            return Checksum("bsd-sum", f"{int(fields[0])} {int(fields[1])}", source)
    return None


def url_filename(url: str) -> str:
    """The last path component of a URL, unquoted."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def _check_scheme(url: str) -> str:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"{url}: unsupported URL scheme {scheme!r} (use one of {SCHEMES})")
    return scheme


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if offset and url.lower().startswith(("http://", "https://")):
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in TRANSIENT_STATUS:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        if exc.code == 416 and offset:
            raise  # the caller decides: a complete part file or a stale one
        raise DownloadError(f"HTTP {exc.code} ({exc.reason}) for {url}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        permanent = (FileNotFoundError, PermissionError, IsADirectoryError, ssl.SSLCertVerificationError)
        # urllib re-raises ftplib's 5xx replies (550: no such file) as a URLError chained to the original
        if isinstance(reason, permanent) or isinstance(exc.__cause__ or exc.__context__, ftplib.error_perm):
            raise DownloadError(f"cannot fetch {url}: {reason}") from exc
        raise _Transient(f"{reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc


def _with_retries(
    url: str, attempt: Callable[[], T], progressed: Callable[[], bool], retries: int, backoff: float
) -> T:
    failures = 0
    while True:
        try:
            return attempt()
        except _Transient as exc:
            failures = 0 if progressed() else failures + 1
            if failures > retries:
                raise DownloadError(f"giving up on {url} after {retries} retries without progress: {exc}") from exc
            delay = min(backoff * 2 ** max(failures - 1, 0), MAX_BACKOFF)
            print(f"{url}: {exc}; retrying in {delay:.1f} s", file=sys.stderr)
            time.sleep(delay)


def fetch_text(url: str, *, retries: int = 5, backoff: float = 1.0, timeout: float = 60.0) -> str:
    """A small text resource (a checksum listing, a directory index), with the same retry policy."""
    _check_scheme(url)

    def attempt() -> str:
        with _open(url, 0, timeout) as response:
            try:
                return response.read().decode("utf-8", errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc

    return _with_retries(url, attempt, lambda: False, retries, backoff)


def _total_size(response: http.client.HTTPResponse, url: str, offset: int) -> tuple[int, int | None]:
    """(offset the body starts at, total size if known) of a response to a possibly ranged request."""
    length = response.headers.get("Content-Length")
    status = getattr(response, "status", None)
    if offset and status == 206:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            raise DownloadError(
                f"{url}: answer to a range request from byte {offset} has Content-Range"
                f" {response.headers.get('Content-Range')!r}"
            )
        return offset, None if match.group(3) == "*" else int(match.group(3))
    return 0, int(length) if length is not None else None


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> None:
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:  # 416: the range starts at or past the end of the file
        match = re.fullmatch(r"bytes \*/(\d+)", (exc.headers.get("Content-Range") or "").strip())
        if match and int(match.group(1)) == offset:
            return  # the part file is already complete
        part.unlink(missing_ok=True)
        raise _Transient(f"stale partial download ({offset} bytes) rejected with HTTP 416; restarting") from exc
    with response:
        start, total = _total_size(response, url, offset)
        received = start
        with (
            open(part, "ab" if start else "wb") as fh,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                desc=url_filename(url),
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    reason = f"transfer interrupted after {received} bytes: {type(exc).__name__}: {exc}"
                    raise _Transient(reason) from exc
                if not chunk:
                    break
                with reporting_disk_full(part):  # a full disk is no network hiccup: never retried
                    fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received < total:
        raise _Transient(f"connection closed after {received} of {total} bytes")
    if total is not None and received > total:
        part.unlink()
        raise DownloadError(f"{url}: received {received} bytes, more than the announced {total}")


def download(
    url: str,
    dest: str | os.PathLike,
    checksum: Checksum | None = None,
    *,
    checksum_listing: str | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Fetch ``url`` to ``dest`` (see the module docstring); returns ``dest``.

    ``checksum`` wins over ``checksum_listing`` (the URL of a listing to look the file up in).
    """
    _check_scheme(url)
    dest = Path(dest)
    if dest.exists():
        if checksum is None:
            return dest
        try:
            verify_checksum(dest, checksum, str(dest))
            return dest
        except ChecksumMismatchError as exc:
            print(f"{exc}; downloading {url} again", file=sys.stderr)
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_size = part.stat().st_size if part.exists() else 0

    def progressed() -> bool:
        nonlocal last_size
        size = part.stat().st_size if part.exists() else 0
        moved, last_size = size > last_size, size
        return moved

    _with_retries(url, lambda: _transfer(url, part, timeout, progress), progressed, retries, backoff)
    if checksum is None and checksum_listing is not None:  # after the transfer: a missing file is the error
        checksum = _listed_checksum(checksum_listing, url_filename(url), retries, backoff, timeout)
    if checksum is not None:
        try:
            verify_checksum(part, checksum, url)
        except ChecksumMismatchError as exc:
            part.unlink()
            raise ChecksumMismatchError(f"{exc}; the download to {dest} was deleted") from None
    os.replace(part, dest)
    return dest


def download_and_read(
    url: str,
    dest: str | os.PathLike,
    read: Callable[[Path], T],
    check: str,
    invalid: tuple[type[Exception], ...] = (ValueError,),
    checksum: Checksum | None = None,
    **options: Any,
) -> T:
    """``read(dest)`` after :func:`download` of ``url`` to ``dest`` (``options``: its keywords), where ``read``
    uses the file and so validates its content; ``check`` says how, for messages (``"reading it as FASTA"``).

    A cached ``dest`` that ``read`` rejects with one of ``invalid`` is removed and downloaded again, once: a
    damaged or wrong file in the cache never blocks reruns. A fresh download that ``read`` rejects raises
    :class:`InvalidDownloadError` naming the URL, the file and the check; the file stays for inspection (the
    next run removes it and downloads it once more).
    """
    dest = Path(dest)
    second_chance = dest.exists()
    while True:
        download(url, dest, checksum, **options)
        try:
            return read(dest)
        except invalid as exc:
            if not second_chance:
                raise InvalidDownloadError(
                    f"{url}: the download {dest} fails {check}: {exc}. It was freshly downloaded and is kept for"
                    " inspection: the source itself is bad or not what the configuration says (check the URL)"
                ) from exc
            print(
                f"{dest}: the cached download of {url} fails {check} ({exc}); removing it and downloading it again",
                file=sys.stderr,
            )
            dest.unlink()
            second_chance = False


def _listed_checksum(listing: str, filename: str, retries: int, backoff: float, timeout: float) -> Checksum | None:
    try:
        text = fetch_text(listing, retries=retries, backoff=backoff, timeout=timeout)
    except DownloadError as exc:
        warnings.warn(f"no checksum listing ({exc}); {filename} will not be verified", stacklevel=3)
        return None
    checksum = parse_checksum_listing(text, filename, listing)
    if checksum is None:
        warnings.warn(f"{listing} does not list {filename}; it will not be verified", stacklevel=3)
    return checksum
