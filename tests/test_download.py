"""Downloads against a local HTTP server: full, resumed, retried, verified, refused."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest
from http_server import LocalHTTPServer

from longdna.data.download import (
    Checksum,
    ChecksumMismatchError,
    DownloadError,
    compute_checksum,
    download,
    parse_checksum_listing,
)

FAST = {"backoff": 0.01, "progress": False, "timeout": 10.0}


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "www"
    (root / "bigZips").mkdir(parents=True)
    data = random.Random(0).randbytes(300_000)
    (root / "bigZips" / "genome.fa.gz").write_bytes(data)
    md5 = hashlib.md5(data).hexdigest()
    listing = f"0123456789abcdef0123456789abcdef  other.fa.gz\n{md5}  genome.fa.gz\n"
    (root / "bigZips" / "md5sum.txt").write_text(listing)
    with LocalHTTPServer(root) as server:
        yield server, data


def sha256(data: bytes) -> Checksum:
    return Checksum("sha256", hashlib.sha256(data).hexdigest())


def test_full_download_verified(served, tmp_path: Path) -> None:
    server, data = served
    dest = tmp_path / "out" / "genome.fa.gz"
    assert download(server.url("bigZips/genome.fa.gz"), dest, sha256(data), **FAST) == dest
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["genome.fa.gz"]


def test_checksum_from_listing(served, tmp_path: Path) -> None:
    server, data = served
    dest = download(
        server.url("bigZips/genome.fa.gz"),
        tmp_path / "g.fa.gz",
        checksum_listing=server.url("bigZips/md5sum.txt"),
        **FAST,
    )
    assert dest.read_bytes() == data


def test_missing_listing_warns_and_downloads(served, tmp_path: Path) -> None:
    server, data = served
    with pytest.warns(UserWarning, match="will not be verified"):
        dest = download(
            server.url("bigZips/genome.fa.gz"),
            tmp_path / "g.fa.gz",
            checksum_listing=server.url("bigZips/nothing.txt"),
            **FAST,
        )
    assert dest.read_bytes() == data


def test_interrupted_transfer_resumes(served, tmp_path: Path) -> None:
    server, data = served
    server.cut["/bigZips/genome.fa.gz"] = 100_000
    dest = download(server.url("bigZips/genome.fa.gz"), tmp_path / "g.fa.gz", sha256(data), **FAST)
    assert dest.read_bytes() == data
    ranges = [r for p, r in server.requests if p == "/bigZips/genome.fa.gz"]
    assert ranges == [None, "bytes=100000-"]


def test_part_file_from_earlier_run_resumes(served, tmp_path: Path) -> None:
    server, data = served
    dest = tmp_path / "g.fa.gz"
    Path(f"{dest}.part").write_bytes(data[:123_456])
    download(server.url("bigZips/genome.fa.gz"), dest, sha256(data), **FAST)
    assert dest.read_bytes() == data
    assert server.requests == [("/bigZips/genome.fa.gz", "bytes=123456-")]


def test_complete_part_file_is_not_fetched_again(served, tmp_path: Path) -> None:
    server, data = served
    dest = tmp_path / "g.fa.gz"
    Path(f"{dest}.part").write_bytes(data)
    download(server.url("bigZips/genome.fa.gz"), dest, sha256(data), **FAST)  # 416 with the full size
    assert dest.read_bytes() == data


def test_stale_part_file_restarts(served, tmp_path: Path) -> None:
    server, data = served
    dest = tmp_path / "g.fa.gz"
    Path(f"{dest}.part").write_bytes(b"x" * 400_000)  # longer than the file: not a prefix of it
    download(server.url("bigZips/genome.fa.gz"), dest, sha256(data), **FAST)
    assert dest.read_bytes() == data
    assert [r for _, r in server.requests] == ["bytes=400000-", None]


def test_checksum_mismatch_leaves_nothing(served, tmp_path: Path) -> None:
    server, _ = served
    dest = tmp_path / "g.fa.gz"
    wrong = Checksum("sha256", "0" * 64)
    with pytest.raises(ChecksumMismatchError, match=r"sha256 mismatch for http://.*/bigZips/genome\.fa\.gz"):
        download(server.url("bigZips/genome.fa.gz"), dest, wrong, **FAST)
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


def test_listing_mismatch(served, tmp_path: Path) -> None:
    server, _ = served
    (server.root / "bigZips" / "md5sum.txt").write_text("ffffffffffffffffffffffffffffffff  genome.fa.gz\n")
    with pytest.raises(ChecksumMismatchError, match=r"md5 mismatch .* \(from http://.*/md5sum\.txt\)"):
        download(
            server.url("bigZips/genome.fa.gz"),
            tmp_path / "g.fa.gz",
            checksum_listing=server.url("bigZips/md5sum.txt"),
            **FAST,
        )
    assert not (tmp_path / "g.fa.gz").exists() and not (tmp_path / "g.fa.gz.part").exists()


def test_404_fails_at_once(served, tmp_path: Path) -> None:
    server, _ = served
    url = server.url("bigZips/missing.fa.gz")
    with pytest.raises(DownloadError, match=rf"HTTP 404 \(.*\) for {url}"):
        download(url, tmp_path / "g.fa.gz", **FAST)
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


def test_transient_errors_are_retried(served, tmp_path: Path) -> None:
    server, data = served
    server.fail["/bigZips/genome.fa.gz"] = [500, 503]
    download(server.url("bigZips/genome.fa.gz"), tmp_path / "g.fa.gz", sha256(data), **FAST)
    assert len(server.requests) == 3


def test_gives_up_after_retries(served, tmp_path: Path) -> None:
    server, _ = served
    server.fail["/bigZips/genome.fa.gz"] = [503] * 10
    with pytest.raises(DownloadError, match=r"giving up on http://.*genome\.fa\.gz after 2 retries.*HTTP 503"):
        download(server.url("bigZips/genome.fa.gz"), tmp_path / "g.fa.gz", retries=2, **FAST)
    assert len(server.requests) == 3
    assert not (tmp_path / "g.fa.gz").exists()


def test_existing_destination_is_reused(served, tmp_path: Path) -> None:
    server, data = served
    dest = tmp_path / "g.fa.gz"
    dest.write_bytes(data)
    download(server.url("bigZips/genome.fa.gz"), dest, checksum_listing=server.url("bigZips/md5sum.txt"), **FAST)
    download(server.url("bigZips/genome.fa.gz"), dest, sha256(data), **FAST)
    assert server.requests == []
    dest.write_bytes(b"corrupt")  # a wrong cached file is replaced when a checksum says so
    download(server.url("bigZips/genome.fa.gz"), dest, sha256(data), **FAST)
    assert dest.read_bytes() == data


def test_file_url(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"abc" * 1000)
    dest = download(source.as_uri(), tmp_path / "copy.bin", sha256(source.read_bytes()), **FAST)
    assert dest.read_bytes() == source.read_bytes()
    with pytest.raises(DownloadError, match="cannot fetch file://"):
        download((tmp_path / "nope.bin").as_uri(), tmp_path / "x.bin", **FAST)


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported URL scheme 's3'"):
        download("s3://bucket/genome.fa.gz", tmp_path / "g.fa.gz")


def _reference_bsd_sum(data: bytes) -> str:
    checksum = 0
    for byte in data:
        checksum = ((checksum >> 1) | ((checksum & 1) << 15)) + byte & 0xFFFF
    return f"{checksum} {-(-len(data) // 1024)}"


@pytest.mark.skipif(shutil.which("sum") is None, reason="needs coreutils sum")
def test_bsd_sum_matches_reference(tmp_path: Path) -> None:
    for size in (1, 1024, 5000):
        data = random.Random(size).randbytes(size)
        path = tmp_path / f"{size}.bin"
        path.write_bytes(data)
        assert compute_checksum(path, "bsd-sum") == _reference_bsd_sum(data)


def test_parse_checksum_listing() -> None:
    md5 = "d41d8cd98f00b204e9800998ecf8427e"
    sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert parse_checksum_listing(f"{md5}  a.fa.gz\n", "a.fa.gz", "L") == Checksum("md5", md5, "L")
    assert parse_checksum_listing(f"{sha} *a.fa.gz\n", "a.fa.gz", "L") == Checksum("sha256", sha, "L")
    ensembl = "12345 67890 Homo_sapiens.GRCh38.dna_sm.toplevel.fa.gz\n01234 5 a.fa.gz\n"
    assert parse_checksum_listing(ensembl, "a.fa.gz", "L") == Checksum("bsd-sum", "1234 5", "L")
    assert parse_checksum_listing(ensembl, "b.fa.gz", "L") is None
    with pytest.raises(ValueError, match="not a valid sha256"):
        Checksum("sha256", "abc")


def test_explicit_checksum_wins_over_listing(tmp_path: Path) -> None:
    # the listing is not even fetched: its URL would refuse the connection
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(100))
    dest = download(
        source.as_uri(),
        tmp_path / "d.bin",
        sha256(source.read_bytes()),
        checksum_listing="http://127.0.0.1:9/md5sum.txt",
        **FAST,
    )
    assert dest.exists()


def test_progress_bar_on_stderr(served, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server, data = served
    download(server.url("bigZips/genome.fa.gz"), tmp_path / "g.fa.gz", sha256(data), backoff=0.01)
    err = capsys.readouterr().err
    assert "genome.fa.gz" in err and "B/s" in err
